"""scripts/gpu-bench.sh, the one-command GPU benchmark: its CPU path, at tiny sizes, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptlab.bench.cross_device import main as cross_main

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_script_runs_on_the_cpu_and_writes_every_table(tmp_path: Path) -> None:
    env = {**os.environ, "DEVICE": "cpu", "HALF": "bf16", "SIZE": "32", "FRAMES": "2", "REPS": "1",
           "INV_ITERS": "1", "MODELS": "tiny", "VARIANTS": "eager half", "CROSS_SIZE": "32",
           "OUT": str(tmp_path / "out"), "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-bench.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "out"
    for v, dtype in (("eager", "float32"), ("half", "bfloat16")):
        b = json.loads((out / f"tiny-32-{v}.json").read_text())
        assert b["device"] == "cpu" and b["dtype"] == dtype
        assert b["generation"]["frames_per_s"]["diffusers"] > 0 and b["speedup_vs_diffusers"] > 0
    x = json.loads((out / "cross-device.json").read_text())
    # the same device as the encoder: the receiver reproduces the encoder's frames exactly
    assert x["decode_device"] == "cpu" and x["max_abs_diff_levels"] == 0 and x["identical_frames"] == x["frames"]


def test_the_script_refuses_an_unknown_variant(tmp_path: Path) -> None:
    env = {**os.environ, "DEVICE": "cpu", "MODELS": "tiny", "VARIANTS": "turbo", "OUT": str(tmp_path),
           "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-bench.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown variant turbo" in r.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA machine runs the real check")
def test_cross_device_says_in_one_line_when_there_is_no_gpu(capsys) -> None:
    assert cross_main(["--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no CUDA GPU" in err and "\n" not in err
