"""TAEF2, the shipped pretrained autoencoder: its architecture must match the published weights.

A wrong layer order or a misplaced GroupNorm branch still loads strictly when shapes agree, but
no longer reconstructs: the round trip on the demo clip is what proves the module is right.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptlab.errors import PromptlabError
from promptlab.io.video import read_frames
from promptlab.models import taef2
from promptlab.paths import sample_clip


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def test_round_trip_on_the_demo_clip_is_close() -> None:
    frames = np.stack([f for _, f in zip(range(3), read_frames(sample_clip(), size=128))])
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    enc, dec = taef2.load_encoder(), taef2.load_decoder()
    with torch.no_grad():
        z = enc(x)
        y = dec(z).clamp(0, 1)
        signed = taef2.SignedDecoder(dec)(taef2.SignedEncoder(enc)(x * 2 - 1))
    assert z.shape == (3, taef2.LATENT_CHANNELS, 16, 16)
    assert _psnr(y, x) > 27.0          # published: ≈ 29.8 dB at 128 px on this clip
    assert torch.allclose((signed + 1) / 2, y, atol=1e-5)
    # the same architecture with random weights does not reconstruct: the check can fail
    with torch.no_grad():
        y_random = taef2.build_decoder()(taef2.build_encoder()(x)).clamp(0, 1)
    assert _psnr(y_random, x) < 20.0


def test_a_file_that_is_not_taef2_is_a_one_line_error(tmp_path) -> None:
    from safetensors.torch import save_file

    bad = tmp_path / "other.safetensors"
    save_file({"0.weight": torch.zeros(2, 2)}, str(bad))
    with pytest.raises(PromptlabError, match="does not hold TAEF2 weights") as info:
        taef2.load_decoder(bad)
    assert "\n" not in str(info.value)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x01")
    with pytest.raises(PromptlabError, match="not a safetensors file"):
        taef2.load_encoder(junk)
