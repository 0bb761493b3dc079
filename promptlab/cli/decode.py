"""`promptlab decode IN.plab -o OUT`: regenerate frames (OUT: a folder of PNGs, or .mp4/.mkv/.webm/.gif).

`--frames A:B` regenerates frames A..B-1 only (PNGs numbered from 0), reading only the closed GOPs
that hold them (a stream encoded with --gop); they equal the same frames of a full decode.

On the encoder's device at --threads 1 (the count the encoder's numerics run at) the frames equal the
encoder's reconstruction; at another CPU thread count they differ by at most 1/255 per pixel
(measured; docs/reliability.md).
"""

from __future__ import annotations

import argparse
import sys

from promptlab.codec.container import read_header, read_stream
from promptlab.codec.shapes import NAMES
from promptlab.engine import records
from promptlab.engine.decoder import decode
from promptlab.io.atomic import check_target
from promptlab.io.video import parse_frames
from promptlab.io.writer import write_frames
from promptlab.settings import CACHE_POLICIES


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="promptlab decode", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stream", help=".plab file")
    p.add_argument("-o", "--output", required=True, help="folder of PNGs or a video file")
    p.add_argument("--model", help=f"model to use instead of the stream's ({' | '.join(NAMES)} | PATH)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps")
    p.add_argument("--dtype", default="fp32", help="fp32 | bf16 | fp16")
    p.add_argument("--cache", default="none", choices=CACHE_POLICIES,
                   help="generation cache: none (exact), lossless (same frames to float rounding), lossy (faster)")
    p.add_argument("--cache-threshold", type=float, default=0.05,
                   help="lossy cache: reuse deep features while the prompt moved less than this (relative)")
    p.add_argument("--upsampler", default=None, help="two-stage streams: override the upsampler the stream records")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the UNet blocks and decoder (pays for long streams; compiles first)")
    p.add_argument("--channels-last", action="store_true",
                   help="channels_last memory format for the UNet and decoder (faster batched convolutions on CPU)")
    p.add_argument("--frames", default=None,
                   help="frame range A:B (A inclusive, B exclusive): only the GOPs holding it are read")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    check_target(a.output, a.force)
    span = parse_frames(a.frames)
    # a range reads only its GOPs (the decoder seeks by the GOP index); otherwise the whole stream, checked first
    stream = a.stream if span else read_stream(a.stream)
    header = read_header(a.stream) if span else stream.header
    from tqdm import tqdm

    bars: list = []  # made at Started, when the frame count is known (a bad range fails before any bar)
    summary: dict = {}

    def frames():
        for r in decode(stream, model=a.model, device=a.device, dtype=a.dtype, cache=a.cache,
                        cache_threshold=a.cache_threshold, upsampler=a.upsampler, compile=a.compile,
                        channels_last=a.channels_last, frames=span):
            if isinstance(r, records.Started):
                bars.append(tqdm(total=r.n_frames, file=sys.stderr, disable=a.quiet, unit="frame"))
                tqdm.write(f"model {r.model}; {r.n_frames} frames at {r.width}x{r.height}", file=sys.stderr)
            elif isinstance(r, records.Frame):
                bars[0].update(1)
                yield r.image
            elif isinstance(r, records.Done):
                summary["done"] = r

    try:
        n = write_frames(a.output, frames(), header.fps, force=a.force)
    finally:
        for bar in bars:
            bar.close()
    d = summary.get("done")
    rate = f", {d.kbps:.2f} kbps ({d.kbps_without_init:.2f} without init)" if d else ""
    if d and d.extra.get("cache", "none") != "none":
        rate += f", cache {d.extra['cache']} reused {100 * d.extra['mean_reused']:.1f}% of UNet FLOPs"
    print(f"wrote {a.output}: {n} frames{rate}", file=sys.stderr)
    return 0
