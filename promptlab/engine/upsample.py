"""Two-stage generation (PromptMobile): generate small, upsample to the output size.

The generator runs at a reduced latent size (the stream header's latent_h × 8 is smaller than
its height) and a lightweight upsampler brings the decoded images to the output size. The
upsampler is differentiable, and inversion fits through the very same path, so the prompts
learn to compensate for it. Classical upsamplers are built in (`bicubic`, `lanczos`), and so
is a pretrained learned one, Real-ESRGAN's compact network (`realesrgan-x2`, `realesrgan-x4`:
models/realesrgan.py); another learned one plugs in with `register_upsampler(name, factory)`, where `factory(device)` returns
any callable (N, 3, h, w) -> (N, 3, H, W) in [-1, 1] (e.g. a small torch module).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from promptlab.errors import PromptlabError
from promptlab.settings import STAGE_SCALES, Settings

Upsampler = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]
_REGISTRY: dict[str, Callable[[torch.device], Upsampler]] = {}


def register_upsampler(name: str, factory: Callable[[torch.device], Upsampler]) -> None:
    """Make a (learned) upsampler available by name to the generator, inverter and CLI."""
    _REGISTRY[name] = factory


def upsampler_names() -> list[str]:
    return sorted(_REGISTRY)


def get_upsampler(name: str, device: torch.device | None = None) -> Upsampler:
    if name not in _REGISTRY:
        raise PromptlabError(f"unknown upsampler {name!r} ({', '.join(upsampler_names())})")
    return _REGISTRY[name](device or torch.device("cpu"))


def bicubic(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """torch's bicubic (a = −0.75, half-pixel centres); differentiable."""
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False)


def _lanczos_kernel(scale: int, taps: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(scale, 2·taps) weights: output phase p samples inputs at offsets −taps+1 … taps."""
    rows = []
    for p in range(scale):
        frac = (p + 0.5) / scale - 0.5  # output centre relative to the input pixel, half-pixel aligned
        xs = [frac - k for k in range(-taps + 1, taps + 1)]
        w = [1.0 if abs(x) < 1e-9 else (math.sin(math.pi * x) * math.sin(math.pi * x / taps) / (math.pi * math.pi * x * x / taps))
             if abs(x) < taps else 0.0 for x in xs]
        s = sum(w)
        rows.append([v / s for v in w])
    return torch.tensor(rows, device=device, dtype=dtype)


def lanczos(images: torch.Tensor, size: tuple[int, int], taps: int = 3) -> torch.Tensor:
    """Separable Lanczos-3 for integer scale factors (replicate padding); differentiable."""
    n, ch, h, w = images.shape
    sy, sx = size[0] // h, size[1] // w
    if sy * h != size[0] or sx * w != size[1] or sy != sx:
        return bicubic(images, size)
    s = sy
    k = _lanczos_kernel(s, taps, images.device, images.dtype)            # (s, 2·taps)
    x = images.reshape(n * ch, 1, h, w)
    # along width: each output phase is a 1-D conv over the padded rows
    xp = F.pad(x, (taps - 1, taps, 0, 0), mode="replicate")
    wk = k.view(s, 1, 1, 2 * taps)
    x = F.conv2d(xp, wk)                                                    # (B, s, h, w)
    x = x.permute(0, 2, 3, 1).reshape(n * ch, 1, h, w * s)
    xp = F.pad(x, (0, 0, taps - 1, taps), mode="replicate")
    hk = k.view(s, 1, 2 * taps, 1)
    x = F.conv2d(xp, hk)                                                    # (B, s, h, w·s)
    x = x.permute(0, 2, 1, 3).reshape(n, ch, h * s, w * s)
    return x


@functools.cache
def _realesrgan(scale: int, device: torch.device) -> Upsampler:
    """The shipped Real-ESRGAN compact network (models/realesrgan.py), loaded once per device."""
    from promptlab.models.realesrgan import Upsampler as RealESRGAN

    return RealESRGAN(scale, device)


register_upsampler("bicubic", lambda device: bicubic)
register_upsampler("lanczos", lambda device: lanczos)
register_upsampler("realesrgan-x2", lambda device: _realesrgan(2, device))
register_upsampler("realesrgan-x4", lambda device: _realesrgan(4, device))


def stage_latent(size: int, stage_scale: int, latent_factor: int = 8) -> int:
    """The generated latent side for an output side and a stage scale (1: single stage)."""
    if stage_scale not in STAGE_SCALES:
        raise PromptlabError(f"stage scale must be one of {STAGE_SCALES}, got {stage_scale}")
    if size % (latent_factor * stage_scale):
        raise PromptlabError(f"size {size} is not a multiple of {latent_factor * stage_scale} (stage scale {stage_scale})")
    return size // latent_factor // stage_scale


def stage_size(settings: Settings) -> tuple[int, int] | None:
    """The size generated images are upsampled to (None: single stage, they come out at full size)."""
    return None if settings.stage_scale == 1 else (settings.size, settings.size)


def stage_image(frame: torch.Tensor, settings: Settings) -> torch.Tensor:
    """A frame as the model's encoder must see it: at the generated resolution (area-downsampled)."""
    if settings.stage_scale == 1:
        return frame
    side = settings.size // settings.stage_scale
    return F.interpolate(frame, size=(side, side), mode="area")


def upsample(images: torch.Tensor, size: tuple[int, int], name: str = "bicubic") -> torch.Tensor:
    """Bring generated images to the output size (identity when they already are)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return get_upsampler(name, images.device)(images, size)
