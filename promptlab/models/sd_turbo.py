"""SD-Turbo: the real model from local files, or its architecture with random weights.

Weights are never downloaded. They come from (first match wins):
  1. an explicit path (`--model PATH`): a diffusers folder (unet/, vae/) or the single file
     `sd_turbo.safetensors` of the reference code;
  2. PROMPTLAB_SD_TURBO=/path/to/folder-or-file;
  3. the local Hugging Face cache of `stabilityai/sd-turbo` (offline lookup only).
TAESD (the decoder): PROMPTLAB_TAESD=/path/to/folder, a `taesd/` folder beside the SD-Turbo
folder, or the local HF cache of `madebyollin/taesd`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from promptlab.errors import MissingWeightsError, PromptlabError
from promptlab.models.base import Model, freeze, tiny_encoder, vae_kl_encoder

SD_TURBO_HUB = "stabilityai/sd-turbo"
TAESD_HUB = "madebyollin/taesd"

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

HOWTO = (
    "provide SD-Turbo with --model PATH or PROMPTLAB_SD_TURBO=PATH (a diffusers folder with unet/ "
    "and vae/, or the single file sd_turbo.safetensors) and TAESD with PROMPTLAB_TAESD=PATH (a "
    "diffusers AutoencoderTiny folder), or place stabilityai/sd-turbo and madebyollin/taesd in the "
    "Hugging Face cache; promptlab never downloads weights"
)


def _hf_cached(repo: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    found = try_to_load_from_cache(repo, filename)
    return Path(found) if isinstance(found, str) else None


def locate(source: str | None = None) -> tuple[Path | str, Path | str, list[str]]:
    """Where the SD-Turbo and TAESD weights are, and a list of what is missing."""
    missing: list[str] = []
    sd: Path | str | None = None
    given = source or os.environ.get("PROMPTLAB_SD_TURBO")
    if given:
        p = Path(given).expanduser()
        if p.is_file() or (p.is_dir() and (p / "unet").is_dir()):
            sd = p
        else:
            missing.append(f"SD-Turbo weights at {p} (not a diffusers folder with unet/ nor a .safetensors file)")
    elif _hf_cached(SD_TURBO_HUB, "unet/config.json"):
        sd = SD_TURBO_HUB
    else:
        missing.append(f"SD-Turbo weights ({SD_TURBO_HUB} not in the local Hugging Face cache, PROMPTLAB_SD_TURBO unset)")
    taesd: Path | str | None = None
    env = os.environ.get("PROMPTLAB_TAESD")
    if env:
        p = Path(env).expanduser()
        if (p / "config.json").exists():
            taesd = p
        else:
            missing.append(f"TAESD weights at {p} (no config.json there)")
    elif isinstance(sd, Path) and (sd.parent / "taesd" / "config.json").exists():
        taesd = sd.parent / "taesd"
    elif isinstance(sd, Path) and sd.is_dir() and (sd / "taesd" / "config.json").exists():
        taesd = sd / "taesd"
    elif _hf_cached(TAESD_HUB, "config.json"):
        taesd = TAESD_HUB
    else:
        missing.append(f"TAESD weights ({TAESD_HUB} not in the local Hugging Face cache, PROMPTLAB_TAESD unset)")
    return sd or "", taesd or "", missing


def load_sd_turbo(device: torch.device, dtype: torch.dtype, source: str | None = None) -> Model:
    """The real SD-Turbo + TAESD from local files; MissingWeightsError says what is missing."""
    sd, taesd, missing = locate(source)
    if missing:
        raise MissingWeightsError("missing " + "; ".join(missing) + ": " + HOWTO)
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel

    try:
        if isinstance(sd, Path) and sd.is_file():
            unet, vae = _from_single_file(sd)
        else:
            unet = UNet2DConditionModel.from_pretrained(str(sd), subfolder="unet", local_files_only=True)
            vae = AutoencoderKL.from_pretrained(str(sd), subfolder="vae", local_files_only=True)
        tae = AutoencoderTiny.from_pretrained(str(taesd), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MissingWeightsError(f"cannot load SD-Turbo/TAESD weights ({msg}): {HOWTO}") from None
    vae = freeze(vae, device, dtype)
    return Model(
        name="sd-turbo",
        version=str(sd.name if isinstance(sd, Path) else sd),
        random_weights=False,
        unet_module=unet,
        decoder_module=tae.decoder,
        encoder_factory=lambda: vae_kl_encoder(vae),
        context_dim=UNET_CONFIG["cross_attention_dim"],
        device=device,
        dtype=dtype,
        parts={"unet": unet, "taesd": tae, "vae": vae},
    )


def _from_single_file(path: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The reference's `sd_turbo.safetensors` (original SD layout) converted with diffusers' maps."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )
    from safetensors.torch import load_file

    if path.suffix != ".safetensors":
        raise PromptlabError(f"{path}: only .safetensors single files are supported (no pickles)")
    ckpt = load_file(str(path))
    unet = UNet2DConditionModel(**UNET_CONFIG)
    unet.load_state_dict(convert_ldm_unet_checkpoint(ckpt, UNET_CONFIG))
    vae = AutoencoderKL(**VAE_CONFIG)
    vae.load_state_dict(convert_ldm_vae_checkpoint(ckpt, VAE_CONFIG))
    return unet, vae


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
    )
