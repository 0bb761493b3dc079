"""Speed options for a loaded model: torch.compile, channels_last, and the copies they work on.

A caller's model is never changed: each option works on a copy (module_copy) when asked to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from promptlab.models.base import Model


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
    return dataclasses.replace(model, unet_module=unet, decoder_module=dec,
                               parts={**model.parts, "unet": unet})
