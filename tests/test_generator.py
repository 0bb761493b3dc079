"""The one-step generator: the reference equations, fixed noise, determinism, uint8 mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptlab.codec.schedule import segments
from promptlab.engine.generator import (
    SIGMA,
    fixed_noise,
    forward,
    generate_segment,
    segment_contexts,
    segment_input,
    to_uint8,
)
from promptlab.models import load_model


def test_fixed_noise_is_the_reference_randomstate() -> None:
    n = fixed_noise(88, (1, 4, 8, 8))
    ref = np.random.RandomState(88).randn(1, 4, 8, 8).astype(np.float32)
    assert n.dtype == torch.float32 and np.array_equal(n.numpy(), ref)


def test_segment_input_blends_previous_latent() -> None:
    prev, noise = torch.ones(1, 4, 8, 8), torch.zeros(1, 4, 8, 8)
    assert torch.allclose(segment_input(prev, noise, 0.05), torch.full((1, 4, 8, 8), 0.05))


def test_one_step_equations(tiny) -> None:
    """x0 = z/c_in − sigma·eps with eps from the UNet at t=999 on x·c_in (c_in = 1/sqrt(1+sigma²))."""
    z = fixed_noise(1, (1, 4, 8, 8))
    ctx = torch.rand(2, 77, tiny.context_dim)
    x0, images = forward(tiny, z, ctx)
    c_in = 1 / np.sqrt(1 + SIGMA**2)
    assert abs(c_in - 0.0682649) < 1e-7
    eps = tiny.unet(z.expand(2, -1, -1, -1) / c_in * c_in, torch.full((2,), 999), ctx)
    expect = z / c_in - SIGMA * eps
    assert torch.allclose(x0, expect, atol=1e-4)
    assert torch.equal(images, tiny.decode(x0))


def test_generation_is_deterministic_and_batched(tiny) -> None:
    seg = segments(11, 10)[1]
    gen = torch.Generator().manual_seed(0)
    u0, v0, u1, v1 = (torch.rand(77, 4, generator=gen), torch.rand(4, tiny.context_dim, generator=gen),
                      torch.rand(77, 4, generator=gen), torch.rand(4, tiny.context_dim, generator=gen))
    ctx = segment_contexts(seg, (u1, v1), (u0, v0), "factors")
    assert ctx.shape == (10, 77, tiny.context_dim)
    z = fixed_noise(88, (1, 4, 8, 8))
    x0a, ima = generate_segment(tiny, z, ctx)
    x0b, imb = generate_segment(tiny, z, ctx)
    assert np.array_equal(ima, imb) and torch.equal(x0a, x0b)
    assert ima.shape == (10, 64, 64, 3) and ima.dtype == np.uint8
    assert not np.array_equal(ima[0], ima[-1])  # the prompt moves along the segment


def test_to_uint8_mapping() -> None:
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    out = to_uint8(x)
    assert out.shape == (1, 1, 5, 3)
    assert out[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]


@pytest.mark.slow
def test_sd_turbo_architecture_generates_a_frame_end_to_end() -> None:
    """A random-weight UNet from the real SD-Turbo config runs one 128 px frame through the same code."""
    torch.set_num_threads(2)
    m = load_model("sd-turbo-arch", "cpu")
    z = segment_input(m.encode_init(torch.zeros(1, 3, 128, 128)), fixed_noise(88, (1, 4, 16, 16)), 0.05)
    ctx = segment_contexts(segments(1, 10)[0], (torch.rand(77, 8), torch.rand(8, 1024)), None, "factors")
    x0, images = generate_segment(m, z, ctx)
    assert x0.shape == (1, 4, 16, 16) and images.shape == (1, 128, 128, 3) and images.dtype == np.uint8
    assert torch.isfinite(x0).all()
