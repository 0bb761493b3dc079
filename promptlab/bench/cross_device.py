"""Does a stream encoded on the CPU decode on another device to the same frames?

`python -m promptlab.bench.cross_device --device cuda [--model tiny] [--size 512] [--frames 5]
[--json OUT]`: encodes a synthetic clip (a moving gradient, so no data outside the repository)
on the CPU with a few iterations, decodes it on the CPU and on `--device`, and reports the max
absolute difference per frame in 8-bit levels. On `--device cpu` it must be 0 (the encoder's own
device); scripts/gpu-bench.sh runs it on CUDA.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def clip(path: Path, n: int, size: int) -> Path:
    """A small lossless clip: a gradient that moves, one square that crosses it."""
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=30)
        s.width = s.height = size
        s.pix_fmt = "yuv444p"
        yy, xx = np.mgrid[0:size, 0:size]
        for i in range(n):
            img = np.stack([(xx * 255 // size + 9 * i) % 256, (yy * 255 // size) % 256,
                            np.full_like(xx, 40 + 10 * i)], -1).astype(np.uint8)
            q = size // 4
            img[q:2 * q, (i * 3) % (size - q):(i * 3) % (size - q) + q] = 230
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def frames_of(stream: Path, device: str) -> tuple[list[np.ndarray], float]:
    from promptlab.engine import records
    from promptlab.engine.decoder import decode

    t0 = time.perf_counter()
    imgs = [r.image for r in decode(stream, device=device) if isinstance(r, records.Frame)]
    return imgs, time.perf_counter() - t0


def cross_device(device: str, model: str = "tiny", size: int = 64, frames: int = 3, iters: int = 2) -> dict[str, Any]:
    from promptlab.engine.encoder import encode
    from promptlab.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        src = clip(Path(tmp) / "clip.mkv", frames, size)
        s = Settings(model=model, size=size, rank=2, interval=max(2, frames - 1), iters=iters, first_iters=iters,
                     perceptual="none", device="cpu", fps=30.0)
        out = Path(tmp) / "clip.plab"
        for _ in encode(src, s, out):
            pass
        cpu, cpu_s = frames_of(out, "cpu")
        other, other_s = frames_of(out, device)
    diffs = [int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) for a, b in zip(cpu, other, strict=True)]
    return {"model": model, "size": size, "frames": frames, "encode_device": "cpu", "decode_device": device,
            "max_abs_diff_levels": max(diffs), "per_frame_max_abs_diff_levels": diffs,
            "identical_frames": sum(d == 0 for d in diffs), "decode_s": {"cpu": cpu_s, device: other_s}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m promptlab.bench.cross_device", description=__doc__)
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="tiny")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--json", dest="json_out")
    a = p.parse_args(argv)
    from promptlab.device import resolve_device
    from promptlab.errors import PromptlabError

    try:
        resolve_device(a.device)
        if a.size < 16 or a.size % 8 or a.frames < 2:
            raise PromptlabError("--size must be a multiple of 8 >= 16 and --frames >= 2")
        r = cross_device(a.device, a.model, a.size, a.frames, a.iters)
    except PromptlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"encoded on cpu, decoded on {a.device}: max |diff| {r['max_abs_diff_levels']}/255, "
          f"{r['identical_frames']}/{r['frames']} frames identical", file=sys.stderr)
    if a.json_out:
        from promptlab.io.atomic import write_bytes_atomic

        write_bytes_atomic(a.json_out, (json.dumps(r, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
