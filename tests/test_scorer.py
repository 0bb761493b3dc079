"""The scorer's LPIPS value and map come from one pass and equal what lpips itself computes."""

from __future__ import annotations

import lpips
import numpy as np
import pytest
import torch

from promptlab.metrics.frame import FrameMetrics, lpips_pass
from promptlab.metrics.perceptual import to_lpips_tensor


@pytest.fixture(scope="module", params=["alex", pytest.param("vgg", marks=pytest.mark.slow)])
def model(request):
    # the real LPIPS architecture and linear heads; a random backbone needs no download
    torch.manual_seed(0)
    return lpips.LPIPS(net=request.param, pnet_rand=True, verbose=False).eval()


def pair(seed: int = 0, n: int = 3, side: int = 64):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    return a, b


@torch.no_grad()
def test_one_pass_value_and_map_equal_lpips_with_spatial_off_and_on(model) -> None:
    a, b = pair()
    t0, t1 = to_lpips_tensor(a), to_lpips_tensor(b)
    values, maps = lpips_pass(model, t0, t1, maps=True)
    assert torch.allclose(values, model(t0, t1).flatten(), rtol=1e-5, atol=1e-6)
    model.spatial = True
    try:
        ref_maps = model(t0, t1)[:, 0]
    finally:
        model.spatial = False
    assert maps is not None and maps.shape == (3, 64, 64)
    assert torch.allclose(maps, ref_maps, rtol=1e-5, atol=1e-6)
    assert lpips_pass(model, t0, t1, maps=False)[1] is None


def test_frame_metrics_returns_maps_only_when_asked(model) -> None:
    fm = FrameMetrics(need_lpips=False)
    fm.lpips_model = model
    a, b = pair(1, n=2)
    rows = fm.compute_batch(list(a), list(b), maps=True)
    plain = fm.compute_batch(list(a), list(b))
    assert "lpips_map" not in plain[0]
    for r, p in zip(rows, plain, strict=True):
        assert r["lpips"] == pytest.approx(p["lpips"], rel=1e-6)
        assert r["lpips_map"].dtype == np.uint8 and r["lpips_map"].shape == (64, 64)
    # a worse frame gets a brighter map
    worse = fm.compute_batch([a[0]], [255 - a[0]], maps=True)[0]
    assert worse["lpips"] > rows[0]["lpips"] and worse["lpips_map"].mean() > rows[0]["lpips_map"].mean()
    # without LPIPS weights the map is None, like the value
    fm.lpips_model = None
    assert fm.compute_batch([a[0]], [b[0]], maps=True)[0]["lpips_map"] is None
