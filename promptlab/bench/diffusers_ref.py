"""The diffusers pipeline a user would write, built from OUR model's modules, as the speed baseline.

StableDiffusionPipeline with the same UNet module, the same AutoencoderTiny as vae, and an
EulerDiscreteScheduler set up to compute the same one-step x0: SD's betas (scaled_linear,
0.00085..0.012), `timestep_spacing="trailing"` so one step is t = 999 with sigma 14.614641,
epsilon prediction. Euler's init_noise_sigma is sigma (not sqrt(1+sigma²)) under trailing
spacing, so the latents passed in are z·sqrt(1+sigma²)/sigma; scale_model_input then divides
by sqrt(1+sigma²) and the Euler step to sigma = 0 gives x0 = x − sigma·eps, as ours.
The tiny model's output parameterisation (eps = SKIP·x_in + GAIN·UNet) is applied by a forward
hook on the same module while the pipeline runs (an elementwise op).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from promptlab.models.base import SIGMA, Model


def decoder_vae(model: Model) -> Any:
    """The model's own latent decoder behind the `vae` interface a diffusers pipeline calls.

    Models built on AutoencoderTiny pass that (what a user would write); the trained tiny model's
    PixelShuffle decoder is wrapped so the pipeline decodes with the very same module.
    """
    vae = model.parts.get("ae") or model.parts.get("taesd")
    if vae is not None:
        return vae
    from diffusers import ConfigMixin, ModelMixin
    from diffusers.configuration_utils import register_to_config

    class LatentDecoderVAE(ModelMixin, ConfigMixin):
        @register_to_config
        def __init__(self, block_out_channels: tuple[int, ...] = (1, 1, 1, 1), scaling_factor: float = 1.0,
                     latent_channels: int = 4) -> None:
            super().__init__()
            self.decoder = model.decoder_module

        def decode(self, latents: torch.Tensor, return_dict: bool = False, **_: Any) -> tuple[torch.Tensor]:
            return (self.decoder(latents),)

    factor = model.latent_factor.bit_length() - 1  # vae_scale_factor = 2^(len(block_out_channels) - 1)
    return LatentDecoderVAE(block_out_channels=(1,) * (factor + 1), latent_channels=model.latent_channels)


def build_pipeline(model: Model) -> Any:
    """A StableDiffusionPipeline over the model's UNet and latent decoder (no text encoder)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    vae = decoder_vae(model)
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="epsilon", timestep_spacing="trailing", steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=None, tokenizer=None, unet=model.unet_module, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@contextlib.contextmanager
def eps_parameterisation(model: Model) -> Iterator[None]:
    """Make the bare UNet module output the model's eps while the pipeline runs: the same wrapping as
    `Model.unet` (token positions on the context, the latent read-out, eps = SKIP·x + GAIN·UNet)."""
    plain = model.eps_skip == 0.0 and model.eps_gain == 1.0
    if plain and model.token_positions is None and model.latent_readout is None:
        yield
        return
    seen: dict[str, torch.Tensor] = {}

    def pre(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        ctx = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        if model.token_positions is not None:
            ctx = model.token_positions(ctx).to(model.dtype)
            if "encoder_hidden_states" in kwargs or len(args) <= 2:
                kwargs = {**kwargs, "encoder_hidden_states": ctx}
            else:
                args = (*args[:2], ctx, *args[3:])
        seen["ctx"] = ctx
        return args, kwargs

    def hook(module: Any, args: tuple, kwargs: dict, out: Any) -> Any:
        x = args[0] if args else kwargs["sample"]
        eps = out[0] if isinstance(out, tuple) else out.sample
        if model.latent_readout is not None:
            eps = eps + model.latent_readout(seen["ctx"].to(model.dtype), x.shape[-2:])
        if not plain:
            # in the UNet's own dtype, as the pipeline expects (the latents then reach the vae in it)
            eps = (model.eps_skip * x + model.eps_gain * eps.float()).to(x.dtype)
        return (eps, *out[1:]) if isinstance(out, tuple) else type(out)(sample=eps)

    handles = [model.unet_module.register_forward_pre_hook(pre, with_kwargs=True),
               model.unet_module.register_forward_hook(hook, with_kwargs=True)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def pipeline_frame(pipe: Any, model: Model, z: torch.Tensor, context: torch.Tensor, size: int) -> torch.Tensor:
    """One frame through the pipeline: images (1, 3, H, W) in [0, 1] (output_type="pt")."""
    s = (1 + SIGMA**2) ** 0.5
    latents = (z.to(model.device, torch.float32) * (s / SIGMA)).to(model.dtype)
    out = pipe(prompt_embeds=context.to(model.device, model.dtype), latents=latents, num_inference_steps=1,
               guidance_scale=0.0, output_type="pt", height=size, width=size, return_dict=False)
    return out[0].float()
