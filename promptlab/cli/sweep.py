"""`promptlab sweep SRC --ranks 2,4,8,16 --intervals 10 [--baseline h265] -o DIR`: a rate–distortion study.

Writes DIR/sweep.json, DIR/sweep.csv, DIR/rd.svg (kbps vs LPIPS/PSNR, legends and directions)
and one .plab per point; prints the table and the BD-rate of promptlab against the baseline.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import asdict
from pathlib import Path

from promptlab.cli.common import add_settings_args, settings_from_args
from promptlab.engine import records
from promptlab.errors import PromptlabError
from promptlab.io.atomic import write_bytes_atomic
from promptlab.io.video import count_frames, parse_frames, probe
from promptlab.metrics.frame import SEVERE_LPIPS
from promptlab.runs.sweep import SweepDone, SweepPoint, run_sweep

COLUMNS = ("method", "rank", "interval", "kbps", "target_kbps", "total_bytes", "lpips", "psnr", "ssim",
           "ms_ssim", "severe_ratio", "vmaf")


def _ints(spec: str, name: str) -> list[int]:
    try:
        vals = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise PromptlabError(f"--{name} takes comma-separated integers, got {spec!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise PromptlabError(f"--{name} needs positive integers, got {spec!r}")
    return vals


def table(points: list[SweepPoint]) -> str:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = [f"{'method':<10} {'rank':>4} {'k':>3} {'kbps':>8} {'LPIPS↓':>7} {'PSNR↑':>7} {'SSIM↑':>6} {'severe':>6}"]
    for p in points:
        lines.append(f"{p.method:<10} {f(p.rank, 'd'):>4} {f(p.interval, 'd'):>3} {p.kbps:>8.1f} "
                     f"{f(p.lpips, '.4f'):>7} {p.psnr:>7.2f} {p.ssim:>6.3f} {f(p.severe_ratio, '.2f'):>6}")
    return "\n".join(lines)


def rd_svg(done: SweepDone) -> str:
    from promptlab.export.svg import line_plot

    methods = sorted({p.method for p in done.points}, key=lambda m: m != "promptlab")
    charts = []
    for metric, label, better in (("lpips", "LPIPS", "lower is better"), ("psnr", "PSNR (dB)", "higher is better")):
        series = []
        for m in methods:
            pts = sorted((p for p in done.points if p.method == m), key=lambda p: p.kbps)
            ys = [getattr(p, metric) for p in pts]
            if any(y is not None for y in ys):
                series.append((m, [p.kbps for p in pts], ys))
        if series:
            charts.append(line_plot(series, title=f"{label} vs bitrate ({better})", xlabel="kbps (every byte counted)",
                                    ylabel=label, note=better, markers=True))
    body = "".join(c.replace("<svg ", f'<svg y="{300 * i}" ', 1) for i, c in enumerate(charts))
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="720" height="{300 * len(charts)}">{body}</svg>\n'



def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="promptlab sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source")
    p.add_argument("--ranks", default="2,4,8,16", help="comma-separated ranks")
    p.add_argument("--intervals", default="10", help="comma-separated keyframe intervals")
    p.add_argument("--baseline", default="h265", choices=["h265", "h264", "none"])
    p.add_argument("--severe", type=float, default=SEVERE_LPIPS, help="LPIPS threshold of a severely distorted frame")
    p.add_argument("--vmaf", action="store_true", help='also VMAF v0.6.1 per point (pip install "promptlab[vmaf]")')
    p.add_argument("-o", "--output", default="sweep", help="output folder (default ./sweep)")
    p.add_argument("--force", action="store_true", help="overwrite streams and tables in the output folder")
    add_settings_args(p)
    a = p.parse_args(argv)
    ranks, intervals = _ints(a.ranks, "ranks"), _ints(a.intervals, "intervals")
    settings = settings_from_args(a)
    frames = parse_frames(a.frames)
    info = probe(a.source, fps=a.fps)
    if a.fps is None:
        settings = settings.replace(fps=info.fps)
    if count_frames(a.source, frames) < 1:
        raise PromptlabError(f"{a.source} has no frames in the requested range")
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("sweep.json", "sweep.csv", "rd.svg"):
        if (out / name).exists() and not a.force:
            raise PromptlabError(f"{out / name} already exists (use --force to overwrite)")
    baseline = None if a.baseline == "none" else a.baseline
    from promptlab.metrics.frame import FrameMetrics

    metrics = FrameMetrics(vmaf=a.vmaf)
    done = None
    for rec in run_sweep(a.source, settings, ranks, intervals, out, frames=frames, baseline=baseline,
                         metrics=metrics, severe=a.severe, force=a.force):
        if isinstance(rec, records.KeyframeDone):
            print(f"  keyframe {rec.keyframe}: loss {rec.first_loss:.4f} -> {rec.loss:.4f}", file=sys.stderr)
        elif isinstance(rec, SweepPoint):
            print(f"{rec.method} rank {rec.rank} k {rec.interval}: {rec.kbps:.1f} kbps, PSNR {rec.psnr:.2f} dB"
                  + (f", LPIPS {rec.lpips:.4f}" if rec.lpips is not None else ""), file=sys.stderr)
        elif isinstance(rec, SweepDone):
            done = rec
    assert done is not None
    rows = [asdict(pt) for pt in done.points]
    write_bytes_atomic(out / "sweep.json", json.dumps({
        "points": rows, "baseline": done.baseline, "bd_rate_psnr_percent": done.bd_rate_psnr,
        "bd_rate_lpips_percent": done.bd_rate_lpips, "settings": settings.to_dict()}, indent=2).encode())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_bytes_atomic(out / "sweep.csv", buf.getvalue().encode())
    write_bytes_atomic(out / "rd.svg", rd_svg(done).encode())
    print(table(done.points))
    for metric, v in (("PSNR", done.bd_rate_psnr), ("LPIPS", done.bd_rate_lpips)):
        if baseline:
            print(f"BD-rate of promptlab vs {baseline} on {metric}: "
                  + ("curves do not overlap (not computable)" if v is None else f"{v:+.1f}% (negative: promptlab needs fewer bits)"))
    print(f"wrote {out}/sweep.json, sweep.csv, rd.svg")
    return 0
