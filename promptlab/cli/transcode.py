"""`promptlab transcode IN.plab -o OUT.plab [--rank R] [--bits B] [--kbps K]`: a cheaper stream, no re-fit.

A lower rank keeps the best rank-R approximation of every keyframe's prompt (truncated SVD);
fewer bits requantise the factors; --kbps picks the largest rank whose whole stream (every byte
counted) fits the target. The init latent and every other header field are kept.
"""

from __future__ import annotations

import argparse

from promptlab.codec.container import read_stream
from promptlab.codec.rate import measured
from promptlab.codec.transcode import rekey, transcode, transcode_to_rate
from promptlab.errors import PromptlabError
from promptlab.io.atomic import check_target, write_bytes_atomic


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="promptlab transcode", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stream", help="input .plab file")
    p.add_argument("-o", "--output", required=True, help="output .plab file")
    p.add_argument("--rank", type=int, help="new prompt rank (1 .. the stream's rank; default: keep)")
    p.add_argument("--bits", type=int, help="new quantiser bits (2..8; default: keep)")
    p.add_argument("--interval", type=int, help="new keyframe interval (keyframes re-placed, factors "
                   "interpolated from the stream's own; default: keep)")
    p.add_argument("--kbps", type=float, help="target rate counting every byte: picks the rank (not with --rank)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    return p


def main(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    if a.kbps is not None and a.rank is not None:
        raise PromptlabError("give --rank or --kbps, not both")
    if a.kbps is None and a.rank is None and a.bits is None and a.interval is None:
        raise PromptlabError("nothing to change: give --rank, --bits, --interval or --kbps")
    check_target(a.output, a.force)
    src = read_stream(a.stream)
    keyed = rekey(src, a.interval) if a.interval is not None else src
    out = transcode_to_rate(keyed, a.kbps, a.bits) if a.kbps is not None else transcode(keyed, a.rank, a.bits)
    write_bytes_atomic(a.output, out.data)
    before = measured(src.header, src.header_bytes, src.init_bytes, src.keyframe_bytes, src.index_bytes)
    print(f"{a.stream}: rank {src.header.rank}, {src.header.bits} bits, interval {src.header.interval}, "
          f"{before.total_bytes} B, {before.kbps:.2f} kbps")
    print(f"{a.output}: rank {out.header.rank}, {out.header.bits} bits, interval {out.header.interval}, "
          f"{len(out.data)} B, {out.kbps:.2f} kbps")
    return 0
