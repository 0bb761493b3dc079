"""Long clips are streamed: peak memory of encode and eval barely depends on the clip length.

Each run is a fresh process; its peak resident set (ru_maxrss) is compared for 100 and 1,000
frames at 128 px. Numbers are recorded in docs/reliability.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = ("import resource, sys\n"
         "from promptlab.cli.main import main\n"
         "rc = main(sys.argv[1:])\n"
         "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rc)\n")


def peak_kb(args: list[str]) -> int:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=REPO, timeout=1800)
    line = next((s for s in r.stdout.splitlines() if s.startswith("MAXRSS_KB")), None)
    assert line is not None and line.split()[2] == "0", r.stderr[-2000:]
    return int(line.split()[1])


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """1,000 frames of moving colour ramps at 128 px (H.264)."""
    import av

    path = tmp_path_factory.mktemp("long") / "long.mp4"
    yy, xx = np.mgrid[0:128, 0:128]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width = s.height = 128
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "30", "preset": "ultrafast"}
        for i in range(1000):
            img = np.stack([(xx + i) % 256, (yy * 2 + i) % 256, ((xx + yy) // 2 + 3 * i) % 256], -1).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


@pytest.mark.slow
def test_encode_peak_memory_does_not_grow_with_length(long_clip, tmp_path):
    common = ["--size", "128", "--interval", "10", "--iters", "1", "--first-iters", "1", "--perceptual", "none",
              "--quiet", "--force"]
    short = peak_kb(["encode", str(long_clip), "--frames", "0:100", "-o", str(tmp_path / "a.plab"), *common])
    long = peak_kb(["encode", str(long_clip), "-o", str(tmp_path / "b.plab"), *common])
    print(f"encode peak RSS: 100 frames {short / 1024:.0f} MiB, 1000 frames {long / 1024:.0f} MiB")
    assert long < 1.2 * short


@pytest.mark.slow
def test_eval_peak_memory_does_not_grow_with_length(long_clip, tmp_path):
    common = ["--size", "128"]
    short = peak_kb(["eval", str(long_clip), str(long_clip), "--frames", "0:100", "--recon-frames", "0:100", *common])
    long = peak_kb(["eval", str(long_clip), str(long_clip), *common])
    print(f"eval peak RSS: 100 frames {short / 1024:.0f} MiB, 1000 frames {long / 1024:.0f} MiB")
    assert long < 1.2 * short
