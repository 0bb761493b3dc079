"""The built-in small model: same interface and same diffusers parts as SD-Turbo, ~1 M parameters.

It needs no files: without `weights/tiny.safetensors` it is built from a fixed seed (so every
machine gets the same random weights) and labelled "tiny (random weights)". Dropping a trained
`tiny.safetensors` into `promptlab/models/weights/` (or pointing PROMPTLAB_TINY at one) makes
it load that instead; the file's metadata may carry `version` and a JSON `config` overriding
the architecture below.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from promptlab.errors import MissingWeightsError, PromptlabError
from promptlab.models.base import Model, freeze, tiny_encoder

WEIGHTS = Path(__file__).resolve().parent / "weights" / "tiny.safetensors"
SEED = 20240531
RANDOM_VERSION = "random-v1"

UNET_CONFIG: dict[str, Any] = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 128,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
    "use_linear_projection": True,
}

AE_CONFIG: dict[str, Any] = {
    "encoder_block_out_channels": [16, 16, 16, 16],
    "decoder_block_out_channels": [32, 32, 32, 32],
    "num_encoder_blocks": [1, 1, 1, 1],
    "num_decoder_blocks": [1, 1, 1, 1],
    "latent_channels": 4,
}


# The tiny eps-predictor is parameterised as eps = SKIP·x_in + GAIN·UNet(x_in, t, c) with
# SKIP = sqrt(1+sigma²)/sigma, so the one-step x0 = x − sigma·eps = −sigma·GAIN·UNet(...): a
# bounded, prompt-driven latent even with untrained weights (the plain form would give
# x0 ≈ 15.6·z, saturating the decoder). Trained weights keep this parameterisation.
_SIGMA = 14.614641
EPS_SKIP = float((1 + _SIGMA**2) ** 0.5 / _SIGMA)
EPS_GAIN = 0.08


def weights_path() -> Path:
    env = os.environ.get("PROMPTLAB_TINY")
    return Path(env) if env else WEIGHTS


def _build(unet_cfg: dict[str, Any], ae_cfg: dict[str, Any]) -> tuple[torch.nn.Module, torch.nn.Module]:
    from diffusers import AutoencoderTiny, UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        unet = UNet2DConditionModel(**unet_cfg)
        ae = AutoencoderTiny(**ae_cfg)
        _condition(unet)
        _condition(ae.decoder)
        _condition(ae.encoder)
        out = [m for m in ae.decoder.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        out.weight.data.mul_(0.1)
        assert out.bias is not None
        out.bias.data.fill_(0.5)  # decoder output starts around mid-grey, not black
    return unet, ae


def _condition(module: torch.nn.Module) -> None:
    """Variance-preserving random init (He normal, zero bias) instead of PyTorch's shrinking default.

    With the default init the random decoder's output is a near-constant dark image and the
    UNet barely reacts to the prompt, so nothing can be fitted; this keeps signals at unit scale.
    """
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)


def load_tiny(device: torch.device, dtype: torch.dtype) -> Model:
    """The tiny model: trained weights if the file is there, else seeded random weights."""
    path = weights_path()
    unet_cfg, ae_cfg = dict(UNET_CONFIG), dict(AE_CONFIG)
    state = None
    version = RANDOM_VERSION
    if path.exists():
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
            state = load_file(str(path))
        except Exception as exc:  # a damaged file is the user's to fix, in one line
            raise PromptlabError(f"cannot read tiny model weights {path}: {exc}") from None
        version = meta.get("version", "trained")
        if "config" in meta:
            cfg = json.loads(meta["config"])
            unet_cfg.update(cfg.get("unet", {}))
            ae_cfg.update(cfg.get("autoencoder", {}))
    elif os.environ.get("PROMPTLAB_TINY"):
        raise MissingWeightsError(f"PROMPTLAB_TINY points to {path}, which does not exist")
    unet, ae = _build(unet_cfg, ae_cfg)
    if state is not None:
        unet_state = {k[5:]: v for k, v in state.items() if k.startswith("unet.")}
        ae_state = {k[3:]: v for k, v in state.items() if k.startswith("ae.")}
        try:
            unet.load_state_dict(unet_state)
            ae.load_state_dict(ae_state)
        except RuntimeError as exc:
            raise PromptlabError(f"tiny model weights {path} do not match the architecture: {exc}") from None
    ae = freeze(ae, device, dtype)
    return Model(
        name="tiny",
        version=version,
        random_weights=state is None,
        unet_module=unet,
        decoder_module=ae.decoder,
        encoder_factory=lambda: tiny_encoder(ae),
        context_dim=int(unet_cfg["cross_attention_dim"]),
        device=device,
        dtype=dtype,
        latent_channels=int(ae_cfg["latent_channels"]),
        parts={"unet": unet, "ae": ae},
        eps_skip=EPS_SKIP,
        eps_gain=EPS_GAIN,
    )


def save_tiny(model: Model, path: str | Path, version: str) -> None:
    """Write a tiny model's weights in the format load_tiny reads (for the training issue)."""
    from safetensors.torch import save_file

    state = {}
    for prefix in ("unet", "ae"):
        for k, v in model.parts[prefix].state_dict().items():
            state[f"{prefix}.{k}"] = v.detach().float().contiguous().cpu()
    meta = {"version": version, "config": json.dumps({"unet": UNET_CONFIG, "autoencoder": AE_CONFIG})}
    save_file(state, str(path), metadata=meta)
