"""Prompt math: c = U·V/√r from low-rank factors, and interpolation between keyframes."""

from __future__ import annotations

import math

import torch

from promptlab.errors import PromptlabError

TOKENS = 77  # CLIP context length: SD-Turbo's cross-attention sequence


def compose(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """c = U·V/√r; U (..., 77, r), V (..., r, D) -> (..., 77, D)."""
    r = u.shape[-1]
    if v.shape[-2] != r:
        raise PromptlabError(f"factor shapes do not match: U {tuple(u.shape)}, V {tuple(v.shape)}")
    return (u @ v) / math.sqrt(r)


def init_factors(rank: int, dim: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference initialisation: U, V uniform on [0, 1)."""
    u = torch.rand(TOKENS, rank, generator=generator)
    v = torch.rand(rank, dim, generator=generator)
    return u, v


def interpolate(
    u0: torch.Tensor, v0: torch.Tensor, u1: torch.Tensor, v1: torch.Tensor,
    alphas: torch.Tensor, mode: str = "factors",
) -> torch.Tensor:
    """Prompts between two keyframes at fractions `alphas` (N,) -> (N, 77, D).

    `factors` (reference): U and V interpolated separately, so c is quadratic in a and the
    receiver's cross-attention can be built at rank-r cost. `linear`: linear in c.
    `slerp`: spherical interpolation of each token's embedding, magnitude interpolated linearly.
    """
    a = alphas.to(u0.dtype).reshape(-1, 1, 1)
    if mode == "factors":
        return compose((1 - a) * u0 + a * u1, (1 - a) * v0 + a * v1)
    c0, c1 = compose(u0, v0), compose(u1, v1)
    if mode == "linear":
        return (1 - a) * c0 + a * c1
    if mode == "slerp":
        return _slerp(c0, c1, a)
    raise PromptlabError(f"unknown interpolation mode {mode!r} (factors, linear, slerp)")


def _slerp(c0: torch.Tensor, c1: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    n0 = c0.norm(dim=-1, keepdim=True)
    n1 = c1.norm(dim=-1, keepdim=True)
    d0 = c0 / n0.clamp_min(1e-12)
    d1 = c1 / n1.clamp_min(1e-12)
    cos = (d0 * d1).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = torch.acos(cos)
    sin = torch.sin(theta)
    near = sin.abs() < 1e-4
    w0 = torch.where(near, 1 - a, torch.sin((1 - a) * theta) / sin)
    w1 = torch.where(near, a, torch.sin(a * theta) / sin)
    direction = w0 * d0 + w1 * d1
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return direction * ((1 - a) * n0 + a * n1)
