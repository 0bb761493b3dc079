"""The inversion loss: w_mse·MSE + w_perceptual·perceptual + w_reg·mean|c|, per frame.

The reference perceptual term is an MSE of VGG-19 conv features (all 16 conv layers, before
ReLU, ImageNet-normalised; here the mean over layers of each layer's MSE). VGG-19 weights are
only used if torchvision's file `vgg19-dcbbe9e9.pth` is in the torch hub cache; otherwise the
term falls back to 1 − MS-SSIM (weight-free). `lpips` asks for LPIPS-VGG (the real VGG16 backbone
and heads that `fetch-weights lpips` provides; the Promptus paper's own variant is
0.8·MSE + 0.2·LPIPS). It is not the automatic fallback because on a CPU it costs ~50× MS-SSIM per
iteration (docs/engines.md). The name of the term actually used is reported in every output. A
randomly initialised network is never used as a loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from promptlab.settings import Settings

VGG19_FILE = "vgg19-dcbbe9e9.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PerFrame = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def vgg19_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def resolve_perceptual(name: str) -> str:
    """The perceptual term that will really be used: a network only if its real weights are here."""
    if name == "vgg" and not vgg19_path().exists():
        return "ms-ssim"
    if name == "lpips":
        from promptlab.metrics.weights import lpips_status

        return name if lpips_status("vgg")[0] else "ms-ssim"
    return name


class VGGFeatures(torch.nn.Module):
    """VGG-19 conv outputs (before ReLU) of all 16 conv layers, from torchvision's weights."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        import torchvision

        net = torchvision.models.vgg19(weights=None)
        net.load_state_dict(torch.load(vgg19_path(), map_location="cpu", weights_only=True))
        self.features = net.features.to(device).eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        outs = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, torch.nn.Conv2d):
                outs.append(x)
        return outs


def _vgg_term(device: torch.device) -> PerFrame:
    net = VGGFeatures(device)

    def term(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        fa, fb = net(images), net(targets)
        per = [((a - b) ** 2).mean(dim=(1, 2, 3)) for a, b in zip(fa, fb, strict=True)]
        return torch.stack(per, 0).mean(0)

    return term


def _lpips_term(device: torch.device) -> PerFrame:
    from promptlab.metrics.perceptual import load_lpips

    net = load_lpips("vgg", device)

    def term(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return net(images.clamp(-1, 1), targets).view(-1)

    return term


def _ms_ssim_term() -> PerFrame:
    from promptlab.metrics.ssim import ms_ssim

    def term(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return 1.0 - ms_ssim(images, targets, value_range=(-1.0, 1.0), eps=1e-6)

    return term


@dataclass
class Loss:
    """Per-frame inversion loss; `perceptual` names the term used ('vgg', 'lpips', 'ms-ssim' or 'none')."""

    w_mse: float
    w_perceptual: float
    w_reg: float
    perceptual: str
    term: PerFrame | None

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """(N,) losses; images/targets (N, 3, H, W) in [-1, 1], contexts (N, 77, D)."""
        loss = self.w_mse * F.mse_loss(images, targets, reduction="none").mean(dim=(1, 2, 3))
        if self.term is not None and self.w_perceptual:
            loss = loss + self.w_perceptual * self.term(images, targets)
        if self.w_reg:
            loss = loss + self.w_reg * contexts.float().abs().mean(dim=(1, 2))
        return loss


def make_loss(settings: Settings, device: torch.device) -> Loss:
    """The loss the settings ask for, with the perceptual term resolved to what exists here."""
    name = resolve_perceptual(settings.perceptual)
    term: PerFrame | None = None
    if name == "vgg":
        term = _vgg_term(device)
    elif name == "lpips":
        term = _lpips_term(device)
    elif name == "ms-ssim":
        term = _ms_ssim_term()
    return Loss(settings.w_mse, settings.w_perceptual, settings.w_reg, name, term)
