"""`decode`: regenerate every frame of a .plab stream, yielding progress records.

Runs the same `generate_segment` call per segment as the encoder's reconstruction, so on the
same backend and with cache policy `none` the frames are bit-identical to what the sender saw
(`lossless` agrees to float rounding, `lossy` trades exactness for speed; engine/cache.py). Bytes attributed to frames
follow the encoder: header + init latent on frame 0, each keyframe record spread evenly over
its segment.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from promptlab.codec import rate
from promptlab.codec.container import Stream, read_stream
from promptlab.codec.schedule import segments
from promptlab.engine import records
from promptlab.engine.cache import CacheControl
from promptlab.engine.generator import generate_stream
from promptlab.engine.runtime import channels_last as to_channels_last
from promptlab.engine.runtime import compiled, module_copy
from promptlab.models.base import Model


def decode(
    stream: str | Path | Stream,
    *,
    model: str | Model | None = None,
    device: str = "auto",
    dtype: str = "fp32",
    cancel: Any = None,
    cache: str | CacheControl = "none",
    cache_threshold: float = 0.05,
    upsampler: str | None = None,
    compile: bool = False,
    channels_last: bool = False,
) -> Iterator[Any]:
    """Yield Started, one Frame per frame, then Done. `model` defaults to the stream's model name.

    `cache`: a policy name (none | lossless | lossy, with `cache_threshold` for lossy) or a
    `CacheControl` whose `.policy`/`.threshold` the caller may change while decoding (read at
    every segment). `Frame.reused` is the fraction of the frame's UNet FLOPs served from cache.
    `upsampler`: for two-stage streams (latent smaller than the frame / 8); by default the one
    the header records (the one the encoder fitted through); naming another is an experiment.
    `compile`: run the UNet blocks and decoder under torch.compile (engine/runtime.compiled);
    pays for long streams, costs tens of seconds of compilation first. `channels_last`: that
    memory format for the UNet and decoder (faster batched convolutions on CPU; equal to float
    rounding). A caller's own model is never changed: both options work on copies of it.
    """
    control = cache if isinstance(cache, CacheControl) else CacheControl(cache, cache_threshold)
    t_start = time.perf_counter()
    path = None if isinstance(stream, Stream) else str(stream)
    s = stream if isinstance(stream, Stream) else read_stream(stream)
    h = s.header
    if not isinstance(model, Model):
        from promptlab.models.registry import load_model

        model = load_model(model or h.model, device, dtype)
    elif compile or channels_last:
        model = module_copy(model)  # never change a caller's model
    if channels_last:
        to_channels_last(model)
    if compile:
        model = compiled(model)
    segs = segments(h.n_frames, h.interval)
    yield records.Started(job="decode", n_frames=h.n_frames, n_keyframes=len(segs), width=h.width,
                          height=h.height, fps=h.fps, model=model.label, header_bytes=s.header_bytes,
                          init_bytes=s.init_bytes)
    lengths = {seg.index: seg.length for seg in segs}
    n = 0
    reused = 0.0
    upsampler = upsampler or h.upsampler
    for frame, image, ms, k, frac in generate_stream(model, s, cancel=cancel, control=control, upsampler=upsampler):
        nbytes = s.keyframe_bytes[k] / lengths[k] + (s.header_bytes + s.init_bytes if frame == 0 else 0)
        yield records.Frame(index=frame, image=image, gen_ms=ms, bytes=nbytes, reused=frac, keyframe=k)
        n += 1
        reused += frac
    yield records.Done(job="decode", path=path, total_bytes=s.total_bytes,
                       kbps=rate.kbps(s.total_bytes, h.n_frames, h.fps),
                       kbps_without_init=rate.kbps(s.total_bytes - s.init_bytes, h.n_frames, h.fps),
                       elapsed=time.perf_counter() - t_start, extra={"model": model.label, "frames": n, "cache": control.policy,
                              "cache_threshold": control.threshold, "mean_reused": reused / max(n, 1),
                              "upsampler": upsampler, "compile": compile, "channels_last": channels_last, "two_stage": h.latent_h * model.latent_factor != h.height})
