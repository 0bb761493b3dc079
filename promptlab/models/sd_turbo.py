"""SD-Turbo: the real model from local files, or its architecture with random weights.

Weights are never downloaded; where they may be and how they are checked before loading is
models/sd_files.py. The single file `sd_turbo.safetensors` is converted with diffusers' maps
into the configs below (the SD 2.1 UNet and the SD 2.x VAE).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from promptlab.errors import PromptlabError
from promptlab.models.base import Model, freeze, tiny_encoder, vae_kl_encoder
from promptlab.models.files import fingerprint
from promptlab.models.sd_files import Part, locate

# stabilityai/sd-turbo unet/config.json (the SD 2.1 base UNet): 865.9 M parameters.
UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "only_cross_attention": False,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 1024,
    "attention_head_dim": [5, 10, 20, 20],
    "dual_cross_attention": False,
    "use_linear_projection": True,
    "upcast_attention": False,
    "resnet_time_scale_shift": "default",
}

# The SD 2.x VAE (only its encoder is used: the first frame's latent).
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 768,
    "scaling_factor": 0.18215,
}

def load_sd_turbo(device: torch.device, dtype: torch.dtype, source: str | None = None) -> Model:
    """The real SD-Turbo + TAESD from local files, checked first (sd_files.locate): one-line errors."""
    loc = locate(source)
    if not loc.ok:
        raise loc.error()
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel

    try:
        if "single" in loc.parts:
            unet, vae = _from_single_file(loc.parts["single"])
        else:
            unet = _pretrained(UNet2DConditionModel, loc.parts["unet"])
            vae = _pretrained(AutoencoderKL, loc.parts["vae"])
        tae = _pretrained(AutoencoderTiny, loc.parts["taesd"])
    except Exception as exc:  # noqa: BLE001 - diffusers and safetensors raise many types; the user gets one line
        msg = " ".join(str(exc).split())[:400] or type(exc).__name__
        raise PromptlabError(f"cannot load SD-Turbo/TAESD weights from {loc.source}: {msg}") from None
    vae = freeze(vae, device, dtype)
    main = loc.parts.get("single") or loc.parts["unet"]
    return Model(
        name="sd-turbo",
        version=_version(main.path if "single" in loc.parts else main.path.parent),
        random_weights=False,
        unet_module=unet,
        decoder_module=tae.decoder,
        encoder_factory=lambda: vae_kl_encoder(vae),
        context_dim=int(unet.config.cross_attention_dim),
        device=device,
        dtype=dtype,
        parts={"unet": unet, "taesd": tae, "vae": vae},
        fingerprint=fingerprint(loc.weights()),
    )


def _version(root: Path) -> str:
    """The file or folder name; for a Hugging Face cache snapshot, ORG/NAME@revision."""
    if len(root.parts) >= 3 and root.parts[-2] == "snapshots" and root.parts[-3].startswith("models--"):
        return root.parts[-3][len("models--"):].replace("--", "/") + "@" + root.name[:8]
    return root.name


def _pretrained(cls: Any, part: Part) -> torch.nn.Module:
    """One diffusers folder (safetensors only; the fp16 variant when that is what is there)."""
    low_mem = importlib.util.find_spec("accelerate") is not None  # without it diffusers warns on every load
    return cls.from_pretrained(str(part.path), variant=part.variant, use_safetensors=True, local_files_only=True,
                               low_cpu_mem_usage=low_mem)


def _from_single_file(part: Part) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The reference's `sd_turbo.safetensors` (original SD layout) converted with diffusers' maps."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )
    from safetensors.torch import load_file

    ckpt = load_file(str(part.weights))
    unet = UNet2DConditionModel(**UNET_CONFIG)
    unet.load_state_dict(convert_ldm_unet_checkpoint(ckpt, UNET_CONFIG))
    vae = AutoencoderKL(**VAE_CONFIG)
    vae.load_state_dict(convert_ldm_vae_checkpoint(ckpt, VAE_CONFIG))
    return unet, vae


def arch_fingerprint(seed: int = 0) -> str:
    """The weights of load_sd_turbo_arch(seed): random, named by their seed."""
    return f"random-seed{seed}"


def load_sd_turbo_arch(device: torch.device, dtype: torch.dtype, seed: int = 0) -> Model:
    """SD-Turbo's UNet and TAESD architectures with random weights: for timing, never for quality.

    The init-latent encoder is TAESD's encoder (random too) instead of the 83 M-parameter KL VAE,
    which keeps the one-off first-frame encoding cheap; it is documented as such.
    """
    from diffusers import AutoencoderTiny, UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**UNET_CONFIG)
        tae = AutoencoderTiny()
    tae = freeze(tae, device, dtype)
    return Model(
        name="sd-turbo-arch",
        version="random",
        random_weights=True,
        unet_module=unet,
        decoder_module=tae.decoder,
        encoder_factory=lambda: tiny_encoder(tae),
        context_dim=UNET_CONFIG["cross_attention_dim"],
        device=device,
        dtype=dtype,
        parts={"unet": unet, "taesd": tae},
        fingerprint=arch_fingerprint(seed),
    )
