"""TAEF2: a pretrained tiny autoencoder (TAESD family, FLUX.2's 32-channel latent space), shipped.

It is the one pretrained image decoder the lab has without a model hub: 1.34 M parameters each
way, a 32×(H/8)×(W/8) latent, ≈ 30 dB on the demo clip at 128 px. The built-in model and the
learned-latent baselines decode through it, so their images come from a real prior rather than
from a decoder trained on three videos.

Architecture (TAESD: 3×3 convs, 64 channels, residual blocks of three convs, ×2 strides /
nearest ×2 upsampling, three stages) with TAEF2's one addition in the three blocks at the
latent resolution: a 1×1 conv → GroupNorm(4) → ReLU → 1×1 conv branch added to the block's
input. Layer order follows the published state_dict's names, so the weights load strictly.
Weights: Ollin Boer Bohan, MIT (weights/LICENSE-taef2, weights/ATTRIBUTION.md).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from promptlab.baselines.latent import Autoencoder
from promptlab.errors import PromptlabError
from promptlab.paths import bundled

LATENT_CHANNELS = 32
LATENT_FACTOR = 8
# the decoder's soft clamp: latents are used in about [-LATENT_RANGE, LATENT_RANGE]
LATENT_RANGE = 3.0
_WIDTH = 64
_GN_WIDTH = 256
_GN_GROUPS = 4
ENCODER_FILE = bundled("models", "weights", "taef2_encoder.safetensors")
DECODER_FILE = bundled("models", "weights", "taef2_decoder.safetensors")


def _conv(n_in: int, n_out: int, **kwargs: object) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)  # type: ignore[arg-type]


class Clamp(nn.Module):
    """tanh(x/3)·3: the decoder's first layer, so any latent decodes to a bounded image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / LATENT_RANGE) * LATENT_RANGE


class Block(nn.Module):
    """A residual block of three 3×3 convs; with `midblock_gn`, TAEF2's GroupNorm branch first."""

    def __init__(self, n: int = _WIDTH, midblock_gn: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv(n, n), nn.ReLU(), _conv(n, n), nn.ReLU(), _conv(n, n))
        self.pool = nn.Sequential(
            nn.Conv2d(n, _GN_WIDTH, 1, bias=False), nn.GroupNorm(_GN_GROUPS, _GN_WIDTH), nn.ReLU(),
            nn.Conv2d(_GN_WIDTH, n, 1, bias=False)) if midblock_gn else None
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + x)


def build_encoder() -> nn.Sequential:
    """Image in [0, 1] (N, 3, H, W) → latent (N, 32, H/8, W/8), roughly in [-3, 3]."""
    def stage(gn: bool) -> list[nn.Module]:
        return [_conv(_WIDTH, _WIDTH, stride=2, bias=False)] + [Block(midblock_gn=gn) for _ in range(3)]
    return nn.Sequential(_conv(3, _WIDTH), Block(), *stage(False), *stage(False), *stage(True),
                         _conv(_WIDTH, LATENT_CHANNELS))


def build_decoder() -> nn.Sequential:
    """Latent (N, 32, h, w) → image in about [0, 1] (N, 3, 8h, 8w)."""
    def stage(blocks: int) -> list[nn.Module]:
        return ([nn.Upsample(scale_factor=2), _conv(_WIDTH, _WIDTH, bias=False)]
                + [Block() for _ in range(blocks)])
    return nn.Sequential(Clamp(), _conv(LATENT_CHANNELS, _WIDTH), nn.ReLU(),
                         *[Block(midblock_gn=True) for _ in range(3)], *stage(3), *stage(3), *stage(1),
                         _conv(_WIDTH, 3))


def _load(module: nn.Module, path: Path) -> nn.Module:
    from safetensors.torch import load_file

    from promptlab.models.files import safetensors_header

    safetensors_header(path)  # a one-line error for a damaged file, before torch sees it
    try:
        state = {k: v.float() for k, v in load_file(str(path)).items()}
        module.load_state_dict(state, strict=True)
    except (RuntimeError, OSError) as exc:
        raise PromptlabError(f"{path} does not hold TAEF2 weights: {str(exc).splitlines()[0]}") from None
    return module.eval().requires_grad_(False)


def load_encoder(path: Path = ENCODER_FILE) -> nn.Sequential:
    """The pretrained encoder, frozen, float32 (image in [0, 1])."""
    return _load(build_encoder(), path)  # type: ignore[return-value]


def load_decoder(path: Path = DECODER_FILE) -> nn.Sequential:
    """The pretrained decoder, frozen, float32 (image in about [0, 1])."""
    return _load(build_decoder(), path)  # type: ignore[return-value]


class SignedDecoder(nn.Module):
    """The decoder with the lab's image convention: latent → image in [-1, 1]."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).clamp(0, 1) * 2 - 1


class SignedEncoder(nn.Module):
    """The encoder with the lab's image convention: image in [-1, 1] → latent."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder((image + 1) / 2)


def baseline_autoencoder(threads_batch: int = 8) -> Autoencoder:
    """TAEF2 as the VAE baseline's autoencoder (baselines/latent.py): uint8 frames ↔ latents.

    Built here, above baselines, so the baseline itself imports no model.
    """
    import numpy as np

    enc, dec = load_encoder(), load_decoder()

    def encode(frames: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(frames), threads_batch):
                x = torch.from_numpy(frames[i:i + threads_batch]).permute(0, 3, 1, 2).float() / 255
                out.append(enc(x).numpy())
        return np.concatenate(out)

    def decode(z: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(z), threads_batch):
                y = dec(torch.from_numpy(np.ascontiguousarray(z[i:i + threads_batch])))
                out.append((y.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy())
        return np.concatenate(out)

    return Autoencoder("taef2", encode, decode, LATENT_RANGE)
