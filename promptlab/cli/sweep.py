"""`promptlab sweep SRC… --ranks 2,4,8,16 --intervals 10 [--baseline h265] -o DIR`: a rate–distortion study.

SRC: video files, folders (of images: one clip; of videos: each one) or globs. Writes DIR/sweep.json,
DIR/sweep.csv, DIR/rd.svg (kbps vs LPIPS/PSNR, legends and directions) and one .plab per point
(several sources: DIR/NAME/, with that source's own sweep.csv); prints the table and the BD-rate of
promptlab against the baseline. Each finished point is stored beside its stream, so running the
same command again skips it (--force computes it again). --engine ray runs the points and their
baselines as Ray tasks (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

from promptlab.cli.common import add_engine_args, add_settings_args, ray_options, settings_from_args
from promptlab.engine import records
from promptlab.errors import PromptlabError
from promptlab.io.atomic import write_bytes_atomic
from promptlab.io.video import count_frames, parse_frames, probe
from promptlab.metrics.frame import SEVERE_LPIPS
from promptlab.runs.sweep import SweepDone, SweepPoint, SweepSource, expand_sources, run_sweep

COLUMNS = ("method", "rank", "interval", "kbps", "target_kbps", "total_bytes", "lpips", "psnr", "ssim",
           "ms_ssim", "severe_ratio", "vmaf", "source")


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
    sources = list(dict.fromkeys(p.source for p in done.points))
    charts = []
    for metric, label, better in (("lpips", "LPIPS", "lower is better"), ("psnr", "PSNR (dB)", "higher is better")):
        series = []
        for src in sources:
            for m in methods:
                pts = sorted((p for p in done.points if p.method == m and p.source == src), key=lambda p: p.kbps)
                ys = [getattr(p, metric) for p in pts]
                if any(y is not None for y in ys):
                    series.append((m if len(sources) == 1 else f"{src}: {m}", [p.kbps for p in pts], ys))
        if series:
            charts.append(line_plot(series, title=f"{label} vs bitrate ({better})", xlabel="kbps (every byte counted)",
                                    ylabel=label, note=better, markers=True))
    body = "".join(c.replace("<svg ", f'<svg y="{300 * i}" ', 1) for i, c in enumerate(charts))
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="720" height="{300 * len(charts)}">{body}</svg>\n'



def csv_text(points: list[SweepPoint]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(asdict(pt) for pt in points)
    return buf.getvalue()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="promptlab sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SRC", help="video files, folders or globs")
    p.add_argument("--ranks", default="2,4,8,16", help="comma-separated ranks")
    p.add_argument("--intervals", default="10", help="comma-separated keyframe intervals")
    p.add_argument("--baseline", default="h265", choices=["h265", "h264", "none"])
    p.add_argument("--severe", type=float, default=SEVERE_LPIPS, help="LPIPS threshold of a severely distorted frame")
    p.add_argument("--vmaf", action="store_true", help='also VMAF v0.6.1 per point (pip install "promptlab[vmaf]")')
    p.add_argument("-o", "--output", default="sweep", help="output folder (default ./sweep)")
    p.add_argument("--force", action="store_true", help="compute every point again, even the finished ones")
    add_settings_args(p)
    add_engine_args(p)
    a = p.parse_args(argv)
    ranks, intervals = _ints(a.ranks, "ranks"), _ints(a.intervals, "intervals")
    settings = settings_from_args(a)
    ray = ray_options(a)
    frames = parse_frames(a.frames)
    sources: list[SweepSource] = []
    for src in expand_sources(a.sources):
        info = probe(src.path, fps=a.fps)
        if count_frames(src.path, frames) < 1:
            raise PromptlabError(f"{src.path} has no frames in the requested range")
        sources.append(replace(src, fps=None if a.fps else info.fps))
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    baseline = None if a.baseline == "none" else a.baseline
    if ray is not None:
        from promptlab.runs.distributed import sweep_tasks

        job = sweep_tasks(sources, settings, ranks, intervals, out, ray, frames=frames, baseline=baseline,
                          severe=a.severe, vmaf=a.vmaf, force=a.force)
    else:
        from promptlab.metrics.frame import FrameMetrics

        job = run_sweep(sources, settings, ranks, intervals, out, frames=frames, baseline=baseline,
                        metrics=FrameMetrics(vmaf=a.vmaf), severe=a.severe, force=a.force)
    done = _progress(job)
    rows = [asdict(pt) for pt in done.points]
    per = {name: {"path": next(s.path for s in sources if s.name == name),
                  "bd_rate_psnr_percent": d.bd_rate_psnr, "bd_rate_lpips_percent": d.bd_rate_lpips}
           for name, d in done.per_source.items()}
    write_bytes_atomic(out / "sweep.json", json.dumps({
        "points": rows, "baseline": done.baseline, "bd_rate_psnr_percent": done.bd_rate_psnr,
        "bd_rate_lpips_percent": done.bd_rate_lpips, "sources": per, "settings": settings.to_dict()},
        indent=2).encode())
    write_bytes_atomic(out / "sweep.csv", csv_text(done.points).encode())
    write_bytes_atomic(out / "rd.svg", rd_svg(done).encode())
    for name in per:  # several sources: each one's own table beside its streams
        write_bytes_atomic(out / name / "sweep.csv", csv_text([q for q in done.points if q.source == name]).encode())
    for name in dict.fromkeys(q.source for q in done.points):
        if len(sources) > 1:
            print(f"\n{name}:")
        print(table([q for q in done.points if q.source == name]))
    for name, d in [("", done)] if not per else [(f"{n}: ", d) for n, d in done.per_source.items()]:
        for metric, v in (("PSNR", d.bd_rate_psnr), ("LPIPS", d.bd_rate_lpips)):
            if baseline:
                print(f"{name}BD-rate of promptlab vs {baseline} on {metric}: "
                      + ("curves do not overlap (not computable)" if v is None
                         else f"{v:+.1f}% (negative: promptlab needs fewer bits)"))
    print(f"wrote {out}/sweep.json, sweep.csv, rd.svg" + (f" and {len(per)} per-source tables" if per else ""))
    return 0


def _progress(job) -> SweepDone:
    """Iterate a sweep (local or Ray) with its lines on stderr; the one bar counts Ray tasks."""
    from tqdm import tqdm

    from promptlab.runs.records import TaskDone, TasksPlanned

    bar, done = None, None
    try:
        for rec in job:
            if isinstance(rec, TasksPlanned):
                tqdm.write(f"{rec.total} tasks on {rec.workers} Ray workers ({rec.address})"
                           + (f"; {rec.skipped} points finished before" if rec.skipped else ""), file=sys.stderr)
                bar = tqdm(total=rec.total, file=sys.stderr, unit="task", dynamic_ncols=True)
            elif isinstance(rec, TaskDone) and bar is not None:
                bar.set_postfix_str(f"{rec.name} on {rec.node} in {rec.elapsed:.0f} s", refresh=False)
                bar.update(1)
            elif isinstance(rec, records.KeyframeDone):
                tqdm.write(f"  keyframe {rec.keyframe}: loss {rec.first_loss:.4f} -> {rec.loss:.4f}", file=sys.stderr)
            elif isinstance(rec, SweepPoint):
                tqdm.write(f"{rec.source} {rec.method} rank {rec.rank} k {rec.interval}: {rec.kbps:.1f} kbps, "
                           f"PSNR {rec.psnr:.2f} dB" + (f", LPIPS {rec.lpips:.4f}" if rec.lpips is not None else "")
                           + (" (finished before)" if rec.extra.get("reused") else ""), file=sys.stderr)
            elif isinstance(rec, SweepDone):
                done = rec
    finally:
        if bar is not None:
            bar.close()
    assert done is not None
    return done
