"""The built-in small model: same interface and the same diffusers UNet as SD-Turbo.

Two forms. The trained one ships as `weights/tiny.safetensors` (or PROMPTLAB_TINY points at
one): its metadata `config` says `"arch": "tiny-v1"` (a UNet2DConditionModel with cross-attention
on a 77×128 prompt, a PixelShuffle latent decoder and encoder from models/tiny_parts.py; see
docs/model-card.md) and `version` names it. Without a file (or with PROMPTLAB_TINY=random) the
model is the original ~1 M-parameter architecture built from a fixed seed, so every machine
gets the same random weights, labelled "tiny (random weights)".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from promptlab.errors import MissingWeightsError, PromptlabError
from promptlab.models.base import SIGMA, Model, freeze, tiny_encoder

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
EPS_SKIP = float((1 + SIGMA**2) ** 0.5 / SIGMA)
EPS_GAIN = 0.08


ARCH = "tiny-v1"
TRAINED_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [64, 128, 128],
    "layers_per_block": 1,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3,
    "up_block_types": ["CrossAttnUpBlock2D"] * 3,
    "cross_attention_dim": 128,
    "attention_head_dim": 8,
    "norm_num_groups": 16,
    "use_linear_projection": True,
}
TRAINED_PARTS_CONFIG: dict[str, Any] = {
    "latent_channels": 4, "encoder_channels": [32, 64, 96], "decoder_channels": [128, 64, 32],
    "decoder_blocks": [2, 1, 1], "dim": 128, "max_rank": 16, "prompt_width": 96,
    "token_positions": True, "latent_readout": True,
}

# Trained form: eps = SKIP·x_in + UNet/σ, so the one-step x0 = −UNet(x_in, t, c) exactly as the
# generator computes it (x − σ·SKIP·x_in cancels); the UNet's output is the latent itself.
TRAINED_EPS_GAIN = float(1 / SIGMA)


def weights_path() -> Path | None:
    """The weights file load_tiny reads; None when PROMPTLAB_TINY=random asks for the seeded random model."""
    env = os.environ.get("PROMPTLAB_TINY")
    if env == "random":
        return None
    return Path(env) if env else WEIGHTS


def weights_fingerprint() -> str:
    """Names the weights load_tiny reads (models/files.fingerprint), or the seeded random version."""
    path = weights_path()
    if path is None or not path.exists():
        return RANDOM_VERSION
    from promptlab.models.files import fingerprint

    return fingerprint([path])


def trained_config() -> dict[str, Any]:
    """The `config` metadata of a trained (tiny-v1) weights file with the default architecture."""
    return {"arch": ARCH, "unet": dict(TRAINED_UNET_CONFIG), "parts": dict(TRAINED_PARTS_CONFIG),
            "eps_gain": TRAINED_EPS_GAIN}


def build_trained(cfg: dict[str, Any], seed: int = SEED) -> dict[str, torch.nn.Module]:
    """Freshly initialised tiny-v1 modules {unet, encoder, decoder, prompt} (training starts here)."""
    from diffusers import UNet2DConditionModel

    from promptlab.models.tiny_parts import PositionalConvIn, build_parts

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**cfg["unet"])
        parts = build_parts(cfg["parts"])
        unet.conv_in = PositionalConvIn(unet.conv_in, int(cfg["unet"]["sample_size"]))
    return {"unet": unet, **parts}


def trained_model(mods: dict[str, torch.nn.Module], cfg: dict[str, Any], version: str,
                  device: torch.device, dtype: torch.dtype, frozen: bool = True) -> Model:
    """A Model over tiny-v1 modules (frozen=False leaves them trainable, for the trainer)."""
    enc = mods["encoder"]
    model = Model(
        name="tiny", version=version, random_weights=False, unet_module=mods["unet"],
        decoder_module=mods["decoder"], encoder_factory=lambda: _plain_encoder(enc),
        context_dim=int(cfg["unet"]["cross_attention_dim"]), device=device, dtype=dtype,
        latent_channels=int(cfg["parts"].get("latent_channels", 4)), parts=dict(mods),
        eps_skip=EPS_SKIP, eps_gain=float(cfg.get("eps_gain", TRAINED_EPS_GAIN)),
        token_positions=mods.get("tokens"), latent_readout=mods.get("readout"),
    )
    for name in ("encoder", "prompt", "tokens", "readout"):
        if name in mods:
            freeze(mods[name], device, dtype)
    if not frozen:
        for m in mods.values():
            m.requires_grad_(True).train()
    return model


def _plain_encoder(enc: torch.nn.Module):
    def encode(image: torch.Tensor) -> torch.Tensor:
        return enc(image.to(next(enc.parameters()).dtype))

    return encode


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
    if path is not None and path.exists():
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
            state = load_file(str(path))
        except Exception as exc:  # a damaged file is the user's to fix, in one line
            raise PromptlabError(f"cannot read tiny model weights {path}: {exc}") from None
        version = meta.get("version", "trained")
        cfg = json.loads(meta.get("config", "{}"))
        if cfg.get("arch") == ARCH:
            model = _load_trained(state, cfg, version, path, device, dtype)
            model.fingerprint = weights_fingerprint()
            return model
        if cfg:
            unet_cfg.update(cfg.get("unet", {}))
            ae_cfg.update(cfg.get("autoencoder", {}))
    elif path is not None and path != WEIGHTS:
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
        fingerprint=weights_fingerprint(),
    )


def _load_trained(state: dict[str, torch.Tensor], cfg: dict[str, Any], version: str, path: Path,
                  device: torch.device, dtype: torch.dtype) -> Model:
    mods = build_trained(cfg)
    for name, mod in mods.items():
        sub = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
        if name == "prompt" and not sub:
            continue  # the amortised prompt encoder is optional in a weights file
        try:
            mod.load_state_dict(sub)
        except RuntimeError as exc:
            raise PromptlabError(f"tiny model weights {path} do not match the architecture: {exc}") from None
    if not any(k.startswith("prompt.") for k in state):
        del mods["prompt"]
    return trained_model(mods, cfg, version, device, dtype)


def save_tiny(model: Model, path: str | Path, version: str, half: bool = False,
              extra: dict[str, str] | None = None, config: dict[str, Any] | None = None) -> None:
    """Write a tiny model's weights in the format load_tiny reads (half: store float16).

    `config` is the tiny-v1 architecture the modules were built with (default: trained_config()).
    """
    from safetensors.torch import save_file

    state = {}
    for prefix, mod in model.parts.items():
        for k, v in mod.state_dict().items():
            v = v.detach().cpu()
            v = v.half() if half and v.is_floating_point() else v.float() if v.is_floating_point() else v
            state[f"{prefix}.{k}"] = v.contiguous()
    if "ae" in model.parts:
        cfg: dict[str, Any] = {"unet": UNET_CONFIG, "autoencoder": AE_CONFIG}
    else:
        cfg = {**(config or trained_config()), "eps_gain": model.eps_gain}
    meta = {"version": version, "config": json.dumps(cfg), **(extra or {})}
    save_file(state, str(path), metadata=meta)



def weights_version(path: str | Path) -> str:
    """The version a tiny weights file's metadata names ("trained" when it names none)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("version", "trained")
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own types for a bad file
        raise PromptlabError(f"{path}: not a tiny weights file ({exc})") from None


def weights_info() -> str:
    """One line naming the tiny model that load_tiny would load (reads metadata only; for doctor)."""
    path = weights_path()
    if path is None or not path.exists():
        return f"tiny {RANDOM_VERSION} (random weights, built in)"
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # doctor reports, never crashes
        return f"tiny: unreadable weights {path} ({exc})"
    return f"tiny {meta.get('version', 'trained')} (trained weights {path})"
