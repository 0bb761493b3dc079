"""SD-Turbo weights on disk as users have them, with random weights and small channel counts.

The real architectures (diffusers UNet2DConditionModel with SD-Turbo's block layout and its
1024-wide cross-attention, AutoencoderKL, AutoencoderTiny) in the real layouts: a diffusers
folder (unet/, vae/, taesd/), the Hugging Face hub cache (models--ORG--NAME/snapshots/<rev>/…
linked to blobs/), and the original single-file checkpoint (model.diffusion_model.* and
first_stage_model.* tensors). Only channel counts are small, so each route loads in a second.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from promptlab.models import sd_turbo as sdt
from promptlab.models.tiny import AE_CONFIG

# SD-Turbo's UNet layout (4 levels, 2 layers, same block types, cross-attention 1024), small widths
UNET: dict[str, Any] = {**sdt.UNET_CONFIG, "block_out_channels": [32, 32, 64, 64],
                        "attention_head_dim": [1, 1, 2, 2], "norm_num_groups": 8, "sample_size": 8}
VAE: dict[str, Any] = {**sdt.VAE_CONFIG, "block_out_channels": [8, 8, 16, 16], "norm_num_groups": 4}
TAESD: dict[str, Any] = dict(AE_CONFIG)


def modules(seed: int = 0, cross: int = 1024) -> dict[str, torch.nn.Module]:
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel

    torch.manual_seed(seed)
    return {"unet": UNet2DConditionModel(**{**UNET, "cross_attention_dim": cross}),
            "vae": AutoencoderKL(**VAE), "taesd": AutoencoderTiny(**TAESD)}


def diffusers_folder(root: Path, seed: int = 0, cross: int = 1024, fp16: bool = False,
                     taesd: bool = True) -> Path:
    """root/unet, root/vae (and root/taesd) as save_pretrained writes them; fp16: the variant files only."""
    for name, mod in modules(seed, cross).items():
        if name == "taesd" and not taesd:
            continue
        if fp16 and name != "taesd":
            mod.to(torch.float16).save_pretrained(root / name, variant="fp16")
        else:
            mod.save_pretrained(root / name)
    return root


def hub_cache(cache: Path, repo: str, folder: Path, revision: str = "0123abcd" * 5) -> Path:
    """Put folder's files into the hub cache layout: blobs by hash, snapshot links, refs/main."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / revision
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        blob = root / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, blob)
        link = snap / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    return snap


def single_file(path: Path, seed: int = 0, cross: int = 1024) -> dict[str, torch.nn.Module]:
    """The original-layout checkpoint (UNet and VAE; a text encoder would be ignored) at path."""
    from safetensors.torch import save_file

    mods = modules(seed, cross)
    state = {"model.diffusion_model." + _ldm_unet(k): v for k, v in mods["unet"].state_dict().items()}
    for k, v in mods["vae"].state_dict().items():
        name, v = _ldm_vae(k, v)
        state["first_stage_model." + name] = v
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return mods


_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_UNET_TOP = (("time_embedding.linear_1", "time_embed.0"), ("time_embedding.linear_2", "time_embed.2"),
             ("conv_in", "input_blocks.0.0"), ("conv_norm_out", "out.0"), ("conv_out", "out.2"))


def _resnet(rest: str, table=_RESNET) -> str:
    for a, b in table:
        if rest.startswith(a + "."):
            return b + rest[len(a):]
    return rest


def _ldm_unet(k: str) -> str:
    """A diffusers SD 2.x UNet key -> the original (openaimodel) key: the inverse of diffusers' map."""
    for a, b in _UNET_TOP:
        if k.startswith(a + "."):
            return b + k[len(a):]
    if m := re.match(r"(down|up)_blocks\.(\d)\.(resnets|attentions)\.(\d)\.(.*)", k):
        side, i, kind, j, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
        n = 3 * i + j + 1 if side == "down" else 3 * i + j
        blocks = "input_blocks" if side == "down" else "output_blocks"
        return f"{blocks}.{n}." + ("0." + _resnet(rest) if kind == "resnets" else "1." + rest)
    if m := re.match(r"down_blocks\.(\d)\.downsamplers\.0\.conv\.(.*)", k):
        return f"input_blocks.{3 * (int(m.group(1)) + 1)}.0.op.{m.group(2)}"
    if m := re.match(r"up_blocks\.(\d)\.upsamplers\.0\.(.*)", k):
        i = int(m.group(1))
        return f"output_blocks.{3 * i + 2}.{1 if i == 0 else 2}.{m.group(2)}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", k):
        return f"middle_block.1.{m.group(1)}"
    if m := re.match(r"mid_block\.resnets\.(\d)\.(.*)", k):
        return f"middle_block.{2 * int(m.group(1))}.{_resnet(m.group(2))}"
    raise KeyError(k)


_VAE_ATTN = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _ldm_vae(k: str, v: torch.Tensor) -> tuple[str, torch.Tensor]:
    """A diffusers AutoencoderKL key -> the original key (attention projections as 1x1 convs)."""
    k = k.replace("conv_norm_out", "norm_out")
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", k):
        rest = _resnet(m.group(2), _VAE_ATTN)
        if v.ndim == 2:
            v = v[:, :, None, None]
        return f"{m.group(1)}.mid.attn_1.{rest}", v
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)", k):
        k = f"{m.group(1)}.mid.block_{int(m.group(2)) + 1}.{m.group(3)}"
    elif m := re.match(r"encoder\.down_blocks\.(\d)\.resnets\.(\d)\.(.*)", k):
        k = f"encoder.down.{m.group(1)}.block.{m.group(2)}.{m.group(3)}"
    elif m := re.match(r"encoder\.down_blocks\.(\d)\.downsamplers\.0\.(.*)", k):
        k = f"encoder.down.{m.group(1)}.downsample.{m.group(2)}"
    elif m := re.match(r"decoder\.up_blocks\.(\d)\.resnets\.(\d)\.(.*)", k):
        k = f"decoder.up.{3 - int(m.group(1))}.block.{m.group(2)}.{m.group(3)}"
    elif m := re.match(r"decoder\.up_blocks\.(\d)\.upsamplers\.0\.(.*)", k):
        k = f"decoder.up.{3 - int(m.group(1))}.upsample.{m.group(2)}"
    return k.replace("conv_shortcut", "nin_shortcut"), v
