"""What every export is made from: the original frames, one or more renditions, their rates and metrics.

The CLI fills a Comparison from a source clip and a decoded .plab stream (plus an H.265 run at
the same bitrate); the GUI fills it from frames it already holds. Writers (clip, PNG, sheet,
tables, report) only read it, so they behave the same from both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from promptlab.errors import Cancelled, PromptlabError
from promptlab.export.compose import SEP, Pane

# progress(stage, done, total): the GUI updates a bar, the CLI a tqdm line
Progress = Callable[[str, int, int], None]
OVERLAY_KEYS = ("lpips", "psnr", "ssim", "kbps")


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


def check_cancel(cancel: CancelFlag | None) -> None:
    """Called once per frame by every export loop."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("export cancelled")


def note_template(keys: Sequence[str]) -> str:
    """The widest note these overlay keys produce, so the strip height is fixed up front."""
    samples = {"lpips": "LPIPS 0.000", "psnr": "00.00 dB", "ssim": "SSIM 0.000", "kbps": "0000.0 kbps"}
    return SEP.join(samples[k] for k in keys if k in samples) or "frame 00000"


def parse_overlay(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """"lpips,kbps" -> ("lpips", "kbps"); unknown names are a user error."""
    if spec is None or spec == "":
        return ()
    items = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    bad = [s for s in items if s not in OVERLAY_KEYS]
    if bad:
        raise PromptlabError(f"unknown overlay {', '.join(bad)}: use a comma list of {', '.join(OVERLAY_KEYS)}")
    return tuple(dict.fromkeys(items))


@dataclass
class Rendition:
    """One reconstruction of the original frames and what it cost."""

    name: str                         # "promptlab", "h265", ...
    label: str                        # shown above its pane, e.g. "promptlab tiny r8 · 210 kbps"
    frames: list[np.ndarray]
    kbps: float | None = None         # whole-clip rate, every byte counted
    frame_bytes: list[float] | None = None
    gen_ms: list[float] | None = None
    metrics: list[dict] | None = None  # per frame: lpips (or None), psnr, ssim, ms_ssim
    info: dict = field(default_factory=dict)


@dataclass
class Comparison:
    originals: list[np.ndarray]
    renditions: list[Rendition]
    fps: float
    first_frame: int = 0              # source index of frame 0, for "frame N" texts
    info: dict = field(default_factory=dict)
    lpips_note: str | None = None     # why LPIPS is missing, when it is

    def __post_init__(self) -> None:
        if not self.originals:
            raise PromptlabError("nothing to export: zero frames")
        if not self.renditions:
            raise PromptlabError("nothing to compare: no reconstruction")
        shape = self.originals[0].shape
        for r in self.renditions:
            if len(r.frames) != len(self.originals):
                raise PromptlabError(f"{r.name} has {len(r.frames)} frames but the original has {len(self.originals)}")
            if r.frames[0].shape != shape:
                raise PromptlabError(f"{r.name} frames are {r.frames[0].shape[1]}x{r.frames[0].shape[0]}, "
                                     f"the original's {shape[1]}x{shape[0]}")
        if not (0 < self.fps <= 1000):
            raise PromptlabError(f"fps must be in (0, 1000], got {self.fps}")

    @property
    def n_frames(self) -> int:
        return len(self.originals)

    @property
    def has_lpips(self) -> bool:
        m = self.renditions[0].metrics
        return bool(m) and all(row.get("lpips") is not None for row in m)

    def ranking_metric(self) -> str:
        """LPIPS when measured, else PSNR (the sheet and report say which)."""
        return "lpips" if self.has_lpips else "psnr"

    def compute_metrics(self, metrics, progress: Progress | None = None, cancel: CancelFlag | None = None,
                        batch: int = 8) -> None:
        """Fill every rendition's per-frame metrics with a FrameMetrics-like object."""
        if getattr(metrics, "lpips_note", None) and not getattr(metrics, "has_lpips", True):
            self.lpips_note = metrics.lpips_note
        from promptlab.metrics.frame import score

        total = self.n_frames * len(self.renditions)
        for k, r in enumerate(self.renditions):
            def step(done: int, before: int = k * self.n_frames) -> None:
                check_cancel(cancel)
                if progress:
                    progress("metrics", before + done, total)

            check_cancel(cancel)
            r.metrics = score(metrics, self.originals[: self.n_frames], r.frames[: self.n_frames], batch=batch,
                              on_batch=step)

    def frame_kbps(self, r: Rendition, i: int) -> float | None:
        """A frame's bytes as a rate (bytes × 8 × fps / 1000)."""
        if not r.frame_bytes:
            return None
        return float(r.frame_bytes[i]) * 8 * self.fps / 1000

    def note(self, r: Rendition, i: int, keys: Sequence[str]) -> str:
        parts = []
        row = r.metrics[i] if r.metrics else {}
        for k in keys:
            if k == "kbps":
                v = self.frame_kbps(r, i)
                if v is not None:
                    parts.append(f"{v:.1f} kbps")
            elif k == "lpips":
                v = row.get("lpips")
                parts.append(f"LPIPS {v:.3f}" if v is not None else "LPIPS n/a")
            elif k == "psnr" and row.get("psnr") is not None:
                parts.append(f"{row['psnr']:.2f} dB")
            elif k == "ssim" and row.get("ssim") is not None:
                parts.append(f"SSIM {row['ssim']:.3f}")
        return SEP.join(parts)

    def panes(self, i: int, overlay: Sequence[str] = (), size: int | None = None) -> tuple[Pane, list[Pane]]:
        """Frame i as an original pane and one pane per rendition (resized for display if asked)."""
        original = Pane(fit(self.originals[i], size), "original",
                        f"frame {self.first_frame + i}" if overlay else "")
        others = [Pane(fit(r.frames[i], size), r.label, self.note(r, i, overlay)) for r in self.renditions]
        return original, others


def fit(img: np.ndarray, size: int | None) -> np.ndarray:
    """Resize for display only: nearest for whole-number enlargements (pixels stay visible)."""
    if size is None:
        return img
    h, w = img.shape[:2]
    if size < 8 or size > 8192:
        raise PromptlabError(f"--size must be between 8 and 8192, got {size}")
    if (h, w) == (size, size) or max(h, w) == size:
        return img
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if scale > 1 and float(scale).is_integer():
        interp = cv2.INTER_NEAREST
    elif scale < 1:
        interp = cv2.INTER_AREA
    else:
        interp = cv2.INTER_CUBIC
    return cv2.resize(img, (nw, nh), interpolation=interp)
