"""Fit one keyframe's prompt to its segment (the Promptus reference algorithm, docs/engines.md).

Keyframe 0 is fitted alone; each later keyframe fits fresh U, V over its whole segment while
the previous keyframe's (dequantised) factors stay frozen, the in-between frames using
interpolated prompts ("interpolation-aware fitting"). Every forward pass sees fake-quantised
factors (RunningRange observer, straight-through gradient), so the loss is the loss of what
will be transmitted. Adam with a plateau schedule: when the best loss has not improved for
`patience` iterations, lr = max(lr/2, lr_min) and Adam restarts. The quantised prompt with the
lowest mean loss is kept.

Batched mode (default): one forward/backward over all the segment's frames per iteration.
Sequential (reference) mode: an iteration is one pass over the segment with one Adam step per
frame visit; with dynamic training the previous pass's worst frame is visited twice more. Its
per-iteration loss is the mean of each frame's loss at its last visit in the pass, and the
candidate kept is the prompt at the end of the pass (an approximation the batched mode avoids).

Start (`settings.start`): the reference draws U, V uniform on [0, 1) from a generator seeded
by (seed, keyframe index); "amortised" asks the model's prompt encoder (a trained network that
maps a frame's latent to rank-nested factors, `model.parts["prompt"]`) for its guess from the
keyframe, which inversion then refines; "auto" (default) is amortised when the model has a
prompt encoder. Both are deterministic, so a resumed encode refits a keyframe exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import torch

from promptlab.codec.container import KeyframeRecord
from promptlab.codec.prompt import init_factors
from promptlab.codec.quant import QParams, RunningRange, fake_quant, quantize
from promptlab.codec.schedule import Segment
from promptlab.device import fixed_threads
from promptlab.engine import records
from promptlab.engine.generator import forward, generate_segment, segment_contexts, to_uint8
from promptlab.engine.losses import Loss
from promptlab.engine.upsample import stage_image, stage_size
from promptlab.errors import Cancelled, PromptlabError
from promptlab.models.base import Model
from promptlab.settings import Settings


@dataclass
class Fit:
    """The outcome of one keyframe's fit: the record to transmit and how the loss went."""

    record: KeyframeRecord
    loss: float          # best (lowest) mean loss
    first_loss: float    # mean loss of the first iteration
    iterations: int
    losses: list[float]  # mean loss per iteration


def init_generator(seed: int, index: int) -> torch.Generator:
    """The generator for keyframe `index`'s initial factors (deterministic per (seed, index))."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(index)) % (2**63))


def start_mode(model: Model, settings: Settings) -> str:
    """The start actually used: 'amortised' needs a prompt encoder, 'auto' picks it when there is one."""
    has = "prompt" in model.parts and "encoder" in model.parts
    if settings.start == "amortised" and not has:
        raise PromptlabError(f"start 'amortised' needs a model with a prompt encoder; {model.label} has none")
    mode = "amortised" if settings.start == "amortised" or (settings.start == "auto" and has) else "uniform"
    if mode != "amortised" and min(settings.iters, settings.first_iters) == 0:
        raise PromptlabError(f"0 iterations sends the prompt encoder's guess unrefined, which needs start auto or "
                             f"amortised and a model with a prompt encoder (here start {settings.start}, "
                             f"{model.label}): give --iters/--first-iters >= 1")
    return mode


def start_factors(model: Model, settings: Settings, index: int,
                  keyframe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial (U, V) for keyframe `index` whose target image is `keyframe` (1, 3, H, W) in [-1, 1].

    Amortised factors keep the prompt encoder's first `rank` columns/rows (its factors are
    rank-nested); beyond its maximum rank the extra columns are small uniform draws, so their
    gradients are not zero. The keyframe is seen at the generated resolution (two-stage).
    """
    gen = init_generator(settings.seed, index)
    u, v = init_factors(settings.rank, model.context_dim, gen)
    if start_mode(model, settings) == "uniform":
        return u, v
    image = stage_image(keyframe.to(model.device), settings)
    with torch.no_grad():
        lat = model.parts["encoder"](image.to(model.dtype))
        pu, pv = model.parts["prompt"](lat)
    k = min(settings.rank, pu.shape[-1])
    # an encoder whose first k factors' product is the guess itself (tiny2's SVD): undo compose's 1/√k
    gain = settings.rank ** 0.25 if getattr(model.parts["prompt"], "rank_scaled", False) else 1.0
    u, v = 0.1 * u, 0.1 * v
    u[:, :k] = gain * pu[0, :, :k].float().cpu()
    v[:k] = gain * pv[0, :k].float().cpu()
    return u, v


class _Factor:
    """One trainable factor with its running-range observer."""

    def __init__(self, init: torch.Tensor, bits: int, device: torch.device) -> None:
        self.param = torch.nn.Parameter(init.to(device))
        self.range = RunningRange(bits)
        self.qp: QParams = self.range.params()

    def quantised(self) -> torch.Tensor:
        self.qp = self.range.update(self.param)
        return fake_quant(self.param, self.qp)

    def codes(self) -> torch.Tensor:
        return quantize(self.param.detach(), self.qp).cpu()


def fit_segment(
    model: Model,
    seg: Segment,
    targets: torch.Tensor,
    z: torch.Tensor,
    prev: tuple[torch.Tensor, torch.Tensor] | None,
    settings: Settings,
    loss: Loss,
    *,
    cancel: Any = None,
    recon_every: int = 0,
    started: float | None = None,
) -> Generator[records.Iteration, None, Fit]:
    """Yield one Iteration per iteration; return the Fit (use `fit = yield from fit_segment(...)`).

    targets: (N, 3, H, W) float32 in [-1, 1], N = seg.length; z: the segment's input latent;
    prev: the previous keyframe's dequantised (U, V) on model.device, None for keyframe 0.
    """
    started = time.perf_counter() if started is None else started
    dev = model.device
    targets = targets.to(dev)
    n = seg.length
    frames = list(seg.frames)
    first = seg.index == 0
    iters = settings.first_iters if first else settings.iters
    patience = settings.first_patience if first else settings.patience
    with fixed_threads():  # the start and every step: what the bytes depend on (device.fixed_threads)
        u0, v0 = start_factors(model, settings, seg.index, targets[-1:])
    fu, fv = _Factor(u0, settings.bits, dev), _Factor(v0, settings.bits, dev)
    params = [fu.param, fv.param]
    lr = settings.lr
    opt = torch.optim.Adam(params, lr=lr)
    best = math.inf
    best_rec: KeyframeRecord | None = None
    since_best = 0
    losses: list[float] = []
    worst: int | None = None

    out_size = stage_size(settings)

    def run(ctx: torch.Tensor) -> torch.Tensor:
        """Images through the same (possibly two-stage) path the receiver runs."""
        return forward(model, z, ctx, out_size=out_size, upsampler=settings.upsampler)[1]

    def contexts() -> torch.Tensor:
        return segment_contexts(seg, (fu.quantised(), fv.quantised()), prev, settings.interp)

    if iters == 0:  # the start itself is the code: quantise it, measure it once, no gradient
        with torch.no_grad(), fixed_threads():
            ctx = contexts()
            value = float(loss(run(ctx), targets, ctx).mean())
        return Fit(KeyframeRecord(fu.codes(), fv.codes(), fu.qp, fv.qp), value, value, 0, [value])

    for it in range(1, iters + 1):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"cancelled while fitting keyframe {seg.index}")
        recon = None
        with fixed_threads():
            if settings.batched or n == 1:
                ctx = contexts()
                images = run(ctx)
                per = loss(images, targets, ctx)
                mean = per.mean()
                opt.zero_grad(set_to_none=True)
                mean.backward()
                frame_losses = per.detach().float().cpu().tolist()
                value = float(mean.detach())
                cand = KeyframeRecord(fu.codes(), fv.codes(), fu.qp, fv.qp)
                if recon_every and (it % recon_every == 0 or it == iters):
                    recon = to_uint8(images)
                opt.step()
            else:
                order = list(range(n))
                if settings.dynamic and worst is not None:
                    order += [worst, worst]
                frame_losses = [math.nan] * n
                for i in order:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled(f"cancelled while fitting keyframe {seg.index}")
                    ctx = contexts()[i:i + 1]
                    images = run(ctx)
                    li = loss(images, targets[i:i + 1], ctx)[0]
                    opt.zero_grad(set_to_none=True)
                    li.backward()
                    opt.step()
                    frame_losses[i] = float(li.detach())
                value = sum(frame_losses) / n
                worst = max(range(n), key=lambda j: frame_losses[j])
                fu.qp, fv.qp = fu.range.update(fu.param), fv.range.update(fv.param)
                cand = KeyframeRecord(fu.codes(), fv.codes(), fu.qp, fv.qp)
                if recon_every and (it % recon_every == 0 or it == iters):
                    recon = _regenerate(model, seg, z, prev, cand, settings.interp, out_size, settings.upsampler)
        losses.append(value)
        if value < best:
            best, best_rec, since_best = value, cand, 0
        else:
            since_best += 1
            if since_best >= patience:
                lr = max(lr / 2, settings.lr_min)
                opt = torch.optim.Adam(params, lr=lr)
                since_best = 0
        yield records.Iteration(
            keyframe=seg.index, frames=frames, iteration=it, iterations=iters, loss=value,
            best_loss=best, frame_losses=frame_losses, lr=lr,
            elapsed=time.perf_counter() - started, recon=recon,
        )
    assert best_rec is not None
    return Fit(best_rec, best, losses[0], iters, losses)


def _regenerate(model: Model, seg: Segment, z: torch.Tensor, prev: tuple[torch.Tensor, torch.Tensor] | None,
                rec: KeyframeRecord, interp: str, out_size: tuple[int, int] | None, upsampler: str):
    u, v = rec.factors()
    ctx = segment_contexts(seg, (u.to(model.device), v.to(model.device)), prev, interp)
    return generate_segment(model, z, ctx, out_size=out_size, upsampler=upsampler)[1]
