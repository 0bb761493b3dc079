"""Per-frame metrics as CSV (one row per frame) and JSON (rows plus summaries), written atomically.

Columns are `frame` (index in the source clip) and, per rendition, `<name>_<quantity>`:
bytes (stream bytes attributed to the frame), kbps (those bytes as a rate), gen_ms, lpips,
psnr (dB), ssim, ms_ssim, vmaf (with --vmaf). A value that was not measured is empty in CSV and null in JSON,
never a made-up number.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from promptlab.errors import PromptlabError
from promptlab.export.clip import write_file
from promptlab.export.comparison import Comparison
from promptlab.io.atomic import check_target
from promptlab.metrics import HIGHER_IS_BETTER, METRICS, summarize

QUANTITIES = ("bytes", "kbps", "gen_ms", *METRICS)
UNITS = {"bytes": "bytes", "kbps": "kbit/s", "gen_ms": "ms", "lpips": "", "psnr": "dB", "ssim": "", "ms_ssim": "", "vmaf": ""}


def columns(comp: Comparison) -> list[str]:
    return ["frame"] + [f"{r.name}_{q}" for r in comp.renditions for q in QUANTITIES]


def frame_rows(comp: Comparison) -> list[dict]:
    """One dict per frame with every column (None where not measured)."""
    rows = []
    for i in range(comp.n_frames):
        row: dict = {"frame": comp.first_frame + i}
        for r in comp.renditions:
            m = r.metrics[i] if r.metrics else {}
            row[f"{r.name}_bytes"] = float(r.frame_bytes[i]) if r.frame_bytes else None
            row[f"{r.name}_kbps"] = comp.frame_kbps(r, i)
            row[f"{r.name}_gen_ms"] = float(r.gen_ms[i]) if r.gen_ms else None
            for k in METRICS:
                row[f"{r.name}_{k}"] = m.get(k)
        rows.append(row)
    return rows


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else ""
    return str(v)


def to_csv(comp: Comparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = columns(comp)
    w.writerow(cols)
    for row in frame_rows(comp):
        w.writerow([_cell(row[c]) for c in cols])
    return buf.getvalue()


def summary(comp: Comparison) -> list[dict]:
    """Per rendition: name, label, whole-clip kbps and the metric summary (means, worst, severe ratio)."""
    out = []
    for r in comp.renditions:
        rows = [{"frame": comp.first_frame + i, **m} for i, m in enumerate(r.metrics or [])]
        out.append({"name": r.name, "label": r.label, "kbps": r.kbps,
                    "summary": summarize(rows) if rows else None, "info": r.info})
    return out


def to_json(comp: Comparison) -> str:
    doc = {
        "format": "promptlab-metrics", "version": 1,
        "fps": comp.fps, "n_frames": comp.n_frames, "first_frame": comp.first_frame,
        "lpips_available": comp.has_lpips, "lpips_note": comp.lpips_note,
        "units": UNITS, "higher_is_better": HIGHER_IS_BETTER,
        "renditions": summary(comp), "columns": columns(comp), "frames": frame_rows(comp),
        "info": comp.info,
    }
    return json.dumps(_finite(doc), indent=1, default=str) + "\n"


def _finite(x):
    """JSON has no NaN/inf: such values become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def export_metrics(out: str | Path, comp: Comparison, force: bool = False) -> Path:
    """Write per-frame metrics as .csv or .json (by extension), atomically."""
    out = check_target(out, force)
    ext = out.suffix.lower()
    if ext == ".csv":
        data = to_csv(comp)
    elif ext == ".json":
        data = to_json(comp)
    else:
        raise PromptlabError(f"{out}: metrics are written as .csv or .json")
    write_file(out, data.encode())
    return out
