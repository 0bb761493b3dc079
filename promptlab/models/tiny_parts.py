"""The trained tiny model's own modules: latent encoder/decoder and the amortised prompt encoder.

The UNet stays a diffusers UNet2DConditionModel (so caching and every generator path are the
real ones); the autoencoder is a small PixelShuffle design that is cheap at 128 px on a CPU
(AutoencoderTiny keeps full channel width at full resolution). Latents are 4 × H/8 × W/8.

PromptEncoder maps a latent to rank-nested factors U (77 × R), V (R × D): the first r columns
/rows are the rank-r prompt, so one network serves every rank 1..R. It is what training uses
to learn a prompt space (amortised inversion); it is shipped too, as an optional starting
point for inversion.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from promptlab.codec.prompt import TOKENS


class Res(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(ch, ch, 3, padding=1)
        self.b = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(torch.relu(self.a(torch.relu(x))))


class TinyDecoder(nn.Module):
    """Latent (N, C, h, w) -> image (N, 3, 8h, 8w) in about [-1, 1] (clamped by callers)."""

    def __init__(self, latent_channels: int = 4, channels: tuple[int, ...] = (128, 64, 32),
                 blocks: tuple[int, ...] = (2, 1, 1)) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.conv_in = nn.Conv2d(latent_channels, c0, 3, padding=1)
        self.l0 = nn.Sequential(*[Res(c0) for _ in range(blocks[0])])
        self.up0 = nn.Conv2d(c0, 4 * c1, 3, padding=1)
        self.l1 = nn.Sequential(*[Res(c1) for _ in range(blocks[1])])
        self.up1 = nn.Conv2d(c1, 4 * c2, 3, padding=1)
        self.l2 = nn.Sequential(*[Res(c2) for _ in range(blocks[2])])
        self.out = nn.Conv2d(c2, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(x / 3) * 3  # bounded input, like TAESD's decoder
        x = self.l0(self.conv_in(x))
        x = self.l1(self.shuffle(self.up0(torch.relu(x))))
        x = self.l2(self.shuffle(self.up1(torch.relu(x))))
        return self.shuffle(self.out(torch.relu(x)))


class TinyEncoder(nn.Module):
    """Image (N, 3, H, W) in [-1, 1] -> latent (N, C, H/8, W/8): the first frame's side information."""

    def __init__(self, latent_channels: int = 4, channels: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c0, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c0, c1, 4, stride=2, padding=1), Res(c1), nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), Res(c2), Res(c2), nn.ReLU(),
            nn.Conv2d(c2, latent_channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PositionalConvIn(nn.Module):
    """The UNet's conv_in plus a learned position map (resized to the latent's size).

    The UNet's only input besides the prompt is the shared noise, which says nothing about
    where a pixel is; with this map each position can look up "its" prompt tokens through
    cross-attention from the first step instead of discovering position from border effects.
    """

    def __init__(self, conv: nn.Conv2d, size: int = 16) -> None:
        super().__init__()
        self.conv = conv
        self.pos = nn.Parameter(torch.randn(1, conv.out_channels, size, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = self.pos
        if pos.shape[-2:] != x.shape[-2:]:
            pos = nn.functional.interpolate(pos, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(x) + pos.to(x.dtype)


class TokenPositions(nn.Module):
    """A learned offset per prompt token, added to every context before the UNet (not transmitted).

    The UNet's cross-attention has no notion of token order, so without it a prompt spends part
    of each token's few rank-r coefficients saying *where* the token belongs; with it a token's
    coefficients carry only content, and the positional conv_in map can address it directly.
    Starts at zero (the model behaves as without it).
    """

    def __init__(self, dim: int, tokens: int = TOKENS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, tokens, dim))

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return context + self.weight.to(context.dtype)


class LatentReadout(nn.Module):
    """A linear read-out of the first grid×grid prompt tokens into the latent, added to the UNet's output.

    Token j of the 64 spatial tokens becomes a patch×patch latent patch at grid cell j (pixel
    shuffle, resized to the latent's size). With it a rank-r prompt is at least a rank-r block
    code of the latent (per image, V's rows are r latent-patch atoms and U's rows their weights
    per cell), which a few inversion steps fit well; the UNet adds what a linear code cannot.
    It reads the same per-frame contexts as the UNet and adds after it, so generation caches
    stay exact. Starts at zero (the model behaves as without it).
    """

    def __init__(self, dim: int, latent_channels: int = 4, grid: int = 8, patch: int = 2) -> None:
        super().__init__()
        self.grid, self.patch, self.channels = grid, patch, latent_channels
        self.proj = nn.Linear(dim, latent_channels * patch * patch)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, context: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        n, g = context.shape[0], self.grid
        t = self.proj(context[:, : g * g]).transpose(1, 2).reshape(n, -1, g, g)
        lat = nn.functional.pixel_shuffle(t, self.patch)
        if tuple(lat.shape[-2:]) != tuple(size):
            lat = nn.functional.interpolate(lat, size=tuple(size), mode="bilinear", align_corners=False)
        return lat


class PromptEncoder(nn.Module):
    """Latent (N, C, 16, 16) -> rank-nested U (N, 77, R), V (N, R, D) (see module doc)."""

    def __init__(self, latent_channels: int = 4, dim: int = 128, max_rank: int = 16, width: int = 128) -> None:
        super().__init__()
        self.max_rank, self.dim = max_rank, dim
        self.body = nn.Sequential(
            nn.Conv2d(latent_channels, width, 3, padding=1), Res(width), nn.ReLU(),
            nn.Conv2d(width, width, 4, stride=2, padding=1), Res(width), Res(width),
        )
        self.pos = nn.Parameter(0.5 * torch.randn(1, TOKENS, width))
        self.extra = nn.Linear(width, (TOKENS - 64) * width)
        self.mix = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True)
        self.norm_u, self.norm_v = nn.LayerNorm(width), nn.LayerNorm(width)
        self.u = nn.Linear(width, max_rank)
        self.v = nn.Linear(width, max_rank * dim)

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = latent.shape[0]
        f = self.body(latent)                              # (N, W, 8, 8) at 128 px
        f = nn.functional.adaptive_avg_pool2d(f, 8)
        grid = f.flatten(2).transpose(1, 2)                # 64 spatial tokens
        g = f.mean(dim=(2, 3))
        extra = self.extra(g).view(n, TOKENS - 64, -1)     # 13 global tokens
        tok = self.mix(torch.cat([grid, extra], 1) + self.pos)
        # unit-scale factors: a prompt of small magnitude would make cross-attention uniform
        u = self.u(self.norm_u(tok))
        v = self.v(self.norm_v(tok.mean(1))).view(n, self.max_rank, self.dim)
        return u, v


def build_parts(cfg: dict[str, Any]) -> dict[str, nn.Module]:
    """encoder, decoder, prompt encoder (and token positions) from the `parts` section of a weights file's config."""
    lc = int(cfg.get("latent_channels", 4))
    extra: dict[str, nn.Module] = {}
    if cfg.get("token_positions"):
        extra["tokens"] = TokenPositions(int(cfg.get("dim", 128)))
    if cfg.get("latent_readout"):
        extra["readout"] = LatentReadout(int(cfg.get("dim", 128)), lc)
    return {**extra,
        "encoder": TinyEncoder(lc, tuple(cfg.get("encoder_channels", (32, 64, 128)))),
        "decoder": TinyDecoder(lc, tuple(cfg.get("decoder_channels", (128, 64, 32))),
                               tuple(cfg.get("decoder_blocks", (2, 1, 1)))),
        "prompt": PromptEncoder(lc, int(cfg.get("dim", 128)), int(cfg.get("max_rank", 16)),
                                int(cfg.get("prompt_width", 128))),
    }
