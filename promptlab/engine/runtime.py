"""Device, dtype and thread selection: one place that decides where tensors live.

`auto` prefers CUDA, then Apple MPS, then CPU. fp16 on CPU is refused with a clear message
(most CPU kernels lack it and the ones that exist are slower than fp32); bf16 works on CPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from promptlab.errors import PromptlabError

if TYPE_CHECKING:
    from promptlab.models.base import Model

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    """Turn 'auto' | 'cpu' | 'cuda[:N]' | 'mps' into a torch.device that exists here."""
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise PromptlabError(f"unknown device {device!r} (auto, cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PromptlabError("device cuda requested but no CUDA GPU is available (use --device cpu)")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise PromptlabError("device mps requested but Apple MPS is not available (use --device cpu)")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise PromptlabError(f"unsupported device {device!r} (auto, cpu, cuda, mps)")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Map 'fp32' | 'bf16' | 'fp16' to a torch dtype, refusing fp16 on CPU."""
    if dtype not in DTYPES:
        raise PromptlabError(f"unknown dtype {dtype!r} (fp32, bf16, fp16)")
    if dtype == "fp16" and device.type == "cpu":
        raise PromptlabError("fp16 is not supported on CPU (use --dtype fp32 or bf16)")
    return DTYPES[dtype]


TORCH_DEFAULT_THREADS = torch.get_num_threads()  # this machine's default, before anything changes it


def default_threads() -> int:
    """What `threads=0` means for every front end (CLI and GUI alike): torch's default on this machine.

    One rule matters because CPU kernels split their sums by thread count: fitted prompts, and
    so a stream's bytes, depend on it (docs/reliability.md states the bound on decoded frames).
    """
    return TORCH_DEFAULT_THREADS


def set_threads(n: int) -> int:
    """Set torch's intra-op thread count; 0 leaves it as it is (in a fresh process: default_threads()).

    Returns the count in use.
    """
    if n < 0:
        raise PromptlabError(f"threads must be >= 0, got {n}")
    if n > 0:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def describe(device: torch.device) -> str:
    """A short human name for a device, for progress lines and reports."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def compiled(model: Model, copy: bool = False) -> Model:
    """The model with its UNet blocks and decoder under torch.compile (`copy`: leave `model` eager).

    The blocks (ResNets, transformers, down/upsamplers) are compiled one by one rather than the
    whole UNet, so the cache's own walk over the blocks (engine/cache.py) runs compiled code too.
    Compilation happens at the first call of each input shape (tens of seconds on a CPU), so it
    pays for long decodes, not for one frame. `copy` gives separate module copies, for the bench
    to time compiled and eager code side by side.
    """
    if copy:
        model = module_copy(model)
    import torch._dynamo.config as dynamo

    # every ResNet/transformer instance shares one code object, and each (instance, shape) is a
    # compiled variant: the default limit of 8 would silently send most blocks back to eager
    dynamo.recompile_limit = max(dynamo.recompile_limit, 256)
    dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, 4096)
    unet = model.unet_module
    mods = [model.decoder_module]
    for blk in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        if blk is not None:
            for name in ("resnets", "attentions", "downsamplers", "upsamplers"):
                mods.extend(getattr(blk, name, None) or [])
    for m in mods:
        m.compile()
    return model


def channels_last(model: Model, copy: bool = False) -> Model:
    """The model with its UNet and decoder in channels_last memory format (`copy`: leave `model` as is).

    On this CPU it makes the batched decoder ~25 % faster (docs/performance.md); results agree
    with the default format to float rounding, not bit for bit, hence a copy for callers that
    compare against their own model's output.
    """
    if copy:
        model = module_copy(model)
    model.unet_module.to(memory_format=torch.channels_last)
    model.decoder_module.to(memory_format=torch.channels_last)
    return model


def module_copy(model: Model) -> Model:
    """A Model over deep copies of the UNet and decoder (the rest shared), with the plain UNet call."""
    import copy
    import dataclasses

    unet, dec = copy.deepcopy(model.unet_module), copy.deepcopy(model.decoder_module)
    return dataclasses.replace(model, unet_module=unet, decoder_module=dec, unet_call=None,
                               parts={**model.parts, "unet": unet})
