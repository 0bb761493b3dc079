"""SSIM and MS-SSIM in torch: differentiable, weight-free, usable as a metric and as a loss.

Definitions follow Wang et al. (2004, 2003): 11x11 Gaussian window (sigma 1.5), K1=0.01,
K2=0.03, statistics over "valid" windows only (no padding), computed per colour channel and
averaged. MS-SSIM uses the five published scale weights; images too small for five scales
(the window must fit at the coarsest scale: 11 * 2**(M-1) <= side) use the largest M that
fits, with the first M weights renormalised to sum to one. At 128 px that is 4 scales, at
64 px 3 scales; 176 px and up use all 5. Negative contrast-structure terms are clamped to 0
before the fractional powers (as common implementations do) so the product stays real.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

WIN_SIZE = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03
MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


@functools.lru_cache(maxsize=16)
def _window_1d(size: int, sigma: float, dtype: torch.dtype, device: str) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _blur(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter, valid region only; x is (N, C, H, W)."""
    c = x.shape[1]
    k = win.numel()
    x = F.conv2d(x, win.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, win.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean SSIM and mean contrast-structure term, shape (N, C)."""
    win = _window_1d(WIN_SIZE, SIGMA, x.dtype, str(x.device))
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    mu_x, mu_y = _blur(x, win), _blur(y, win)
    sxx = _blur(x * x, win) - mu_x * mu_x
    syy = _blur(y * y, win) - mu_y * mu_y
    sxy = _blur(x * y, win) - mu_x * mu_y
    cs_map = (2 * sxy + c2) / (sxx + syy + c2)
    l_map = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    return (l_map * cs_map).mean(dim=(2, 3)), cs_map.mean(dim=(2, 3))


def _prep(x: torch.Tensor, y: torch.Tensor, value_range: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape:
        raise ValueError(f"SSIM needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() == 3:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"SSIM expects (N, C, H, W) or (C, H, W), got {tuple(x.shape)}")
    if min(x.shape[-2:]) < WIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {WIN_SIZE}x{WIN_SIZE}, got {tuple(x.shape[-2:])}")
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"bad value_range {value_range}")
    if not x.is_floating_point():
        x = x.float()
    if not y.is_floating_point():
        y = y.to(x.dtype)
    # map to [0, 1]: the luminance term is not shift-invariant, so the range matters
    return (x - lo) / (hi - lo), (y - lo) / (hi - lo)


def ssim(x: torch.Tensor, y: torch.Tensor, *, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Mean SSIM per image (shape (N,)); inputs (N, C, H, W) with values in `value_range`."""
    x, y = _prep(x, y, value_range)
    s, _ = _ssim_terms(x, y, 1.0)
    return s.mean(dim=1)


def ms_ssim_scales(height: int, width: int) -> int:
    """How many MS-SSIM scales fit: the window must fit at the coarsest one (max 5)."""
    side = min(height, width)
    m = 0
    while m < len(MS_WEIGHTS) and side >= WIN_SIZE:
        m += 1
        side //= 2
    return m


def ms_ssim(x: torch.Tensor, y: torch.Tensor, *, value_range: tuple[float, float] = (0.0, 1.0),
            eps: float = 0.0) -> torch.Tensor:
    """Multi-scale SSIM per image (shape (N,)), differentiable; 1 means identical.

    `value_range` is (0, 1) for [0,1] tensors, (-1, 1) for [-1,1] tensors, (0, 255) for
    pixel values. `eps` > 0 keeps gradients finite when a term reaches 0 (use for losses).
    """
    x, y = _prep(x, y, value_range)
    scales = ms_ssim_scales(x.shape[-2], x.shape[-1])
    w = torch.tensor(MS_WEIGHTS[:scales], dtype=x.dtype, device=x.device)
    w = w / w.sum()
    factors = []
    for i in range(scales):
        s, cs = _ssim_terms(x, y, 1.0)
        if i < scales - 1:
            factors.append(torch.clamp(cs, min=eps))
            x = F.avg_pool2d(x, 2)
            y = F.avg_pool2d(y, 2)
        else:
            factors.append(torch.clamp(s, min=eps))
    stack = torch.stack(factors, dim=0)  # (M, N, C)
    out = torch.prod(stack ** w.view(-1, 1, 1), dim=0)  # (N, C)
    return out.mean(dim=1)


def ms_ssim_loss(x: torch.Tensor, y: torch.Tensor, *,
                 value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """1 - MS-SSIM averaged over the batch: a perceptual loss term needing no weights.

    Defaults to [-1, 1] inputs, the range the generator and LPIPS work in.
    """
    return 1.0 - ms_ssim(x, y, value_range=value_range, eps=1e-6).mean()
