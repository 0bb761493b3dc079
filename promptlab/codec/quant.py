"""The reference quantiser: per-tensor asymmetric uniform, 2-8 bits, running range, fake quantiser.

Arithmetic follows the reference code in float32 so that our encoder produces the same
scale/zero-point a Promptus sender would: scale = (max - min)/qmax,
zero_point = clamp(round(qmax - max/scale), 0, qmax), q = round(clamp(zp + x/scale, 0, qmax)),
x̂ = scale·(q - zp). The range only grows over a fit (min ≤ 0 ≤ max).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from promptlab.errors import PromptlabError


@dataclass(frozen=True)
class QParams:
    """Scale and zero-point of one tensor, float32 as in the reference files."""

    scale: float
    zero_point: float
    bits: int = 8

    @property
    def qmax(self) -> int:
        return (1 << self.bits) - 1


def qparams(min_val: float, max_val: float, bits: int = 8) -> QParams:
    if not 2 <= bits <= 8:
        raise PromptlabError(f"bits must be 2..8, got {bits}")
    qmax = (1 << bits) - 1
    lo = torch.tensor(min(min_val, 0.0), dtype=torch.float32)
    hi = torch.tensor(max(max_val, 0.0), dtype=torch.float32)
    scale = (hi - lo) / qmax
    if float(scale) <= 0 or not torch.isfinite(scale):
        scale = torch.tensor(1.0, dtype=torch.float32)
    zp = torch.clamp(torch.round(qmax - hi / scale), 0, qmax)
    return QParams(float(scale), float(zp), bits)


class RunningRange:
    """The reference observer: max only grows (≥ 0), min only shrinks (≤ 0)."""

    def __init__(self, bits: int = 8) -> None:
        self.bits = bits
        self.min = 0.0
        self.max = 0.0

    def update(self, x: torch.Tensor) -> QParams:
        x = x.detach()
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        return self.params()

    def params(self) -> QParams:
        return qparams(self.min, self.max, self.bits)

    def state(self) -> tuple[float, float]:
        return (self.min, self.max)

    def load(self, state: tuple[float, float]) -> None:
        self.min, self.max = float(state[0]), float(state[1])


def quantize(x: torch.Tensor, qp: QParams) -> torch.Tensor:
    q = torch.round(torch.clamp(qp.zero_point + x.float() / qp.scale, 0, qp.qmax))
    return q.to(torch.uint8)


def dequantize(q: torch.Tensor, qp: QParams) -> torch.Tensor:
    scale = torch.tensor(qp.scale, dtype=torch.float32)
    zp = torch.tensor(qp.zero_point, dtype=torch.float32)
    return scale * (q.to(torch.float32) - zp)


def fake_quant(x: torch.Tensor, qp: QParams) -> torch.Tensor:
    """Quantise then dequantise in the forward pass; identity gradient (straight-through)."""
    xq = dequantize(quantize(x.detach(), qp), qp).to(x.dtype)
    return x + (xq - x).detach()
