"""tiny2: the built-in model over TAEF2's pretrained decoder, whose prompt is a low-rank latent code.

Mechanisms, not quality (its measured curve is in docs/model-card.md): it loads from the package,
a rank-r prompt reads out to a latent whose patch matrix has rank ≤ r, the SVD prompt encoder is
rank-nested and starts the inversion at the best rank-r code, generation is differentiable
through the decoder, and a stream round-trips through the CLI.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptlab.codec.prompt import compose
from promptlab.engine.generator import forward
from promptlab.models.registry import available_models, load_model, model_fingerprint
from promptlab.models.tiny2 import GRID, SvdPromptEncoder, patch_matrix
from promptlab.paths import sample_clip


@pytest.fixture(scope="module")
def model():
    return load_model("tiny2", "cpu")


def _sky(n: int, size: int = 128) -> torch.Tensor:
    from promptlab.io.video import read_frames

    frames = np.stack([f for _, f in zip(range(n), read_frames(sample_clip(), size=size))])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_loads_from_the_package_with_real_weights(model):
    assert model.name == "tiny2" and not model.random_weights and model.latent_channels == 32
    assert model.fingerprint == model_fingerprint("tiny2")
    assert ("tiny2", True) == next((n, ok) for n, ok, _ in available_models() if n == "tiny2")


def test_a_rank_r_prompt_reads_out_to_a_rank_r_latent(model):
    gen = torch.Generator().manual_seed(0)
    for r in (1, 3, 8):
        u, v = torch.randn(77, r, generator=gen), torch.randn(r, model.context_dim, generator=gen)
        z = torch.randn(1, 32, 16, 16, generator=gen)
        x0, images = forward(model, z, compose(u, v).unsqueeze(0))
        m = patch_matrix(x0)[0]
        assert torch.linalg.matrix_rank(m, atol=1e-3 * m.abs().max()).item() <= r
        # and it is exactly the prompt's grid tokens (the read-out is the identity layout)
        assert torch.allclose(m, compose(u, v)[: GRID * GRID], atol=1e-4)
        assert images.shape == (1, 3, 128, 128) and images.abs().max() <= 1


def test_the_svd_start_is_nested_and_is_the_best_rank_k_code(model):
    from promptlab.engine.inverter import start_factors
    from promptlab.settings import Settings

    image = _sky(1)
    with torch.no_grad():
        lat = model.parts["encoder"](image)
    m = patch_matrix(lat)[0]
    u, v = SvdPromptEncoder()(lat)
    errors = []
    for k in (1, 2, 4, 8, 16):
        best = torch.linalg.svd(m, full_matrices=False)
        approx = (best.U[:, :k] * best.S[:k]) @ best.Vh[:k]
        assert torch.allclose(u[0, : GRID * GRID, :k] @ v[0, :k], approx, atol=1e-3)
        su, sv = start_factors(model, Settings(model="tiny2", rank=k, start="auto"), 0, image)
        assert torch.allclose(compose(su, sv)[: GRID * GRID], approx, atol=1e-3)
        errors.append(float((approx - m).norm()))
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0]


def test_generation_is_differentiable_through_the_decoder(model):
    ctx = torch.randn(1, 77, model.context_dim, requires_grad=True)
    _, images = forward(model, torch.zeros(1, 32, 16, 16), ctx)
    images.mean().backward()
    assert ctx.grad is not None and ctx.grad[:, : GRID * GRID].abs().sum() > 0


def test_encode_decode_round_trip(tmp_path):
    from promptlab.cli.main import main

    out = tmp_path / "clip.plab"
    assert main(["encode", str(sample_clip()), "-o", str(out), "--model", "tiny2", "--size", "128", "--frames", "0:3",
                 "--rank", "4", "--interval", "2", "--iters", "2", "--first-iters", "2", "--perceptual", "none",
                 "--threads", "1", "--quiet"]) == 0
    from promptlab.codec.container import read_header

    assert read_header(out).model == "tiny2"
    frames = tmp_path / "frames"
    assert main(["decode", str(out), "-o", str(frames), "--quiet"]) == 0
    assert len(list(frames.glob("*.png"))) == 3


def test_the_tiny2_refine_preset_loads():
    from promptlab.settings import Settings, list_presets, load_preset

    assert "tiny2-refine" in list_presets()
    s = load_preset("tiny2-refine", Settings(model="tiny2"))
    assert (s.model, s.lr, s.first_iters, s.iters, s.rank, s.interval, s.bits) == ("tiny2", 0.01, 20, 10, 8, 20, 3)
