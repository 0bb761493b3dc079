"""Two-stage generation: a smaller latent, an upsampler, inversion through the same path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptlab.codec.schedule import segments
from promptlab.engine import records
from promptlab.engine.decoder import decode
from promptlab.engine.encoder import encode
from promptlab.engine.generator import fixed_noise, generate_segment, segment_contexts
from promptlab.engine.upsample import (
    get_upsampler,
    lanczos,
    register_upsampler,
    stage_latent,
    upsample,
)
from promptlab.errors import PromptlabError
from promptlab.settings import Settings


def test_upsamplers_keep_constants_and_sizes() -> None:
    x = torch.full((1, 3, 8, 8), 0.25)
    for name in ("bicubic", "lanczos"):
        y = upsample(x, (16, 16), name)
        assert y.shape == (1, 3, 16, 16) and torch.allclose(y, x.new_full(y.shape, 0.25), atol=1e-6)
    r = torch.rand(1, 3, 8, 8)
    assert upsample(r, (8, 8)) is r
    assert (lanczos(r, (16, 16)) - upsample(r, (16, 16), "bicubic")).abs().max() > 0  # a different filter


def test_learned_upsampler_plugs_in(monkeypatch) -> None:
    from promptlab.engine import upsample as upsample_module

    monkeypatch.setattr(upsample_module, "_REGISTRY", dict(upsample_module._REGISTRY))  # no test name left behind
    calls = []

    def factory(device):
        def up(images, size):
            calls.append(size)
            return torch.nn.functional.interpolate(images, size=size, mode="nearest")
        return up

    register_upsampler("test-nearest", factory)
    out = get_upsampler("test-nearest")(torch.rand(1, 3, 4, 4), (8, 8))
    assert out.shape == (1, 3, 8, 8) and calls == [(8, 8)]
    with pytest.raises(PromptlabError):
        get_upsampler("no-such")


def test_stage_latent_and_settings() -> None:
    assert stage_latent(128, 2) == 8 and stage_latent(128, 1) == 16
    with pytest.raises(PromptlabError):
        stage_latent(72, 2)
    with pytest.raises(PromptlabError):
        Settings(size=72, stage_scale=2)
    with pytest.raises(PromptlabError):
        Settings(stage_scale=3)


def test_two_stage_generates_small_and_upsamples(tiny) -> None:
    ctx = segment_contexts(segments(1, 10)[0], (torch.rand(77, 4), torch.rand(4, tiny.context_dim)), None, "factors")
    z = fixed_noise(88, (1, 4, 8, 8))  # 64 px latent
    x0, small = generate_segment(tiny, z, ctx)
    x0b, big = generate_segment(tiny, z, ctx, out_size=(128, 128))
    assert small.shape == (1, 64, 64, 3) and big.shape == (1, 128, 128, 3)
    assert torch.equal(x0, x0b)


def test_two_stage_encode_decode_roundtrip(tiny, tmp_path) -> None:
    g = np.random.RandomState(0)
    src = tmp_path / "src"
    src.mkdir()
    import cv2

    for i in range(3):
        cv2.imwrite(str(src / f"{i:05d}.png"), (g.rand(64, 64, 3) * 255).astype(np.uint8))
    s = Settings(size=64, stage_scale=2, interval=2, iters=2, first_iters=3, perceptual="none", rank=2,
                 device="cpu", threads=2)
    out = tmp_path / "a.plab"
    recs = list(encode(src, s, out, model=tiny))
    recon = [r.image for r in recs if isinstance(r, records.Frame)]
    done = recs[-1]
    assert isinstance(done, records.Done) and done.extra["stage_scale"] == 2
    assert all(im.shape == (64, 64, 3) for im in recon) and len(recon) == 3
    from promptlab.device import fixed_threads

    with fixed_threads():  # the encoder's frames come from the fit's fixed thread count: decode at it
        dec = list(decode(out, model=tiny))
    frames = [r.image for r in dec if isinstance(r, records.Frame)]
    assert dec[-1].extra["two_stage"] is True
    assert all(np.array_equal(a, b) for a, b in zip(recon, frames, strict=True))
