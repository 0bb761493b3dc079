"""`promptlab encode SRC -o OUT.plab`: fit prompts to a clip and write a .plab stream.

Progress (keyframe, iteration, loss, ETA) goes to stderr, with the expected time once the
first iterations are timed. Without --preset the reference budget applies (10,000 iterations
for keyframe 0, 1,500 per later keyframe: hours on a CPU); --preset preview takes seconds per
keyframe. An interrupted encode (Ctrl+C, a crash) leaves OUT.plab.partial beside the output;
running the same command again resumes it (--no-resume starts over) and produces the same
bytes as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import cv2

from promptlab.cli.common import (
    add_engine_args,
    add_settings_args,
    ray_options,
    resolve_rank,
    settings_from_args,
)
from promptlab.engine import records
from promptlab.engine.encoder import encode, partial_paths
from promptlab.engine.losses import resolve_perceptual
from promptlab.errors import PromptlabError
from promptlab.io.atomic import atomic_dir, check_target
from promptlab.io.video import checked_count, parse_frames, probe, read_frames


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="promptlab encode", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="video file, folder of numbered images, or one image")
    p.add_argument("-o", "--output", required=True, help="output .plab file")
    add_settings_args(p)
    p.add_argument("--recon", help="also write the encoder's reconstruction here (a folder of PNGs)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--no-resume", action="store_true", help="ignore a partial encode of the same output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_engine_args(p)
    return p


def main(argv: list[str]) -> int:
    """Parse, check every input before any work, run the encoder with a progress bar."""
    a = build_parser().parse_args(argv)
    out = check_target(a.output, a.force)
    if out.suffix != ".plab":
        raise PromptlabError(f"output must end in .plab, got {out.name}")
    settings = settings_from_args(a)
    ray = ray_options(a)
    if ray is not None and a.recon:
        raise PromptlabError("--recon is not available with --engine ray; decode the stream instead")
    frames = parse_frames(a.frames)
    info = probe(a.source, fps=a.fps)
    if a.fps is None:
        settings = settings.replace(fps=info.fps)
    n, notes = checked_count(a.source, frames)
    settings = resolve_rank(settings, a.kbps, n)
    if a.recon:
        check_target(a.recon, a.force)
    read_frames(a.source, frames=frames, size=settings.size, crop=settings.crop)  # size/crop checks, no decoding
    perceptual = resolve_perceptual(settings.perceptual)
    note = "" if perceptual == settings.perceptual else f" (asked {settings.perceptual}: weights absent)"
    for line in notes:
        print(f"note: {line}", file=sys.stderr)
    print(f"encode {a.source}: {n} frames at {settings.size}px, rank {settings.rank}, interval "
          f"{settings.interval}, model {settings.model}, perceptual loss {perceptual}{note}", file=sys.stderr)
    if not a.preset and a.iters is None and a.first_iters is None:
        print(f"note: no --preset: the reference budget ({settings.first_iters} iterations for keyframe 0, "
              f"{settings.iters} per later keyframe) takes hours on a CPU; --preset preview takes seconds "
              "per keyframe", file=sys.stderr)
    if ray is not None:
        return _run_ray(a, settings, out, frames, ray)
    try:
        with contextlib.ExitStack() as stack:
            recon_dir = stack.enter_context(atomic_dir(a.recon)) if a.recon else None
            done = _run(encode(a.source, settings, out, frames=frames, resume=not a.no_resume, force=a.force),
                        recon_dir, a.quiet, settings)
    except KeyboardInterrupt:
        partial = partial_paths(out)[0]
        kept = (f"the finished keyframes are kept in {partial}; run the same command again to resume "
                "(--no-resume starts over)") if partial.exists() else "nothing was kept"
        print(f"promptlab encode: interrupted: {kept}", file=sys.stderr)
        return 130
    print(f"wrote {out}: {done.total_bytes} bytes, {done.kbps:.2f} kbps "
          f"({done.kbps_without_init:.2f} without the init latent), {done.elapsed:.1f} s, "
          f"model {done.extra['model']}, perceptual {done.extra['perceptual']}, start {done.extra['start']}",
          file=sys.stderr)
    return 0


def _run_ray(a: argparse.Namespace, settings, out: Path, frames, ray) -> int:
    """The encode's closed GOPs on Ray workers (runs/distributed.py): one bar over the GOPs."""
    from tqdm import tqdm

    from promptlab.runs.distributed import encode_gops, work_folder
    from promptlab.runs.records import TaskDone, TasksPlanned

    if not settings.gop:
        print("note: without --gop the stream is one GOP, encoded by one worker", file=sys.stderr)
    bar, done = None, None
    try:
        for r in encode_gops(a.source, settings, out, ray, frames=frames, force=a.force, resume=not a.no_resume):
            if isinstance(r, TasksPlanned):
                tqdm.write(f"{r.total} GOPs on {r.workers} Ray workers ({r.address})"
                           + (f", {r.skipped} finished before" if r.skipped else ""), file=sys.stderr)
                bar = tqdm(total=r.total, initial=r.skipped, file=sys.stderr, disable=a.quiet, unit="GOP")
            elif isinstance(r, TaskDone) and bar is not None:
                bar.set_postfix_str(f"{r.name} on {r.node} in {r.elapsed:.1f} s", refresh=False)
                bar.update(1)
            elif isinstance(r, records.Done):
                done = r
    except KeyboardInterrupt:
        kept = work_folder(out)
        print(f"promptlab encode: interrupted: the finished GOPs are kept in {kept}; run the same command again to "
              "resume (--no-resume starts over)" if kept.exists() else "promptlab encode: interrupted: nothing was kept",
              file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    assert done is not None
    print(f"wrote {out}: {done.total_bytes} bytes, {done.kbps:.2f} kbps ({done.kbps_without_init:.2f} without the "
          f"init latents), {done.elapsed:.1f} s, {done.extra['gops']} GOPs on {done.extra['workers']} workers "
          f"({done.extra['threads']} torch threads each), model {done.extra['model']}", file=sys.stderr)
    return 0


def _run(job, recon_dir: Path | None, quiet: bool, settings) -> records.Done:
    from tqdm import tqdm

    bar = None
    done = None
    timing = {"t0": 0.0, "seen": 0, "todo": 0}
    try:
        for r in job:
            if isinstance(r, records.Started):
                todo = [settings.first_iters] + [settings.iters] * (r.n_keyframes - 1)
                timing.update(t0=time.perf_counter(), seen=0, todo=sum(todo[r.resumed_keyframes:]))
                bar = tqdm(total=sum(todo[r.resumed_keyframes:]), file=sys.stderr, disable=quiet,
                           unit="it", dynamic_ncols=True)
                tqdm.write(f"model {r.model}; {r.n_keyframes} keyframes"
                          + (f", resuming after {r.resumed_keyframes}" if r.resumed_keyframes else ""),
                           file=sys.stderr)
                n_key = r.n_keyframes
            elif isinstance(r, records.Iteration) and timing["seen"] < ESTIMATE_AFTER:
                timing["seen"] += 1
                if timing["seen"] == ESTIMATE_AFTER:
                    each = (time.perf_counter() - timing["t0"]) / ESTIMATE_AFTER
                    tqdm.write(f"expected time: ~{_duration(each * timing['todo'])} for {timing['todo']} iterations "
                               f"({each:.2f} s each so far); Ctrl+C keeps the finished keyframes for a resume",
                               file=sys.stderr)
            if isinstance(r, records.Iteration) and bar is not None:
                bar.set_description(f"kf {r.keyframe + 1}/{n_key} it {r.iteration}/{r.iterations}", refresh=False)
                bar.set_postfix(loss=f"{r.loss:.4f}", best=f"{r.best_loss:.4f}", refresh=False)
                bar.update(1)
            elif isinstance(r, records.KeyframeDone) and bar is not None:
                tqdm.write(f"keyframe {r.keyframe}: loss {r.first_loss:.4f} -> {r.loss:.4f}, {r.record_bytes} bytes",
                           file=sys.stderr)
            elif isinstance(r, records.Frame) and recon_dir is not None:
                path = recon_dir / f"{r.index:05d}.png"
                if not cv2.imwrite(str(path), cv2.cvtColor(r.image, cv2.COLOR_RGB2BGR)):
                    raise PromptlabError(f"cannot write {path}")
            elif isinstance(r, records.Done):
                done = r
    finally:
        if bar is not None:
            bar.close()
    assert done is not None
    return done


ESTIMATE_AFTER = 3  # iterations timed before the expected time is printed


def _duration(seconds: float) -> str:
    """Seconds as a rough human duration (2 h 05 min, 4 min 10 s, 12 s)."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
