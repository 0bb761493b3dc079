"""tiny2: the built-in model over a pretrained decoder (TAEF2), whose prompt is a low-rank latent code.

tiny-v1 decodes through a decoder trained on three videos and tops out near 23.5 dB; whatever
the prompt carries, more rank buys little. tiny2 generates TAEF2's 32-channel latent and
decodes it with TAEF2's pretrained decoder (models/taef2.py), so its images come from a real
prior. Its one-step generation reads the latent straight out of the prompt: the 64 spatial
tokens of the 77×128 context are the 8×8 grid of 2×2×32 latent patches (a fixed linear
read-out, LatentReadout with −identity weights, since x0 = −(UNet + read-out) in the trained
parameterisation), so a rank-r prompt U·V/√r IS a rank-r code of the latent's patch matrix: V's
rows are r patch atoms, U's rows their weights per grid cell. The UNet is a small diffusers
UNet whose output layer is zero: it adds nothing yet (a learned residual can be trained into
it later) but keeps every engine path, the generation caches included, exactly as for the
other models. The prompt encoder is the truncated SVD of the keyframe's TAEF2 latent patches
(rank-nested by construction), so the inversion starts from the best linear rank-r code and
refines it through the decoder. Nothing here was trained: no weights of its own ship.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from promptlab.codec.prompt import TOKENS
from promptlab.models import taef2
from promptlab.models.base import Model, freeze
from promptlab.models.tiny import EPS_SKIP, SEED, TRAINED_EPS_GAIN
from promptlab.models.tiny_parts import LatentReadout

NAME = "tiny2"
VERSION = "v2-taef2-linear"
DIM = 128                 # prompt width = 32 latent channels × a 2×2 patch
GRID, PATCH = 8, 2        # 64 spatial tokens, each a 2×2 latent patch: a 16×16 latent (128 px)
MAX_RANK = 32
UNET_CONFIG: dict[str, Any] = {
    "sample_size": 16, "in_channels": taef2.LATENT_CHANNELS, "out_channels": taef2.LATENT_CHANNELS,
    "block_out_channels": [32, 64], "layers_per_block": 1,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": DIM,
    "attention_head_dim": 8, "norm_num_groups": 8, "use_linear_projection": True,
}


def patch_matrix(latent: torch.Tensor) -> torch.Tensor:
    """(N, 32, 16, 16) latent → (N, 64, 128): one row per grid cell, the read-out's token layout
    (pixel_unshuffle: channel c, sub-position (i, j) → column c·4 + i·2 + j)."""
    lat = latent
    size = GRID * PATCH
    if tuple(lat.shape[-2:]) != (size, size):
        lat = nn.functional.interpolate(lat, size=(size, size), mode="area")
    return nn.functional.pixel_unshuffle(lat, PATCH).flatten(2).transpose(1, 2)


class SvdPromptEncoder(nn.Module):
    """Latent → rank-nested (U, V): the truncated SVD of its patch matrix, rows beyond the grid zero.

    `rank_scaled`: the product of the first k columns/rows IS the rank-k guess; the inverter
    multiplies both by k^(1/4) so that compose's 1/√k gives it back.
    """

    rank_scaled = True

    def __init__(self, max_rank: int = MAX_RANK) -> None:
        super().__init__()
        self.max_rank = max_rank

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = patch_matrix(latent.float())                       # (N, 64, 128)
        a, s, bt = torch.linalg.svd(m, full_matrices=False)    # a (N, 64, 64), s (N, 64), bt (N, 64, 128)
        k = min(self.max_rank, s.shape[-1])
        root = s[:, :k].sqrt()
        u = torch.zeros(m.shape[0], TOKENS, k, dtype=m.dtype, device=m.device)
        u[:, : GRID * GRID] = a[:, :, :k] * root[:, None, :]
        v = bt[:, :k] * root[:, :, None]
        return u, v


def _zero_unet() -> nn.Module:
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        unet = UNet2DConditionModel(**UNET_CONFIG)
    nn.init.zeros_(unet.conv_out.weight)
    nn.init.zeros_(unet.conv_out.bias)   # the residual starts (and, untrained, stays) at zero
    return unet


def _readout() -> LatentReadout:
    r = LatentReadout(DIM, taef2.LATENT_CHANNELS, GRID, PATCH)
    with torch.no_grad():
        r.proj.weight.copy_(-torch.eye(DIM))   # x0 = −(UNet + read-out): the tokens' patches themselves
    return r


def fingerprint() -> str:
    from promptlab.models.files import fingerprint as files_fingerprint

    return f"{VERSION}-{files_fingerprint([taef2.ENCODER_FILE, taef2.DECODER_FILE])}"


def load_tiny2(device: torch.device, dtype: torch.dtype) -> Model:
    """tiny2 on `device`: TAEF2's pretrained encoder and decoder, the fixed read-out, the zero UNet."""
    encoder = taef2.SignedEncoder(taef2.load_encoder())
    decoder = taef2.SignedDecoder(taef2.load_decoder())
    readout, prompt = _readout(), SvdPromptEncoder()
    unet = _zero_unet()
    for m in (encoder, readout, prompt):
        freeze(m, device, dtype)

    def encoder_factory():
        def encode(image: torch.Tensor) -> torch.Tensor:
            return encoder(image.to(dtype))
        return encode

    return Model(
        name=NAME, version=VERSION, random_weights=False, unet_module=unet, decoder_module=decoder,
        encoder_factory=encoder_factory, context_dim=DIM, device=device, dtype=dtype,
        latent_channels=taef2.LATENT_CHANNELS, latent_factor=taef2.LATENT_FACTOR,
        parts={"unet": unet, "decoder": decoder, "encoder": encoder, "readout": readout, "prompt": prompt},
        eps_skip=EPS_SKIP, eps_gain=TRAINED_EPS_GAIN, fingerprint=fingerprint(),
        latent_readout=readout,
    )
