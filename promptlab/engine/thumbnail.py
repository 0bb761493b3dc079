"""The thumbnail baseline's pixel "autoencoder": area-downscaled keyframes, upsampled back.

The floor any learned codec must beat: a keyframe shrunk by `factor` (area average; 4, 8 or 16, chosen by the rate search with the bits and keyframe interval) is the
"latent" (3 × H/factor × W/factor, in [-1, 1]); decoding upsamples it with the prompt path's
own upsampler (engine/upsample.py, bicubic), so the two-stage path and this floor share their
last step. Quantiser, entropy coder, interpolation and rate search are the keyframe-latent
baseline's (baselines/latent.py); this module only supplies the pixels ↔ thumbnail pair.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from promptlab.baselines.latent import Autoencoder
from promptlab.engine.upsample import upsample
from promptlab.errors import PromptlabError

FACTORS = (4, 8, 16)  # the rate search tries each scale (baselines.latent.encode_best)


def magic(factor: int) -> bytes:
    """The stream's magic names its scale, so a .plth file decodes without being told it."""
    return f"PT{factor:02d}".encode()


def factor_of(stream: bytes) -> int:
    """The scale a thumbnail stream was coded at (PromptlabError when it is not one)."""
    for f in FACTORS:
        if stream[:4] == magic(f):
            return f
    raise PromptlabError("not a promptlab thumbnail stream (bad magic)")


def thumbnail_autoencoders(upsampler: str = "bicubic") -> list[Autoencoder]:
    """One per scale in FACTORS: the candidates of the thumbnail baseline's rate search."""
    return [thumbnail_autoencoder(f, upsampler) for f in FACTORS]


def thumbnail_autoencoder(factor: int = 8, upsampler: str = "bicubic") -> Autoencoder:
    """Frames (N, H, W, 3) uint8 ↔ thumbnails (N, 3, H/factor, W/factor) in [-1, 1]."""

    def encode(frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1
        return F.avg_pool2d(x, factor).numpy()  # = area downscaling for an integer factor

    def decode(z: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
        y = upsample(x, (x.shape[-2] * factor, x.shape[-1] * factor), upsampler)
        return ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()

    return Autoencoder(f"thumbnail 1/{factor} ({upsampler})", encode, decode, latent_range=1.0,
                       codec="thumbnail", magic=magic(factor), factor=factor)
