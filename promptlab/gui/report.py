"""What leaves the window as text or files: the run summary line, PNGs of a frame, per-frame CSV.

Qt-free, so the same words and files can be checked by tests without a window.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from promptlab.io.atomic import write_bytes_atomic

CSV_COLUMNS = ("index", "source_frame", "lpips", "psnr", "ssim", "ms_ssim", "bytes", "gen_ms",
               "h265_lpips", "h265_psnr", "h265_bytes")


def summary_text(s: dict[str, Any]) -> str:
    """One line: rate with every byte counted, quality (LPIPS, or PSNR saying why), speed, model."""
    if not s:
        return "done"
    if s.get("mean_lpips") is not None:
        q = f"mean LPIPS {s['mean_lpips']:.4f} (lower is better), {s.get('severe_frames')} severe"
    else:
        q = f"mean PSNR {_num(s.get('mean_psnr')):.2f} dB (LPIPS unavailable)"
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


def export_frame_pngs(folder: str | Path, index: int, images: dict[str, np.ndarray | None]) -> list[Path]:
    """Write each named image of one frame as PNG (atomically); returns the files written."""
    out = []
    for name, img in images.items():
        if img is None:
            continue
        ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if ok:
            p = Path(folder) / f"frame{index:05d}_{name}.png"
            write_bytes_atomic(p, buf.tobytes())
            out.append(p)
    return out


def export_csv(path: str | Path, rows: dict[int, dict], baseline: dict[int, dict], offset: int = 0) -> Path:
    """Per-frame numbers, one row per frame, blank where a value does not exist."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for i in sorted(rows):
        r, b = rows[i], baseline.get(i, {})
        vals = [i, offset + i, r.get("lpips"), r.get("psnr"), r.get("ssim"), r.get("ms_ssim"), r.get("bytes"),
                r.get("gen_ms"), b.get("lpips"), b.get("psnr"), b.get("bytes")]
        w.writerow(["" if v is None else v for v in vals])
    write_bytes_atomic(path, buf.getvalue().encode())
    return Path(path)
