"""`encode`: read a clip segment by segment, fit each keyframe, write the .plab as it goes.

Only one segment's frames are in memory. Each keyframe record is appended (and flushed) to
`OUT.partial` beside the output, a valid stream prefix, with a `OUT.partial.json` sidecar
naming the settings and source. After each keyframe the segment is regenerated from the
DEQUANTISED stream values with the very generator the decoder runs; those frames are the
encoder's reconstruction (yielded as Frame records) and their keyframe latent seeds the next
segment. At the end the partial file is renamed onto OUT in one step.

Every computation the bytes depend on (init latents, the fit, the regeneration that chains
segments) runs at one fixed torch thread count (device.fixed_threads), so the stream is the same
at any `--threads` and on a Ray worker with any thread count; drafts run at `--threads`. An interrupted encode
resumes from the partial file's complete records and produces the same bytes.

With closed GOPs (`settings.gop`) the chain restarts at every GOP's first frame from that
frame's own init latent, so a GOP is coded exactly as a clip of its length would be: the bytes
of a GOP do not depend on anything before it (what lets workers encode GOPs in parallel,
runs/distributed.py).

First answer (`first_answer=True`, amortised start only): before a keyframe's fit, its segment
is generated once from the prompt encoder's guess (no iterations) and yielded as draft Frames
(`draft=True`, no bytes: nothing of it is in the stream); the fitted frames follow and replace
them. Drafts touch no state the fit reads, so the stream's bytes are the same with or without.

Bytes attributed to frames: header and GOP index on frame 0, each GOP's init latent on its first
frame; each keyframe record spread evenly over its segment's frames.
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
    Stream,
    StreamHeader,
    StreamWriter,
    decode_init,
    encode_init,
    index_size,
    read_stream,
)
from promptlab.codec.schedule import stream_segments
from promptlab.codec.shapes import ModelShape
from promptlab.device import fixed_threads, set_threads
from promptlab.engine import records
from promptlab.engine.generator import (
    fixed_noise,
    generate_segment,
    segment_contexts,
    segment_input,
)
from promptlab.engine.inverter import fit_segment, start_factors, start_mode
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


def identity(source: str | Path, frames: FrameRange | None, settings: Settings, model: Model) -> dict[str, Any]:
    """What a partial encode was made from: only a partial with the same identity resumes."""
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
    first_answer: bool = False,
) -> Iterator[Any]:
    """Yield Started, [draft Frame…,] Iteration…, KeyframeDone, Frame… per keyframe, then Done (see module doc)."""
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
    segs = stream_segments(n_frames, settings.interval, settings.gop)
    loss = make_loss(settings, model.device)
    first = next(reader, None)
    if first is None:
        raise PromptlabError(f"{source} has no frames to encode")

    partial, sidecar = partial_paths(out)
    ident = identity(source, frange, settings, model)
    kept = _resumable(partial, sidecar, ident, header) if resume else None
    sidecar.write_text(json.dumps(ident))
    fh = open(partial, "wb")  # noqa: SIM115 - closed in finally / renamed at the end
    try:
        writer = StreamWriter(fh, header)
        n_kept = len(kept.keyframes) if kept else 0
        noise = fixed_noise(header.seed, header.latent_shape)
        prev: tuple[torch.Tensor, torch.Tensor] | None = None
        pending = [first]
        first_losses: list[float] = []
        best_losses: list[float] = []
        gop_first: dict[int, int] = {}  # GOP -> its first frame
        for k, (g, seg) in enumerate(segs):
            while len(pending) < seg.length:
                nxt = next(reader, None)
                if nxt is None:
                    raise PromptlabError(f"{source} ended after fewer frames than counted ({n_frames})")
                pending.append(nxt)
            if seg.index == 0:  # a GOP starts: its own init latent, a fresh chain
                with fixed_threads():
                    init_latent = model.encode_init(stage_image(to_tensor(pending[:1]), settings)).cpu()
                z_prev = decode_init(encode_init(init_latent, header), header)  # what the receiver will see
                if kept is not None and (g >= len(kept.inits) or not torch.equal(kept.inits[g], z_prev)):
                    n_kept = min(n_kept, k)  # a partial GOP that does not match is fitted again
                writer.write_init(init_latent)
                gop_first[seg.start] = g
                prev = None
                if k == 0:
                    yield records.Started(
                        job="encode", n_frames=n_frames, n_keyframes=len(segs), width=settings.size,
                        height=settings.size, fps=settings.fps, model=model.label,
                        header_bytes=writer.header_bytes, init_bytes=writer.init_bytes,
                        resumed_keyframes=n_kept,
                    )
            targets, pending = pending[:seg.length], pending[seg.length:]
            z = segment_input(z_prev, noise, header.blend)
            if k < n_kept:
                rec = kept.keyframes[k]  # type: ignore[union-attr]
                writer.write_keyframe(rec)
            else:
                unrefined = (settings.first_iters if seg.index == 0 else settings.iters) == 0
                if first_answer and start == "amortised" and not unrefined:  # unrefined: the fit is the draft
                    yield from _drafts(model, seg, k, targets, z, prev, settings, header.interp)
                fit = yield from fit_segment(model, seg, to_tensor(targets), z, prev, settings, loss,
                                             cancel=cancel, recon_every=recon_every, started=t_start)
                rec = fit.record
                nbytes = writer.write_keyframe(rec)
                os.fsync(fh.fileno())
                first_losses.append(fit.first_loss)
                best_losses.append(fit.loss)
                yield records.KeyframeDone(keyframe=k, frames=list(seg.frames), record_bytes=nbytes,
                                           loss=fit.loss, first_loss=fit.first_loss,
                                           elapsed=time.perf_counter() - t_start)
            u, v = rec.factors()
            cur = (u.to(model.device), v.to(model.device))
            ctx = segment_contexts(seg, cur, prev, header.interp)
            t0 = time.perf_counter()
            with fixed_threads():  # its x0 seeds the next segment's fit
                x0, images = generate_segment(model, z, ctx, out_size=stage_size(settings),
                                              upsampler=settings.upsampler)
            ms = (time.perf_counter() - t0) * 1000 / seg.length
            per_frame = writer.keyframe_bytes[k] / seg.length
            for i, f in enumerate(seg.frames):
                extra = writer.init_sizes[gop_first[f]] if f in gop_first else 0
                if f == 0:
                    extra += writer.header_bytes + index_size(header)
                yield records.Frame(index=f, image=images[i], gen_ms=ms, bytes=per_frame + extra, keyframe=k)
            z_prev, prev = x0[-1:], cur
        writer.finish()
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        total = writer.total_bytes
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
                   "best_losses": best_losses, "resumed_keyframes": n_kept,
                   "header_bytes": writer.header_bytes, "init_bytes": writer.init_bytes,
                   "index_bytes": writer.index_bytes, "gops": header.n_gops,
                   "keyframe_bytes": list(writer.keyframe_bytes),
                   "stage_scale": settings.stage_scale, "upsampler": settings.upsampler},
        )
    finally:
        if not fh.closed:
            fh.close()


def _drafts(model: Model, seg: Any, k: int, targets: list[np.ndarray], z: torch.Tensor,
            prev: tuple[torch.Tensor, torch.Tensor] | None, settings: Settings, interp: str) -> Iterator[records.Frame]:
    """The segment generated from the start the fit will begin at (the prompt encoder's guess), at once."""
    u, v = start_factors(model, settings, seg.index, to_tensor(targets[-1:]))
    ctx = segment_contexts(seg, (u.to(model.device), v.to(model.device)), prev, interp)
    t0 = time.perf_counter()
    _, images = generate_segment(model, z, ctx, out_size=stage_size(settings), upsampler=settings.upsampler)
    ms = (time.perf_counter() - t0) * 1000 / seg.length
    for i, f in enumerate(seg.frames):
        yield records.Frame(index=f, image=images[i], gen_ms=ms, bytes=0.0, keyframe=k, draft=True)


def _resumable(partial: Path, sidecar: Path, ident: dict[str, Any], header: StreamHeader) -> Stream | None:
    """The readable prefix of a matching partial stream, or None (a stale one is ignored).

    Its init latents are compared with the ones computed again as each GOP starts."""
    if not partial.exists() or not sidecar.exists():
        return None
    try:
        if json.loads(sidecar.read_text()) != ident:
            return None
        stream = read_stream(partial, allow_partial=True)
    except (OSError, ValueError, StreamError, PromptlabError):
        return None
    return stream if stream.header == header else None
