"""One interface for every generator backend (sd-turbo, sd-turbo-arch, tiny).

A model is a UNet that predicts noise (epsilon) from (latent, timestep, context), a decoder
from latents to images in [-1, 1], and an encoder for the first frame's latent. Everything
above this module (generator, inverter, encoder, decoder) is independent of which model it is.

The cache hook: the generator calls `model.unet(x, t, context, call=...)`; a caching policy is
such a call (engine/cache.py), owned by its caller, and reaches the blocks through `model.unet_module` (a diffusers UNet2DConditionModel: conv_in,
time_embedding, down_blocks, mid_block, up_blocks, conv_out).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from promptlab.codec.prompt import TOKENS

# The one denoising step every backend takes: SD-Turbo's scheduler at its last timestep and the
# noise level sigma it gives there (EulerDiscrete, scaled-linear betas).
TIMESTEP = 999
SIGMA = 14.614641

UnetCall = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Model:
    """A loaded backend. Modules are in eval mode with frozen parameters."""

    name: str
    version: str
    random_weights: bool
    unet_module: nn.Module
    decoder_module: nn.Module
    encoder_factory: Callable[[], Callable[[torch.Tensor], torch.Tensor]]
    context_dim: int
    device: torch.device
    dtype: torch.dtype
    tokens: int = TOKENS
    latent_channels: int = 4
    latent_factor: int = 8
    parts: dict[str, nn.Module] = field(default_factory=dict)   # every module, by name (for saving)
    # eps = eps_skip·x_in + eps_gain·UNet(x_in, t, c); (0, 1) is the plain UNet (SD-Turbo).
    eps_skip: float = 0.0
    eps_gain: float = 1.0
    # names the weights actually loaded (models/files.fingerprint, or "random-…"): part of every
    # cache and resume identity, so results are never reused across different weights
    fingerprint: str = ""
    # a learned per-token offset added to every context before the UNet (tiny's TokenPositions);
    # part of the model, not of the stream. A cache reads it to project factor prompts exactly.
    token_positions: nn.Module | None = None
    # a learned read-out of the context added to the UNet's output (tiny's LatentReadout)
    latent_readout: nn.Module | None = None
    _encoder: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for module in (self.unet_module, self.decoder_module):
            freeze(module, self.device, self.dtype)

    @property
    def label(self) -> str:
        """The model's identity as shown in every output: says so while weights are random."""
        return f"{self.name} (random weights)" if self.random_weights else f"{self.name} {self.version}"

    def default_unet_call(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The plain UNet forward (no cache)."""
        return self.unet_module(x, t, encoder_hidden_states=context, return_dict=False)[0]

    def unet(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
             call: UnetCall | None = None) -> torch.Tensor:
        """eps = UNet(x, t, context) through `call` (a cache) or the plain UNet; the eps parameterisation
        is applied here, so a cache only ever replaces the UNet forward."""
        if self.token_positions is not None:
            context = self.token_positions(context)
        eps = (call or self.default_unet_call)(x.to(self.dtype), t, context.to(self.dtype))
        if self.latent_readout is not None:
            eps = eps + self.latent_readout(context.to(self.dtype), x.shape[-2:])
        if self.eps_skip == 0.0 and self.eps_gain == 1.0:
            return eps
        return self.eps_skip * x + self.eps_gain * eps.float()

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """TAESD-style decoder applied directly to x0 (no 1/0.18215 rescale): images in [-1, 1]."""
        return self.decoder_module(x0.to(self.dtype))

    def encode_init(self, image: torch.Tensor) -> torch.Tensor:
        """The first frame's latent (N, C, H/8, W/8) float32 from an image (N, 3, H, W) in [-1, 1]."""
        if self._encoder is None:
            self._encoder = self.encoder_factory()
        with torch.no_grad():
            return self._encoder(image.to(self.device)).float()

    def latent_shape(self, size: int) -> tuple[int, int, int, int]:
        if size % self.latent_factor:
            from promptlab.errors import PromptlabError

            raise PromptlabError(f"size {size} is not a multiple of {self.latent_factor}")
        s = size // self.latent_factor
        return (1, self.latent_channels, s, s)


def freeze(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Eval mode, no gradients, on device: the state every model part is used in."""
    # nn.Module.to, not diffusers' override: same effect without its fp32-upcast warning
    nn.Module.to(module, device=device, dtype=dtype).eval()
    module.requires_grad_(False)
    return module


def vae_kl_encoder(vae: nn.Module, scaling: float = 0.18215) -> Callable[[torch.Tensor], torch.Tensor]:
    """SD VAE encode x scaling, using the posterior mean (deterministic: sender and tests agree)."""

    def encode(image: torch.Tensor) -> torch.Tensor:
        dtype = next(vae.parameters()).dtype
        return vae.encode(image.to(dtype)).latent_dist.mean * scaling

    return encode


def tiny_encoder(enc: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """AutoencoderTiny encode (its latents are already in the scaled space)."""

    def encode(image: torch.Tensor) -> torch.Tensor:
        dtype = next(enc.parameters()).dtype
        return enc.encode(image.to(dtype)).latents

    return encode
