"""`promptlab bench`: generation and inversion speed of our engine against the plain diffusers way."""

from __future__ import annotations

import argparse
import json
import sys

from promptlab.codec.shapes import NAMES
from promptlab.errors import PromptlabError
from promptlab.extras import require


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="promptlab bench", description=__doc__)
    p.add_argument("--model", default="tiny", help=f"{' | '.join(NAMES)} | PATH")
    p.add_argument("--size", type=int, default=128, help="frame side in px (multiple of 8)")
    p.add_argument("--frames", type=int, default=10, help="frames in the benchmarked segment")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions per side (medians)")
    p.add_argument("--inv-iters", type=int, default=10, help="iterations per inversion run")
    p.add_argument("--inv-reps", type=int, default=1, help="interleaved inversion runs per side")
    p.add_argument("--threshold", type=float, default=0.05, help="lossy cache threshold")
    p.add_argument("--device", default="cpu", help="cpu | cuda | mps | auto")
    p.add_argument("--dtype", default="fp32", help="fp32 | bf16 | fp16")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--compile", action="store_true",
                   help="also time our generator under torch.compile (on a compiled copy of the weights)")
    p.add_argument("--json", dest="json_out", help="write every number here")
    p.add_argument("--lab-preview", metavar="CLIP",
                   help="instead: time the lab's run of --preset on CLIP as the user waits for it (first "
                        "reconstructed frame, full result; medians of --reps fresh runs, no results cache)")
    p.add_argument("--preset", default="preview", help="the preset --lab-preview runs (default preview)")
    p.add_argument("--clip-frames", default="0:41", help="frame range --lab-preview runs (default 0:41)")
    a = p.parse_args(argv)
    if a.lab_preview:
        return _lab_preview(a)
    if a.size < 8 or a.size % 8:
        raise PromptlabError(f"--size must be a positive multiple of 8, got {a.size}")
    if a.frames < 2 or a.reps < 1 or a.inv_iters < 1 or a.inv_reps < 1:
        raise PromptlabError("--frames must be >= 2 and --reps, --inv-iters, --inv-reps >= 1")
    require("transformers")
    if a.json_out:
        from promptlab.io.atomic import check_target

        check_target(a.json_out, True)
    from promptlab.bench import run_bench

    r = run_bench(a.model, a.size, a.frames, a.reps, a.inv_iters, a.inv_reps, a.threshold, a.device, a.dtype,
                  a.threads, a.channels_last, a.compile)
    g, inv = r["generation"], r["inversion"]
    fps = ", ".join(f"{k} {v:.2f}" for k, v in g["frames_per_s"].items())
    print(f"{r['model']} {r['size']}px {r['dtype']} {r['device']}, {r['frames']} frames, {r['reps']} reps", file=sys.stderr)
    print(f"generation frames/s: {fps}", file=sys.stderr)
    print(f"speedup vs diffusers (lossless): {r['speedup_vs_diffusers']:.2f}x, max |diff| "
          f"{g['diffusers_max_abs_diff']['lossless']:.2e}", file=sys.stderr)
    if a.compile:
        print(f"torch.compile: {g['compile_seconds']:.0f} s to compile; speedup vs diffusers (lossless, compiled): "
              f"{g['speedup_vs_diffusers_compiled']:.2f}x, max |diff| {g['diffusers_max_abs_diff']['lossless+compile']:.2e}",
              file=sys.stderr)
    print(f"lossless cache: {r['lossless_cache_speedup']:.2f}x ({g['lossless_cache_flop_speedup']:.3f}x "
          f"if time followed FLOPs), max |diff| {r['lossless_cache_max_abs_diff']:.2e}; "
          f"lossy: {g['lossy_cache_speedup']:.2f}x", file=sys.stderr)
    print(f"inversion per frame visit: {r['inversion_speedup_vs_reference']:.2f}x the reference loop; "
          f"seconds to the reference's best loss {inv['seconds_to_target']}", file=sys.stderr)
    pv = r["preview"]
    print(f"slider preview (rank {pv['rank']} -> {pv['preview_rank']}, transcode + decode, no fit): first frame "
          f"{pv['first_frame_ms']:.0f} ms, all {pv['frames']} frames {pv['all_frames_ms']:.0f} ms "
          f"({pv['ms_per_frame']:.1f} ms/frame)", file=sys.stderr)
    print(f"peak RSS {r['peak_rss_mb']:.0f} MB", file=sys.stderr)
    if a.json_out:
        from promptlab.io.atomic import write_bytes_atomic

        write_bytes_atomic(a.json_out, (json.dumps(r, indent=2) + "\n").encode())
    return 0


def _lab_preview(a: argparse.Namespace) -> int:
    """The run a user starts from the lab (`promptlab run CLIP --preset P`), timed from Run; each
    repetition in a fresh results cache, so none is answered from an earlier one."""
    import os
    import tempfile

    from promptlab.bench.run import answer_times
    from promptlab.device import set_threads
    from promptlab.io.video import checked_count, parse_frames, probe
    from promptlab.runs.lab import RunSpec, run_lab
    from promptlab.runs.records import PROMPTLAB, FrameResult, Summary
    from promptlab.settings import load_preset

    if a.reps < 1:
        raise PromptlabError("--reps must be >= 1")
    settings = load_preset(a.preset).replace(fps=probe(a.lab_preview).fps, threads=a.threads)
    frames = parse_frames(a.clip_frames)
    n, _ = checked_count(a.lab_preview, frames)
    rng = None if frames is None else (frames[0], frames[0] + n)
    set_threads(a.threads)
    summaries: list[Summary] = []

    def one() -> object:
        with tempfile.TemporaryDirectory() as cache:
            for rec in run_lab(RunSpec(settings=settings, source=a.lab_preview, frames=rng, cache_root=cache)):
                if isinstance(rec, Summary) and rec.method == PROMPTLAB:
                    summaries.append(rec)
                yield rec

    load = os.getloadavg()[0]
    r = answer_times(one, lambda rec: isinstance(rec, FrameResult) and rec.stage in ("encode", "decode"), a.reps)
    r.update(preset=a.preset, clip=a.lab_preview, frames=n, size=settings.size, model=settings.model,
             threads=a.threads, loadavg_1m_start=load, loadavg_1m_end=os.getloadavg()[0],
             kbps=summaries[-1].kbps, lpips=summaries[-1].lpips)
    print(f"{a.preset} on {a.lab_preview} ({n} frames, {settings.size} px, {settings.model}), medians of {a.reps} "
          f"runs: first frame {r['first_frame_s']:.1f} s, full result {r['full_s']:.1f} s; {r['kbps']:.2f} kbps, "
          f"LPIPS {r['lpips']:.4f}; load {load:.1f} -> {r['loadavg_1m_end']:.1f}", file=sys.stderr)
    if a.json_out:
        from promptlab.io.atomic import check_target, write_bytes_atomic

        check_target(a.json_out, True)
        write_bytes_atomic(a.json_out, (json.dumps(r, indent=2) + "\n").encode())
    return 0
