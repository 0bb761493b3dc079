"""`promptlab info FILE.plab [--json]`: what a stream holds and where every byte goes."""

from __future__ import annotations

import argparse
import json

from promptlab.codec.container import read_stream
from promptlab.codec.rate import measured
from promptlab.codec.schedule import gop_starts, stream_segments


def describe(path: str) -> dict:
    s = read_stream(path, allow_partial=True)
    h = s.header
    rate = measured(h, s.header_bytes, s.init_bytes, s.keyframe_bytes, s.index_bytes)
    return {
        "path": path,
        **h.settings_fields(),
        "width": h.width, "height": h.height, "frames": h.n_frames,
        "keyframes": len(s.keyframes), "keyframes_expected": h.n_keyframes,
        "keyframe_frames": [seg.keyframe for _, seg in stream_segments(h.n_frames, h.interval, h.gop)][: len(s.keyframes)],
        "gops": h.n_gops, "gop_frames": gop_starts(h.n_frames, h.gop), "index_bytes": s.index_bytes,
        "context_dim": h.context_dim, "latent_shape": list(h.latent_shape),
        "header_bytes": s.header_bytes, "init_bytes": s.init_bytes,
        "keyframe_bytes": s.keyframe_bytes, "total_bytes": s.total_bytes,
        "kbps": round(rate.kbps, 3), "kbps_without_init": round(rate.kbps_without_init, 3),
        "complete": s.complete,
        "error": str(s.error) if s.error else None,
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="promptlab info", description=__doc__)
    p.add_argument("stream", help=".plab file")
    p.add_argument("--json", action="store_true", help="print JSON")
    a = p.parse_args(argv)
    d = describe(a.stream)
    if a.json:
        print(json.dumps(d, indent=2))
    else:
        print(f"{d['path']}: {d['model']}, {d['width']}x{d['height']} @ {d['fps']:g} fps, {d['frames']} frames")
        print(f"  rank {d['rank']}, {d['bits']} bits, keyframe interval {d['interval']}, "
              f"{d['keyframes']}/{d['keyframes_expected']} keyframes, interp {d['interp']}, init {d['init_mode']}, "
              f"{d['gops']} GOP{'s' if d['gops'] > 1 else ''}")
        kb = d["keyframe_bytes"]
        mean_kb = sum(kb) / len(kb) if kb else 0
        print(f"  bytes: header {d['header_bytes']}, init latent{'s' if d['gops'] > 1 else ''} {d['init_bytes']}, "
              f"keyframes {sum(kb)} ({mean_kb:.0f} each on average), GOP index {d['index_bytes']}, "
              f"total {d['total_bytes']}")
        print(f"  rate: {d['kbps']:.1f} kbps counting every byte, {d['kbps_without_init']:.1f} kbps without the init latent")
    if d["error"]:
        print(f"promptlab info: warning: {d['error']}")
        return 1
    return 0
