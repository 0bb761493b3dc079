"""A stream's bytes do not depend on the torch thread count: plain and --gop encodes at --threads 1
and 2 (the CLI in fresh processes, as a user runs it), and a Ray worker at another thread count than
the driver's serial encode.

Before device.fixed_threads these streams differed (the model's CPU kernels split their sums by thread
count; docs/reliability.md): both CLI cases fail on the code before it (checked when written).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptlab.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
N = 21
ENCODE = ["--size", "64", "--rank", "2", "--interval", "10", "--iters", "2", "--first-iters", "4",
          "--perceptual", "none", "--frames", f"0:{N}", "--quiet", "--no-resume"]


def cli_encode(src: Path, out: Path, threads: int, *extra: str) -> bytes:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("OMP_NUM_THREADS", None)
    r = subprocess.run([sys.executable, "-m", "promptlab", "encode", str(src), "-o", str(out), *ENCODE,
                        "--threads", str(threads), *extra], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("gop", [0, 10])
def test_encode_bytes_are_the_same_at_one_and_two_threads(sky_mp4: Path, tmp_path: Path, gop: int) -> None:
    one = cli_encode(sky_mp4, tmp_path / "t1.plab", 1, "--gop", str(gop))
    two = cli_encode(sky_mp4, tmp_path / "t2.plab", 2, "--gop", str(gop))
    assert len(one) > 0 and one == two


@pytest.mark.slow
def test_a_ray_worker_at_another_thread_count_writes_the_serial_bytes(sky_mp4: Path, tmp_path: Path) -> None:
    serial, par = tmp_path / "serial.plab", tmp_path / "ray.plab"
    assert main(["encode", str(sky_mp4), "-o", str(serial), "--gop", "10", "--threads", "1", *ENCODE]) == 0
    # one worker reserving one Ray CPU (Ray starts it with OMP_NUM_THREADS=1) but told to run 2 torch threads
    assert main(["encode", str(sky_mp4), "-o", str(par), "--gop", "10", "--engine", "ray", "--workers", "1",
                 "--task-cpus", "1", "--threads", "2", *ENCODE]) == 0
    assert par.read_bytes() == serial.read_bytes()
