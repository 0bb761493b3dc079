"""A self-contained HTML report: rate–distortion table and plot, per-frame plots, the worst frames,
settings, model and versions, in one file with no external resources (plots are inline SVG,
pictures base64 PNG), so it can be mailed or attached to an issue as is.
"""

from __future__ import annotations

import base64
import datetime as _dt
import platform
import sys
from html import escape
from pathlib import Path

from promptlab.errors import PromptlabError
from promptlab.export.clip import encode_png, write_file
from promptlab.export.comparison import (
    CancelFlag,
    Comparison,
    Progress,
    check_cancel,
    note_template,
)
from promptlab.export.compose import Composer
from promptlab.export.sheet import NAMES, make_sheet, worst_frames
from promptlab.export.svg import line_plot
from promptlab.export.tables import summary
from promptlab.io.atomic import check_target
from promptlab.metrics import HIGHER_IS_BETTER

CSS = """body{font-family:sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#222}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.note{color:#555;font-size:90%}h2{margin-top:32px}"""


def versions() -> dict[str, str]:
    """Versions of what produced the numbers."""
    import av
    import cv2
    import numpy
    import torch

    import promptlab

    return {"promptlab": promptlab.__version__, "python": sys.version.split()[0], "numpy": numpy.__version__,
            "torch": torch.__version__, "av (PyAV)": av.__version__, "opencv": cv2.__version__,
            "platform": platform.platform()}


def _img(rgb) -> str:
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(encode_png(rgb)).decode()}">'


def _num(v, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def _has_vmaf(comp: Comparison) -> bool:
    return any(r.metrics and r.metrics[0].get("vmaf") is not None for r in comp.renditions)


def _rd_table(comp: Comparison) -> str:
    vmaf = _has_vmaf(comp)
    head = ["method", "kbps", "LPIPS (lower is better)", "PSNR dB (higher)", "SSIM (higher)",
            "MS-SSIM (higher)", *(["VMAF (higher)"] if vmaf else []), "severe frames", "worst frame"]
    rows = []
    metric = comp.ranking_metric()
    for s in summary(comp):
        m = (s["summary"] or {}).get("mean", {})
        worst = ((s["summary"] or {}).get("worst") or {}).get(metric) or {}
        sev = m.get("severe_ratio")
        cells = [escape(s["label"]), _num(s["kbps"], ".1f"), _num(m.get("lpips"), ".4f"), _num(m.get("psnr"), ".2f"),
                 _num(m.get("ssim"), ".4f"), _num(m.get("ms_ssim"), ".4f"),
                 *([_num(m.get("vmaf"), ".2f")] if vmaf else []),
                 "n/a" if sev is None else f"{sev:.1%}",
                 f"{worst.get('frame', 'n/a')} ({NAMES[metric]} {_num(worst.get('value'), '.3f')})"]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"


def _better(metric: str) -> str:
    return "higher is better" if HIGHER_IS_BETTER[metric] else "lower is better"


def _plots(comp: Comparison) -> list[str]:
    frames = [comp.first_frame + i for i in range(comp.n_frames)]
    out = []
    metrics = (["lpips", "psnr"] if comp.has_lpips else ["psnr"]) + (["vmaf"] if _has_vmaf(comp) else [])
    for m in metrics:
        unit = " (dB)" if m == "psnr" else ""
        pts = [(r.label, [r.kbps], [sum(x[m] for x in r.metrics) / len(r.metrics)])
               for r in comp.renditions if r.kbps is not None and r.metrics]
        out.append(line_plot(pts, title=f"Rate–distortion: mean {NAMES[m]}", xlabel="rate (kbit/s, every byte counted)",
                             ylabel=f"mean {NAMES[m]}{unit}", note=_better(m), markers=True, lines=False))
        series = [(r.label, frames, [x[m] for x in r.metrics]) for r in comp.renditions if r.metrics]
        out.append(line_plot(series, title=f"{NAMES[m]} per frame", xlabel="frame", ylabel=f"{NAMES[m]}{unit}",
                             note=_better(m)))
    rate = [(r.label, frames, [comp.frame_kbps(r, i) for i in range(comp.n_frames)])
            for r in comp.renditions if r.frame_bytes]
    if rate:
        out.append(line_plot(rate, title="Bitrate per frame", xlabel="frame",
                             ylabel="kbit/s (frame bytes × 8 × fps)", note="lower is cheaper"))
    gen = [(r.label, frames, list(r.gen_ms)) for r in comp.renditions if r.gen_ms]
    if gen:
        out.append(line_plot(gen, title="Generation time per frame", xlabel="frame", ylabel="ms",
                             note="lower is better (this machine)"))
    return out


def _kv(d: dict) -> str:
    if not d:
        return "<p class=note>none recorded</p>"
    return "<table>" + "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(_shown(v))}</td></tr>"
                               for k, v in d.items()) + "</table>"


def _shown(v) -> str:
    """Floats to 7 significant digits: header values are float32, and 0.05 should read 0.05."""
    return f"{v:.7g}" if isinstance(v, float) else str(v)


def render(comp: Comparison, *, title: str = "promptlab comparison", sheet_n: int = 6, size: int | None = None,
           progress: Progress | None = None, cancel: CancelFlag | None = None) -> str:
    """The whole report as one HTML string."""
    if not comp.renditions[0].metrics:
        raise PromptlabError("the report needs per-frame metrics: compute them first")
    metric = comp.ranking_metric()
    worst = worst_frames(comp.renditions[0].metrics, 1, metric)[0]
    overlay = ("lpips", "kbps") if metric == "lpips" else ("psnr", "kbps")
    composer = Composer("side-by-side", labels=True, notes=True, note_template=note_template(overlay))
    frame = composer.compose(*comp.panes(worst, overlay, size))
    check_cancel(cancel)
    sheet = make_sheet(comp, sheet_n, size=size, progress=progress, cancel=cancel)
    lp = ("LPIPS measured with real weights." if comp.has_lpips else
          f"LPIPS not available ({escape(comp.lpips_note or 'weights absent')}); frames are ranked by PSNR.")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p class=note>{comp.n_frames} frames at {comp.fps:g} fps (source frames {comp.first_frame}–"
        f"{comp.first_frame + comp.n_frames - 1}); generated {_dt.datetime.now().isoformat(timespec='seconds')}. {lp}</p>",
        "<h2>Rate–distortion</h2>", _rd_table(comp),
        "<p class=note>kbps counts every byte a receiver needs (for promptlab: header, first-frame latent and "
        "keyframe records). Severe frames: LPIPS above the threshold in docs/metrics.md.</p>",
        *_plots(comp),
        f"<h2>Worst frame ({escape(NAMES[metric])})</h2>", _img(frame),
        "<h2>Worst frames</h2>", _img(sheet),
        "<h2>Settings</h2>", _kv(comp.info.get("settings", {})),
        "<h2>Model and inputs</h2>", _kv({k: v for k, v in comp.info.items() if k != "settings"}),
        "<h2>Renditions</h2>", "".join(f"<h3>{escape(r.label)}</h3>{_kv(r.info)}" for r in comp.renditions),
        "<h2>Versions</h2>", _kv(versions()),
        "</body></html>\n",
    ]
    return "\n".join(parts)


def export_report(out: str | Path, comp: Comparison, *, force: bool = False, title: str = "promptlab comparison",
                  sheet_n: int = 6, size: int | None = None, progress: Progress | None = None,
                  cancel: CancelFlag | None = None) -> Path:
    """Write the HTML report atomically."""
    out = check_target(out, force)
    if out.suffix.lower() not in (".html", ".htm"):
        raise PromptlabError(f"{out}: the report is written as .html")
    write_file(out, render(comp, title=title, sheet_n=sheet_n, size=size, progress=progress,
                                   cancel=cancel).encode())
    return out
