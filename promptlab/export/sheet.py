"""The worst-frames sheet: the N frames where a reconstruction fails most, as original | recon | difference.

Ranked by LPIPS (higher is worse) when LPIPS was measured with real weights, otherwise by
PSNR (lower is worse), and the sheet's title says which, so a PSNR ranking is never mistaken
for a perceptual one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from promptlab.errors import PromptlabError
from promptlab.export.clip import write_png
from promptlab.export.comparison import CancelFlag, Comparison, Progress, check_cancel, fit
from promptlab.export.compose import (
    LABEL_FG,
    SEP,
    STRIP_BG,
    Composer,
    Pane,
    font_scale,
    put_text,
    text_size,
    wrap,
)
from promptlab.metrics import HIGHER_IS_BETTER

NAMES = {"lpips": "LPIPS", "psnr": "PSNR", "ssim": "SSIM", "ms_ssim": "MS-SSIM", "vmaf": "VMAF"}


def worst_frames(rows: Sequence[dict], n: int, metric: str) -> list[int]:
    """Indices of the n worst rows by `metric`, worst first (ties keep frame order)."""
    if n < 1:
        raise PromptlabError(f"the sheet needs at least one frame, got {n}")
    vals = [r.get(metric) for r in rows]
    if any(v is None for v in vals):
        raise PromptlabError(f"{metric} is missing for some frames; cannot rank them")
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    order = sorted(range(len(vals)), key=lambda i: (sign * float(vals[i]), i))
    return order[: min(n, len(order))]


def value_text(metric: str, value: float) -> str:
    return f"{value:.2f} dB" if metric == "psnr" else f"{NAMES[metric]} {value:.3f}"


def make_sheet(comp: Comparison, n: int = 6, rendition: int = 0, size: int | None = None,
               progress: Progress | None = None, cancel: CancelFlag | None = None) -> np.ndarray:
    """One image: a title strip, then one row per worst frame (original | recon | |difference|)."""
    r = comp.renditions[rendition]
    if not r.metrics:
        raise PromptlabError(f"no per-frame metrics for {r.name}: compute them before making a sheet")
    metric = "lpips" if all(row.get("lpips") is not None for row in r.metrics) else "psnr"
    picks = worst_frames(r.metrics, n, metric)
    composer = Composer("side-by-side", labels=True, notes=True, note_template="abs difference x4")
    rows = []
    for k, i in enumerate(picks):
        check_cancel(cancel)
        orig, rec = fit(comp.originals[i], size), fit(r.frames[i], size)
        row = r.metrics[i]
        note = SEP.join([value_text(metric, row[metric])] +
                        [value_text(m, row[m]) for m in ("psnr", "ssim") if m != metric and row.get(m) is not None])
        rows.append(composer.compose(
            Pane(orig, f"#{k + 1} frame {comp.first_frame + i}", "original"),
            [Pane(rec, r.label, note),
             Pane(composer.difference(orig, rec), f"abs difference x{composer.diff_gain:g}", "")]))
        if progress:
            progress("sheet", k + 1, len(picks))
    body = np.concatenate(rows, axis=0)
    return np.concatenate([_title(sheet_title(metric, len(picks), comp.lpips_note), body.shape[1]), body], axis=0)


def sheet_title(metric: str, n: int, lpips_note: str | None) -> str:
    worse = "higher is worse" if metric == "lpips" else "lower is worse"
    title = f"{n} worst frames by {NAMES[metric]} ({worse})"
    if metric != "lpips":
        title += SEP + "LPIPS weights absent, ranked by PSNR instead"
    return title


def _title(text: str, width: int) -> np.ndarray:
    s = font_scale(width // 3)
    lines = wrap(text, width - 8, s)
    _, h = text_size("Mg", s)
    line_h = int(round(h * 1.6))
    height = len(lines) * line_h + line_h // 2
    height += height % 2
    strip = np.empty((height, width, 3), np.uint8)
    strip[:] = STRIP_BG
    for j, line in enumerate(lines):
        put_text(strip, line, 4, (j + 1) * line_h, s, LABEL_FG)
    return strip


def export_sheet(out: str | Path, comp: Comparison, n: int = 6, *, rendition: int = 0, size: int | None = None,
                 force: bool = False, progress: Progress | None = None, cancel: CancelFlag | None = None) -> Path:
    """Write the worst-frames sheet as PNG, atomically."""
    return write_png(out, make_sheet(comp, n, rendition, size, progress, cancel), force)
