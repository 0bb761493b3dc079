"""What leaves the window: the run summary line, and exports through promptlab.export (clip, frame, sheet, metrics, report).

Qt-free, so the same words and files can be checked by tests without a window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from promptlab.errors import PromptlabError


def summary_text(s: dict[str, Any]) -> str:
    """One line: rate with every byte counted, quality (LPIPS, or PSNR saying why), speed, model."""
    if not s:
        return "done"
    if s.get("mean_lpips") is not None:
        q = f"mean LPIPS {s['mean_lpips']:.4f} (lower is better), {s.get('severe_frames')} severe"
    elif s.get("quality_measured", True):
        q = f"mean PSNR {_num(s.get('mean_psnr')):.2f} dB (LPIPS unavailable)"
    else:
        q = f"quality {s.get('lpips_message') or 'not measured'}"
    b = s.get("baseline")
    if b:
        bq = (f"LPIPS {b['mean_lpips']:.4f}" if b.get("mean_lpips") is not None
              else f"PSNR {_num(b.get('mean_psnr')):.2f} dB")
        q += f"; H.265 at {b['kbps']:.1f} kbps: mean {bq}"
    return (f"done: {_num(s.get('kbps')):.1f} kbps every byte counted "
            f"({_num(s.get('kbps_without_init')):.1f} without the init latent), {s.get('total_bytes', 0)} B; "
            f"{q}; mean generation {_num(s.get('mean_gen_ms')):.1f} ms/frame; model {s.get('model', '?')}")


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def comparison(originals: list[np.ndarray], recon: dict[int, np.ndarray], rows: dict[int, dict],
               baseline: dict[int, np.ndarray], base_rows: dict[int, dict], summary: dict[str, Any],
               fps: float, first_frame: int, model: str, rank: int) -> Any:
    """The window's finished run as a promptlab.export Comparison (metrics already measured, reused)."""
    from promptlab.export import Comparison, Rendition

    n = len(originals)
    if n == 0 or any(i not in recon for i in range(n)):
        raise PromptlabError("nothing to export yet: run the lab first (every frame needs a reconstruction)")

    def metrics(r: dict[int, dict]) -> list[dict]:
        return [{k: r.get(i, {}).get(k) for k in ("lpips", "psnr", "ssim", "ms_ssim")} for i in range(n)]

    kbps = summary.get("kbps")
    label = f"promptlab {model} r{rank}" + (f" · {kbps:.0f} kbps" if kbps else "")
    rends = [Rendition("promptlab", label, [recon[i] for i in range(n)], kbps=kbps,
                       frame_bytes=[float(rows.get(i, {}).get("bytes") or 0) for i in range(n)],
                       gen_ms=[float(rows.get(i, {}).get("gen_ms") or 0) for i in range(n)], metrics=metrics(rows))]
    b = summary.get("baseline") or {}
    if baseline and all(i in baseline for i in range(n)):
        bk = b.get("kbps")
        rends.append(Rendition("h265", "H.265" + (f" · {bk:.0f} kbps" if bk else ""), [baseline[i] for i in range(n)],
                               kbps=bk, frame_bytes=[float(base_rows.get(i, {}).get("bytes") or 0) for i in range(n)],
                               metrics=metrics(base_rows)))
    note = None if all(m.get("lpips") is not None for m in rends[0].metrics or []) else \
        "LPIPS weights absent (promptlab fetch-weights lpips): ranked by PSNR"
    return Comparison(list(originals), rends, fps, first_frame=first_frame,
                      info={k: v for k, v in summary.items() if not isinstance(v, dict | list)}, lpips_note=note)


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
