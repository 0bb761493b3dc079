"""The streams whose bytes a refactor must not change: one command line per case, on committed clips.

`python tests/stream_cases.py --write` records their SHA-256 in tests/data/stream-checksums.json
(run it on the code *before* a change); tests/test_stream_checksums.py re-encodes and compares.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKSUMS = ROOT / "tests" / "data" / "stream-checksums.json"
ASSETS = ROOT / "promptlab" / "assets"

_FIT = ["--size", "64", "--rank", "2", "--interval", "5", "--iters", "2", "--first-iters", "3",
        "--perceptual", "none", "--quiet", "--no-resume", "--threads", "1"]

# name -> (clip, output suffix, argv after the source and before -o)
CASES: dict[str, tuple[str, str, list[str]]] = {
    "tiny-sky": ("sky.mp4", ".plab", ["encode", *_FIT, "--frames", "0:11"]),
    "tiny-gop-pedestrians": ("pedestrians.mp4", ".plab", ["encode", *_FIT, "--frames", "0:11", "--gop", "5"]),
    "tiny-bits4-box": ("box.mp4", ".plab", ["encode", *_FIT, "--frames", "0:6", "--bits", "4",
                                            "--init-mode", "q8"]),
    "tiny-twostage-sky": ("sky.mp4", ".plab", ["encode", *_FIT[2:], "--size", "128", "--stage-scale", "2",
                                               "--frames", "0:6"]),
    "tiny2-sky": ("sky.mp4", ".plab", ["encode", *_FIT, "--model", "tiny2", "--frames", "0:6"]),
    "vae-box": ("box.mp4", ".plva", ["baseline", "vae", "--kbps", "20", "--size", "64", "--frames", "0:11"]),
    "thumbnail-pedestrians": ("pedestrians.mp4", ".plth", ["baseline", "thumbnail", "--kbps", "20", "--size", "64",
                                                           "--frames", "0:11"]),
}


def argv(name: str, out: Path) -> list[str]:
    """The command line of one case, writing its stream to `out`."""
    clip, _, args = CASES[name]
    cmd, rest = args[0], args[1:]
    if cmd == "baseline":
        return ["baseline", rest[0], *rest[1:], str(ASSETS / clip), "-o", str(out), "--force"]
    return [cmd, str(ASSETS / clip), *rest, "-o", str(out)]


def encode(name: str, folder: Path) -> bytes:
    """Run one case in this process (as `promptlab ...` would) and return its stream's bytes."""
    from promptlab.cli.main import main

    out = folder / (name + CASES[name][1])
    rc = main(argv(name, out))
    assert rc == 0, f"{name}: exit {rc}"
    return out.read_bytes()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def environment() -> dict[str, str]:
    """What the recorded bytes depend on besides the code: the torch build."""
    import torch

    return {"torch": torch.__version__}


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/stream_cases.py --write")
    import os

    os.environ.setdefault("PROMPTLAB_TINY", "random")
    with tempfile.TemporaryDirectory() as d:
        sums = {n: digest(encode(n, Path(d))) for n in CASES}
    CHECKSUMS.write_text(json.dumps({"environment": environment(), "sha256": sums}, indent=1) + "\n")
    print(f"wrote {CHECKSUMS}")
