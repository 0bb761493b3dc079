"""What leaves the window: the run summary line, and exports through promptlab.export (clip, frame, sheet, metrics, report).

Qt-free, so the same words and files can be checked by tests without a window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from promptlab.errors import PromptlabError
from promptlab.runs.records import FrameResult, Summary

FITTED, REUSED, PREVIEWED, LOADED = ("fitted now", "reused from the results cache (nothing recomputed)",
                                     "PREVIEW of a transcode of the fitted stream (no fit)", "stored run")


def summary_text(s: Summary | None, baseline: Summary | None = None, source: str = FITTED) -> str:
    """One line stating the result shown: where it comes from (`source`), rate with every byte
    counted, quality (LPIPS and severe frames, or PSNR saying why), speed, model."""
    if s is None:
        return f"{source}: no summary"
    ex = s.extra
    if s.lpips is not None:
        q = f"mean LPIPS {s.lpips:.4f} (lower is better), {s.severe_frames} of {s.n_frames} frames severe"
    elif ex.get("measured", True):
        q = f"mean PSNR {_num(s.psnr):.2f} dB (LPIPS unavailable)"
    else:
        q = f"quality {ex.get('lpips_message') or 'not measured'}"
    if baseline is not None:
        bq = f"LPIPS {baseline.lpips:.4f}" if baseline.lpips is not None else f"PSNR {_num(baseline.psnr):.2f} dB"
        q += f"; {baseline.method.upper()} at {baseline.kbps:.1f} kbps: mean {bq}"
    return (f"{source}: {s.kbps:.1f} kbps every byte counted "
            f"({_num(ex.get('kbps_without_init')):.1f} without the init latent), {s.total_bytes} B; "
            f"{q}; mean generation {_num(s.gen_ms):.1f} ms/frame; model {ex.get('model', '?')}")


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def comparison(originals: list[np.ndarray], recon: dict[int, np.ndarray], rows: dict[int, FrameResult],
               baseline: dict[int, np.ndarray], base_rows: dict[int, FrameResult], summary: Summary | None,
               base_summary: Summary | None, fps: float, first_frame: int, model: str, rank: int) -> Any:
    """The window's finished run as a promptlab.export Comparison (metrics already measured, reused)."""
    from promptlab.export import Comparison, Rendition

    n = len(originals)
    if n == 0 or any(i not in recon for i in range(n)):
        raise PromptlabError("nothing to export yet: run the lab first (every frame needs a reconstruction)")

    def value(r: dict[int, FrameResult], i: int, name: str) -> Any:
        return getattr(r[i], name) if i in r else None

    def metrics(r: dict[int, FrameResult]) -> list[dict]:
        return [{k: value(r, i, k) for k in ("lpips", "psnr", "ssim", "ms_ssim")} for i in range(n)]

    kbps = summary.kbps if summary is not None else None
    label = f"promptlab {model} r{rank}" + (f" · {kbps:.0f} kbps" if kbps else "")
    rends = [Rendition("promptlab", label, [recon[i] for i in range(n)], kbps=kbps,
                       frame_bytes=[float(value(rows, i, "bytes") or 0) for i in range(n)],
                       gen_ms=[float(value(rows, i, "gen_ms") or 0) for i in range(n)], metrics=metrics(rows))]
    if baseline and all(i in baseline for i in range(n)):
        bk = base_summary.kbps if base_summary is not None else None
        codec = base_summary.method if base_summary is not None else "h265"
        rends.append(Rendition(codec, codec.upper().replace("H26", "H.26") + (f" · {bk:.0f} kbps" if bk else ""),
                               [baseline[i] for i in range(n)], kbps=bk,
                               frame_bytes=[float(value(base_rows, i, "bytes") or 0) for i in range(n)],
                               metrics=metrics(base_rows)))
    note = None if all(m.get("lpips") is not None for m in rends[0].metrics or []) else \
        "LPIPS weights absent (promptlab fetch-weights lpips): ranked by PSNR"
    info = {} if summary is None else {k: v for k, v in {**summary.to_dict(), **summary.extra}.items()
                                       if not isinstance(v, dict | list)}
    return Comparison(list(originals), rends, fps, first_frame=first_frame, info=info, lpips_note=note)


EXPORT_FILES = ("comparison.mp4", "frame.png", "worst-frames.png", "metrics.csv", "metrics.json", "report.html")


def export_all(folder: str | Path, comp: Any, index: int, *, force: bool = False,
               progress: Any = None, cancel: Any = None) -> list[Path]:
    """Everything the CLI's export makes, from the window's result: clip, frame, sheet, metrics, report."""
    from promptlab.export import (
        export_clip,
        export_frame,
        export_metrics,
        export_report,
        export_sheet,
    )

    d = Path(folder)
    out = [d / name for name in EXPORT_FILES]
    export_clip(out[0], comp, layout="side-by-side", labels=True, overlay=("lpips", "kbps"), force=force,
                progress=progress, cancel=cancel)
    export_frame(out[1], comp, index, layout="side-by-side", labels=True, overlay=("lpips", "kbps"), force=force)
    export_sheet(out[2], comp, n=min(6, comp.n_frames), force=force, progress=progress, cancel=cancel)
    export_metrics(out[3], comp, force=force)
    export_metrics(out[4], comp, force=force)
    export_report(out[5], comp, force=force, progress=progress, cancel=cancel)
    return out
