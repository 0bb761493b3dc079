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
    a = p.parse_args(argv)
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
