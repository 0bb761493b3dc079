"""`decode`: regenerate every frame of a .plab stream, yielding progress records.

Runs the same `generate_segment` call per segment as the encoder's reconstruction, so on the
same backend and with cache policy `none` the frames are bit-identical to what the sender saw
(`lossless` agrees to float rounding, `lossy` trades exactness for speed; engine/cache.py). Bytes attributed to frames
follow the encoder: header (and GOP index) on frame 0, each GOP's init latent on its first
frame, each keyframe record spread evenly over its segment. `frames=(A, B)` on a stream file
reads only the closed GOPs holding A..B-1 (codec/container.read_gops) and yields exactly the
frames a full decode yields there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from promptlab.codec import rate
from promptlab.codec.container import Stream, read_gops, read_header, read_stream
from promptlab.codec.schedule import gop_of, stream_segments
from promptlab.engine import records
from promptlab.engine.cache import CacheControl
from promptlab.engine.generator import generate_stream
from promptlab.engine.runtime import channels_last as to_channels_last
from promptlab.engine.runtime import compiled, module_copy
from promptlab.errors import PromptlabError
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
    frames: tuple[int, int | None] | None = None,
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
    `frames`: (A, B) yields frames A..B-1 only (B None: to the end), reading from a file only
    the GOPs that hold them.
    """
    control = cache if isinstance(cache, CacheControl) else CacheControl(cache, cache_threshold)
    t_start = time.perf_counter()
    path = None if isinstance(stream, Stream) else str(stream)
    s, (first, stop) = _open(stream, frames)
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
    segs = [(g, seg) for g, seg in stream_segments(h.n_frames, h.interval, h.gop) if g >= s.first_gop]
    first_key = len(stream_segments(h.n_frames, h.interval, h.gop)) - len(segs)  # keyframes before the GOPs read
    yield records.Started(job="decode", n_frames=stop - first, n_keyframes=len(s.keyframes), width=h.width,
                          height=h.height, fps=h.fps, model=model.label, header_bytes=s.header_bytes,
                          init_bytes=s.init_bytes)
    lengths = [seg.length for _, seg in segs]
    gop_start = {seg.start: g - s.first_gop for g, seg in segs if seg.index == 0}
    n = 0
    reused = 0.0
    upsampler = upsampler or h.upsampler
    for frame, image, ms, k, frac in generate_stream(model, s, cancel=cancel, control=control, upsampler=upsampler,
                                                     stop=stop):
        if not first <= frame < stop:
            continue
        nbytes = s.keyframe_bytes[k] / lengths[k] + (s.header_bytes + s.index_bytes if frame == 0 else 0)
        if frame in gop_start:
            nbytes += s.init_sizes[gop_start[frame]]
        yield records.Frame(index=frame, image=image, gen_ms=ms, bytes=nbytes, reused=frac, keyframe=first_key + k)
        n += 1
        reused += frac
    span = max(stop - first, 1)
    yield records.Done(job="decode", path=path, total_bytes=s.total_bytes,
                       kbps=rate.kbps(s.total_bytes, span, h.fps),
                       kbps_without_init=rate.kbps(s.total_bytes - s.init_bytes, span, h.fps),
                       elapsed=time.perf_counter() - t_start, extra={"model": model.label, "frames": n, "cache": control.policy,
                              "cache_threshold": control.threshold, "mean_reused": reused / max(n, 1),
                              "upsampler": upsampler, "compile": compile, "channels_last": channels_last, "two_stage": h.latent_h * model.latent_factor != h.height})


def _open(stream: str | Path | Stream, frames: tuple[int, int | None] | None) -> tuple[Stream, tuple[int, int]]:
    """The stream (for a file and a frame range: only the GOPs holding it) and the frames [A, B) to yield."""
    if frames is None:
        s = stream if isinstance(stream, Stream) else read_stream(stream)
        return s, (0, s.header.n_frames)
    h = stream.header if isinstance(stream, Stream) else read_header(stream)
    a, b = frames[0], h.n_frames if frames[1] is None else min(frames[1], h.n_frames)
    if not 0 <= a < b:
        raise PromptlabError(f"frames {a}:{'' if frames[1] is None else frames[1]} are outside the stream's "
                             f"0:{h.n_frames}")
    if isinstance(stream, Stream):
        return stream, (a, b)
    return read_gops(stream, gop_of(a, h.gop), gop_of(b - 1, h.gop)), (a, b)
