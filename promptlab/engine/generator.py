"""The one-step generator that sender and receiver both run (the Promptus reference, docs/engines.md).

    sigma = 14.614641 (t = 999), s = sqrt(1 + sigma²), c_in = 1/s
    x   = z · s                      (the noisy latent at sigma)
    eps = UNet(x · c_in, t=999, c)
    x0  = x − sigma · eps            (no noise added after the step)
    image = TAESD-decoder(x0) ∈ [−1, 1]

All arithmetic is float32 in this order (the UNet itself may run in bf16/fp16). The input
latent of a segment is z = blend·Z_prev + (1−blend)·N0 with N0 a fixed noise from
numpy.random.RandomState(seed); every frame of a segment shares z, so a segment is generated
in ONE batch. The encoder's reconstruction and the decoder call `generate_segment` with the
same batch, so their frames are bit-identical on the same backend.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from promptlab.codec.container import Stream
from promptlab.codec.prompt import compose, interpolate
from promptlab.codec.schedule import Segment, stream_segments
from promptlab.engine.cache import CacheControl, Factors, UnetCache, factors_for
from promptlab.engine.upsample import upsample
from promptlab.errors import Cancelled, PromptlabError
from promptlab.models.base import SIGMA, TIMESTEP, Model


def fixed_noise(seed: int, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """N0, identical at sender and receiver: RandomState(seed).randn(1, C, H/8, W/8) as float32."""
    return torch.from_numpy(np.random.RandomState(seed).randn(*shape).astype(np.float32))


def segment_input(z_prev: torch.Tensor, noise: torch.Tensor, blend: float) -> torch.Tensor:
    """z = blend·Z_prev + (1−blend)·N0 (float32; pass the header's blend, not the setting's)."""
    b = torch.tensor(blend, dtype=torch.float32)
    return b * z_prev.float().cpu() + (1 - b) * noise


def segment_contexts(
    seg: Segment, cur: tuple[torch.Tensor, torch.Tensor],
    prev: tuple[torch.Tensor, torch.Tensor] | None, interp: str,
) -> torch.Tensor:
    """Prompts (N, 77, D) of a segment's frames: keyframe 0 alone, later ones interpolated from prev."""
    u, v = cur
    if seg.index == 0 or prev is None:
        return compose(u, v).unsqueeze(0).expand(seg.length, -1, -1)
    return interpolate(prev[0], prev[1], u, v, seg.alphas().to(u.device), interp)


def forward(
    model: Model, z: torch.Tensor, contexts: torch.Tensor, *, factors: Factors | None = None,
    out_size: tuple[int, int] | None = None, upsampler: str = "bicubic", cache: UnetCache | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x0 (N, C, h, w) float32 and images (N, 3, H, W) float32 in [-1, 1]; differentiable in contexts.

    With a `cache` whose policy is on, the shared input goes to the UNet at batch 1 (the cache
    broadcasts it) together with the segment's `factors`.
    `out_size` (two-stage generation): the decoded images are upsampled to it.
    """
    n = contexts.shape[0]
    dev = model.device
    sigma = torch.tensor(SIGMA, dtype=torch.float32, device=dev)
    s = torch.sqrt(1 + sigma * sigma)
    c_in = 1 / s
    t = torch.full((n,), TIMESTEP, dtype=torch.long, device=dev)
    if cache is not None and cache.wants_shared_input():
        x = z.to(dev, torch.float32)[:1] * s
        with cache.segment(factors):
            eps = model.unet(x * c_in, t, contexts.to(dev), call=cache).float()
    else:
        x = z.to(dev, torch.float32).expand(n, -1, -1, -1) * s
        eps = model.unet(x * c_in, t, contexts.to(dev), call=cache).float()
    x0 = x - sigma * eps
    images = model.decode(x0).float()
    if out_size is not None:
        images = upsample(images, out_size, upsampler)
    return x0, images


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8 via round((clamp(x, -1, 1) + 1) · 127.5)."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def generate_segment(
    model: Model, z: torch.Tensor, contexts: torch.Tensor, *, factors: Factors | None = None,
    out_size: tuple[int, int] | None = None, upsampler: str = "bicubic", cache: UnetCache | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """One segment in one batch, no gradients: (x0 latents float32 on CPU, uint8 images (N, H, W, 3))."""
    with torch.no_grad():
        x0, images = forward(model, z, contexts, factors=factors, out_size=out_size, upsampler=upsampler,
                             cache=cache)
    return x0.cpu(), to_uint8(images)


def out_size_for(model: Model, height: int, width: int, latent_h: int, latent_w: int) -> tuple[int, int] | None:
    """The upsampling target when a stream is two-stage (its latent is smaller than height/8), else None."""
    if latent_h * model.latent_factor == height and latent_w * model.latent_factor == width:
        return None
    return (height, width)


def check_compatible(model: Model, stream: Stream) -> None:
    """A stream fitted for one context width cannot drive a model with another."""
    h = stream.header
    if model.context_dim != h.context_dim or model.latent_channels != h.latent_channels:
        raise PromptlabError(
            f"stream is for a model with context {h.tokens}x{h.context_dim} and {h.latent_channels} latent "
            f"channels, but {model.label} has {model.tokens}x{model.context_dim} and {model.latent_channels}"
        )
    if h.height % model.latent_factor or h.width % model.latent_factor:
        raise PromptlabError(f"frame size {h.width}x{h.height} is not a multiple of {model.latent_factor}")


def generate_stream(
    model: Model, stream: Stream, cancel: Any = None, control: CacheControl | None = None,
    upsampler: str = "bicubic", stop: int | None = None,
) -> Iterator[tuple[int, np.ndarray, float, int, float]]:
    """Regenerate every frame: (frame index, uint8 image, generation ms, keyframe index, reused fraction).

    The keyframe index counts the stream's keyframes from its first GOP read (`stream.first_gop`).
    Each closed GOP restarts from its own init latent. `stop`: no frame at or after it is generated.
    `control` (a CacheControl) picks the cache policy; it is read again at every segment, so a
    caller may switch it while frames are being generated.
    """
    check_compatible(model, stream)
    h = stream.header
    if not stream.inits:
        raise PromptlabError("stream has no init latent")
    noise = fixed_noise(h.seed, h.latent_shape)
    out_size = out_size_for(model, h.height, h.width, h.latent_h, h.latent_w)
    z_prev = stream.init_latent
    prev = None
    cache = UnetCache(model, control or CacheControl())
    k = -1
    for g, seg in stream_segments(h.n_frames, h.interval, h.gop):
        if g < stream.first_gop:
            continue
        k += 1
        if k >= len(stream.keyframes) or (stop is not None and seg.start >= stop):
            break  # a partial stream: regenerate what it holds
        if cancel is not None and cancel.is_set():
            raise Cancelled("decode cancelled")
        if seg.index == 0:  # a closed GOP starts its own chain
            z_prev, prev = stream.inits[g - stream.first_gop], None
        u, v = stream.keyframes[k].factors()
        cur = (u.to(model.device), v.to(model.device))
        contexts = segment_contexts(seg, cur, prev, h.interp)
        factors = factors_for(seg.index, cur, prev, seg.alphas().to(model.device), h.interp)
        z = segment_input(z_prev, noise, h.blend)
        t0 = time.perf_counter()
        x0, images = generate_segment(model, z, contexts, factors=factors, out_size=out_size,
                                      upsampler=upsampler, cache=cache)
        ms = (time.perf_counter() - t0) * 1000 / seg.length
        reused = cache.reused()
        for i, frame in enumerate(seg.frames):
            yield frame, images[i], ms, k, reused[i] if i < len(reused) else 0.0
        z_prev = x0[-1:]
        prev = cur
