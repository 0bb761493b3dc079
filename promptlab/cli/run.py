"""`promptlab run SRC [settings…] [--baseline h265] [--json OUT]`: the lab's run, headless.

Encode (or reuse the results cache, as the GUI does), decode as the receiver, score every
frame against the original, optionally the classical codec at the achieved bitrate. The JSON
holds `frames` (one row per decoded frame: index, lpips, psnr, ssim, ms_ssim, vmaf, bytes, gen_ms, …),
`summary` (kbps, mean lpips, psnr, …) and `baseline` (its summary and frames, or null): the same
records the GUI plots.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict

from promptlab.cli.common import add_settings_args, resolve_rank, settings_from_args
from promptlab.io.atomic import check_target, write_bytes_atomic
from promptlab.io.video import checked_count, parse_frames, probe
from promptlab.runs import methods
from promptlab.runs.lab import RunSpec, run_lab
from promptlab.runs.records import FrameResult, Progress, Reused, Saved, Summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="promptlab run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="video file, folder of numbered images, or one image")
    add_settings_args(p)
    p.add_argument("--baseline", choices=methods.names(), help="also this method at the achieved bitrate")
    p.add_argument("--json", metavar="OUT.json", help="write frames, summary and baseline here")
    p.add_argument("--lpips-net", default="alex", choices=("alex", "vgg"), help="LPIPS backbone (default alex)")
    p.add_argument("--vmaf", action="store_true", help='also VMAF v0.6.1 per frame (pip install "promptlab[vmaf]")')
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    if a.json:
        check_target(a.json, a.force)
    settings = settings_from_args(a)
    frames = parse_frames(a.frames)
    if a.fps is None:
        settings = settings.replace(fps=probe(a.source).fps)
    n, notes = checked_count(a.source, frames)
    for note in notes:
        print(f"promptlab run: note: {note}", file=sys.stderr)
    settings = resolve_rank(settings, a.kbps, n)
    from promptlab.engine.losses import resolve_perceptual

    used = resolve_perceptual(settings.perceptual)
    if used != settings.perceptual and settings.first_iters + settings.iters > 0:
        print(f"promptlab run: note: the perceptual term {settings.perceptual!r} has no weights here; the fit "
              f"uses {used!r} (--perceptual {used} says so; docs/engines.md)", file=sys.stderr)
    rng = None if frames is None else (frames[0], frames[0] + n)
    spec = RunSpec(settings=settings, source=a.source, frames=rng, baseline=a.baseline, lpips_net=a.lpips_net,
                   vmaf=a.vmaf)
    from tqdm import tqdm

    bar = tqdm(total=1000, file=sys.stderr, disable=a.quiet, bar_format="{l_bar}{bar}| {elapsed}")
    rows: dict[str, list[dict]] = {"decode": [], "baseline": []}
    summaries: dict[str, Summary] = {}
    cached = False
    t0, first_shown = time.perf_counter(), False
    try:
        for rec in run_lab(spec):
            if isinstance(rec, Reused):
                cached = True
            elif isinstance(rec, Progress):
                bar.n = int(rec.fraction * 1000)
                eta = "" if rec.eta_s is None else f" ETA {rec.eta_s:.0f}s"
                bar.set_description_str(rec.text[:60] + eta, refresh=True)
            elif isinstance(rec, FrameResult) and rec.draft and not first_shown:
                first_shown = True  # the prompt encoder's guess, before any iteration; the fit refines it
                q = "" if rec.lpips is None else f", LPIPS {rec.lpips:.3f}"
                tqdm.write(f"first answer (prompt encoder, no iterations): frame {rec.index}{q} "
                           f"after {time.perf_counter() - t0:.1f} s; refining", file=sys.stderr)
            elif isinstance(rec, FrameResult) and rec.stage in rows:
                rows[rec.stage].append(rec.row())
            elif isinstance(rec, Summary):
                summaries["baseline" if rec.method != "promptlab" else "promptlab"] = rec
            elif isinstance(rec, Saved):
                tqdm.write(f"result saved in the results cache: {rec.path}", file=sys.stderr)
    finally:
        bar.close()
    s = summaries["promptlab"]
    print(f"promptlab: {s.kbps:.2f} kbps, {_quality(s)}{' (from the results cache)' if cached else ''}")
    b = summaries.get("baseline")
    if b is not None:
        print(f"{b.method}: {b.kbps:.2f} kbps, {_quality(b)}")
    if a.json:
        doc = {"source": a.source, "frames_range": list(rng) if rng else None, "settings": settings.to_dict(),
               "frames": rows["decode"], "summary": _flat(s),
               "baseline": None if b is None else {**_flat(b), "frames": rows["baseline"]}}
        write_bytes_atomic(a.json, (json.dumps(doc, indent=1) + "\n").encode())
    return 0


def _flat(s: Summary) -> dict:
    d = asdict(s)
    return {**{k: v for k, v in d.items() if k != "extra"}, **d["extra"]}


def _quality(s: Summary) -> str:
    lp = "LPIPS n/a" if s.lpips is None else f"LPIPS {s.lpips:.4f}"
    vm = "" if s.vmaf is None else f", VMAF {s.vmaf:.2f}"
    return f"{lp}, PSNR {s.psnr:.2f} dB, SSIM {s.ssim:.4f}{vm}" if s.psnr is not None else "quality not measured"
