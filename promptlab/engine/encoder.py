"""`encode`: read a clip segment by segment, fit each keyframe, write the .plab as it goes.

Only one segment's frames are in memory. Each keyframe record is appended (and flushed) to
`OUT.partial` beside the output, a valid stream prefix, with a `OUT.partial.json` sidecar
naming the settings and source. After each keyframe the segment is regenerated from the
DEQUANTISED stream values with the very generator the decoder runs; those frames are the
encoder's reconstruction (yielded as Frame records) and their keyframe latent seeds the next
segment. At the end the partial file is renamed onto OUT in one step. An interrupted encode
resumes from the partial file's complete records and produces the same bytes.

Bytes attributed to frames: header + init latent on frame 0; each keyframe record spread
evenly over its segment's frames.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from promptlab.codec import rate
from promptlab.codec.container import (
    StreamHeader,
    StreamWriter,
    decode_init,
    encode_init,
    read_stream,
)
from promptlab.codec.schedule import segments
from promptlab.codec.shapes import ModelShape
from promptlab.device import set_threads
from promptlab.engine import records
from promptlab.engine.generator import (
    fixed_noise,
    generate_segment,
    segment_contexts,
    segment_input,
)
from promptlab.engine.inverter import fit_segment, start_mode
from promptlab.engine.losses import make_loss
from promptlab.engine.upsample import stage_image, stage_latent, stage_size
from promptlab.errors import PromptlabError, StreamError
from promptlab.io.atomic import check_target
from promptlab.io.video import FrameRange, count_frames, parse_frames, read_frames
from promptlab.models.base import Model
from promptlab.settings import ENCODE_KEYS, Settings


def partial_paths(out: str | Path) -> tuple[Path, Path]:
    """Where an encode of `out` keeps its resumable prefix and the sidecar describing it."""
    p = Path(out)
    return p.with_name(p.name + ".partial"), p.with_name(p.name + ".partial.json")


def to_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) frames -> (N, 3, H, W) float32 in [-1, 1]."""
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1


def header_for(settings: Settings, model: Model, n_frames: int) -> StreamHeader:
    """The stream header for `model` (its prompt width and latent shape; two-stage: the smaller latent)."""
    shape = ModelShape(model.context_dim, model.latent_channels, model.latent_factor)
    side = stage_latent(settings.size, settings.stage_scale, model.latent_factor)
    return StreamHeader.from_settings(settings, n_frames, shape, latent_side=side)


def _identity(source: str | Path, frames: FrameRange | None, settings: Settings, model: Model) -> dict[str, Any]:
    return {
        "settings": settings.key(*ENCODE_KEYS),
        "source": str(Path(source).resolve()),
        "frames": list(frames) if frames else None,
        "model_version": model.version,
        "model_fingerprint": model.fingerprint,  # other weights under the same name never resume
    }


def encode(
    source: str | Path,
    settings: Settings,
    out: str | Path,
    *,
    frames: str | FrameRange | None = None,
    cancel: Any = None,
    resume: bool = True,
    force: bool = False,
    recon_every: int = 0,
    model: Model | None = None,
) -> Iterator[Any]:
    """Yield Started, Iteration…, KeyframeDone, Frame… per keyframe, then Done (see module doc)."""
    t_start = time.perf_counter()
    out = check_target(out, force)
    frange = parse_frames(frames) if isinstance(frames, str) or frames is None else frames
    set_threads(settings.threads)
    reader = read_frames(source, frames=frange, size=settings.size, crop=settings.crop)
    n_frames = count_frames(source, frange)
    if n_frames < 1:
        raise PromptlabError(f"{source} has no frames to encode")
    if model is None:
        from promptlab.models.registry import load_model

        model = load_model(settings.model, settings.device, settings.dtype)
    start = start_mode(model, settings)  # refuses an impossible start before anything is written
    header = header_for(settings, model, n_frames)
    segs = segments(n_frames, settings.interval)
    loss = make_loss(settings, model.device)
    first = next(reader, None)
    if first is None:
        raise PromptlabError(f"{source} has no frames to encode")
    init_latent = model.encode_init(stage_image(to_tensor([first]), settings)).cpu()
    init_used = decode_init(encode_init(init_latent, header), header)  # what the receiver will see

    partial, sidecar = partial_paths(out)
    ident = _identity(source, frange, settings, model)
    kept = _resumable(partial, sidecar, ident, header, init_used) if resume else []
    sidecar.write_text(json.dumps(ident))
    fh = open(partial, "wb")  # noqa: SIM115 - closed in finally / renamed at the end
    try:
        writer = StreamWriter(fh, header, init_latent)
        for rec in kept:
            writer.write_keyframe(rec)
        yield records.Started(
            job="encode", n_frames=n_frames, n_keyframes=len(segs), width=settings.size, height=settings.size,
            fps=settings.fps, model=model.label, header_bytes=writer.header_bytes,
            init_bytes=writer.init_bytes, resumed_keyframes=len(kept),
        )
        noise = fixed_noise(header.seed, header.latent_shape)
        z_prev = init_used
        prev: tuple[torch.Tensor, torch.Tensor] | None = None
        pending = [first]
        first_losses: list[float] = []
        best_losses: list[float] = []
        for seg in segs:
            while len(pending) < seg.length:
                nxt = next(reader, None)
                if nxt is None:
                    raise PromptlabError(f"{source} ended after fewer frames than counted ({n_frames})")
                pending.append(nxt)
            targets, pending = pending[:seg.length], pending[seg.length:]
            z = segment_input(z_prev, noise, header.blend)
            if seg.index < len(kept):
                rec = kept[seg.index]
            else:
                fit = yield from fit_segment(model, seg, to_tensor(targets), z, prev, settings, loss,
                                             cancel=cancel, recon_every=recon_every, started=t_start)
                rec = fit.record
                nbytes = writer.write_keyframe(rec)
                os.fsync(fh.fileno())
                first_losses.append(fit.first_loss)
                best_losses.append(fit.loss)
                yield records.KeyframeDone(keyframe=seg.index, frames=list(seg.frames), record_bytes=nbytes,
                                           loss=fit.loss, first_loss=fit.first_loss,
                                           elapsed=time.perf_counter() - t_start)
            u, v = rec.factors()
            cur = (u.to(model.device), v.to(model.device))
            ctx = segment_contexts(seg, cur, prev, header.interp)
            t0 = time.perf_counter()
            x0, images = generate_segment(model, z, ctx, out_size=stage_size(settings),
                                          upsampler=settings.upsampler)
            ms = (time.perf_counter() - t0) * 1000 / seg.length
            per_frame = writer.keyframe_bytes[seg.index] / seg.length
            for i, f in enumerate(seg.frames):
                extra = writer.header_bytes + writer.init_bytes if f == 0 else 0
                yield records.Frame(index=f, image=images[i], gen_ms=ms, bytes=per_frame + extra, keyframe=seg.index)
            z_prev, prev = x0[-1:], cur
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        total = writer.header_bytes + writer.init_bytes + sum(writer.keyframe_bytes)
        read_stream(partial)  # the finished stream must read back whole before it takes OUT's name
        os.replace(partial, out)
        with contextlib.suppress(FileNotFoundError):
            sidecar.unlink()
        yield records.Done(
            job="encode", path=str(out), total_bytes=total,
            kbps=rate.kbps(total, n_frames, header.fps),
            kbps_without_init=rate.kbps(total - writer.init_bytes, n_frames, header.fps),
            elapsed=time.perf_counter() - t_start,
            extra={"model": model.label, "perceptual": loss.perceptual, "start": start,
                   "first_losses": first_losses,
                   "best_losses": best_losses, "resumed_keyframes": len(kept),
                   "header_bytes": writer.header_bytes, "init_bytes": writer.init_bytes,
                   "keyframe_bytes": list(writer.keyframe_bytes),
                   "stage_scale": settings.stage_scale, "upsampler": settings.upsampler},
        )
    finally:
        if not fh.closed:
            fh.close()


def _resumable(partial: Path, sidecar: Path, ident: dict[str, Any], header: StreamHeader,
               init_used: torch.Tensor) -> list:
    """The complete keyframe records of a matching partial stream, or [] (a stale one is ignored)."""
    if not partial.exists() or not sidecar.exists():
        return []
    try:
        if json.loads(sidecar.read_text()) != ident:
            return []
        stream = read_stream(partial, allow_partial=True)
    except (OSError, ValueError, StreamError, PromptlabError):
        return []
    if stream.header != header or stream.init_latent is None or not torch.equal(stream.init_latent, init_used):
        return []
    return list(stream.keyframes)
