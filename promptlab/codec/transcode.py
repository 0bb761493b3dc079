"""One stream, any rate: a lower rank or fewer bits from an existing stream, without re-fitting.

Rank: each keyframe's prompt c = U·V/√r is re-factored by SVD, so keeping the first r' terms
gives the best rank-r' approximation of c (Eckart–Young) whatever the sender's factors were.
The new factors are balanced (U' = A·√S, V' = √S·Bᵀ, times r'^¼ for the 1/√r' of the
composition) and each keyframe is rotated onto the previous one (orthogonal Procrustes:
U'R, RᵀV' leave c unchanged) so that interpolating factors between keyframes stays smooth
instead of jumping at SVD sign and order flips.
Bits: the factors are requantised per tensor with a fresh range (min ≤ 0 ≤ max).
A target bitrate picks the largest rank whose coded stream fits, counting every byte.
Interval: keyframes are re-placed every `interval` frames; a new keyframe's factors are the
stream's own factors at that frame, interpolated between the fitted keyframes around it as the
receiver interpolates them (an instant answer for a new interval, not a fit at it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from promptlab.codec.container import (
    KeyframeRecord,
    Stream,
    StreamHeader,
    read_stream,
    stream_bytes,
)
from promptlab.codec.prompt import compose
from promptlab.codec.quant import QParams, qparams, quantize
from promptlab.codec.rate import kbps
from promptlab.codec.schedule import keyframes, segment_of
from promptlab.errors import PromptlabError


@dataclass(frozen=True)
class Transcoded:
    """The new stream's bytes and what they hold."""

    header: StreamHeader
    data: bytes

    @property
    def kbps(self) -> float:
        return kbps(len(self.data), self.header.n_frames, self.header.fps)


def _requantised(u: torch.Tensor, v: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, QParams, QParams]:
    """Codes and parameters of U and V, each with its own fresh range."""
    up = qparams(float(u.min()), float(u.max()), bits)
    vp = qparams(float(v.min()), float(v.max()), bits)
    return quantize(u, up), quantize(v, vp), up, vp


def refactor(records: list[KeyframeRecord], rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Float (U', V') of rank `rank` per keyframe: truncated SVD of c, aligned keyframe to keyframe."""
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    scale = rank ** 0.25
    for rec in records:
        u, v = rec.factors()
        c = compose(u.double(), v.double())
        a, s, bt = torch.linalg.svd(c, full_matrices=False)
        k = min(rank, s.numel())
        root = s[:k].sqrt()
        nu = torch.zeros(c.shape[0], rank, dtype=c.dtype)
        nv = torch.zeros(rank, c.shape[1], dtype=c.dtype)
        nu[:, :k] = a[:, :k] * root * scale
        nv[:k] = root[:, None] * bt[:k] * scale
        if out:
            pu, pv = out[-1]
            # R = argmin ||[U'; V'ᵀ]R - [U_prev; V_prevᵀ]|| over orthogonal R (Procrustes)
            m = nu.T @ pu.double() + nv @ pv.double().T
            w, _, zt = torch.linalg.svd(m)
            r = w @ zt
            nu, nv = nu @ r, r.T @ nv
        out.append((nu.float(), nv.float()))
    return out


def transcode(stream: Stream, rank: int | None = None, bits: int | None = None) -> Transcoded:
    """The stream at `rank` (≤ the stream's) and `bits` (2..8); the init latent is kept as it is."""
    h = stream.header
    if not stream.complete:
        raise PromptlabError("the stream is incomplete: transcode needs every keyframe")
    rank = h.rank if rank is None else rank
    bits = h.bits if bits is None else bits
    if not 1 <= rank <= h.rank:
        raise PromptlabError(f"rank must be 1..{h.rank} (the stream's rank; transcode cannot add detail), got {rank}")
    if not 2 <= bits <= 8:
        raise PromptlabError(f"bits must be 2..8, got {bits}")
    if rank == h.rank and bits == h.bits:
        records = list(stream.keyframes)
    else:
        floats = [rec.factors() for rec in stream.keyframes] if rank == h.rank else refactor(stream.keyframes, rank)
        records = [KeyframeRecord(*_requantised(u, v, bits)) for u, v in floats]
    header = replace(h, rank=rank, bits=bits)
    return Transcoded(header, stream_bytes(header, stream.inits, records))


def transcode_to_rate(stream: Stream, target_kbps: float, bits: int | None = None) -> Transcoded:
    """The largest rank (at `bits`) whose whole coded stream stays within `target_kbps`."""
    if not math.isfinite(target_kbps) or target_kbps <= 0:
        raise PromptlabError(f"target bitrate must be positive, got {target_kbps:g}")
    lo, hi, best = 1, stream.header.rank, None
    while lo <= hi:  # coded size grows with rank: binary search on exact sizes
        mid = (lo + hi) // 2
        t = transcode(stream, mid, bits)
        if t.kbps <= target_kbps:
            best, lo = t, mid + 1
        else:
            hi = mid - 1
    if best is None:
        floor = transcode(stream, 1, bits)
        raise PromptlabError(f"{target_kbps:g} kbps is below this stream's smallest transcode "
                             f"({floor.kbps:.1f} kbps at rank 1, {floor.header.bits} bits); "
                             "lower --bits or raise the target")
    return best


def rekey(stream: Stream, interval: int) -> Stream:
    """The stream with keyframes every `interval` frames, factors taken from the stream itself."""
    h = stream.header
    if not stream.complete:
        raise PromptlabError("the stream is incomplete: transcode needs every keyframe")
    if interval < 1:
        raise PromptlabError(f"keyframe interval must be >= 1, got {interval}")
    if interval == h.interval:
        return stream
    if h.n_gops > 1:
        raise PromptlabError("changing the interval of a stream with closed GOPs is not supported; encode again")
    old = [rec.factors() for rec in stream.keyframes]
    records = []
    for f in keyframes(h.n_frames, interval):
        seg = segment_of(f, h.n_frames, h.interval)
        if f == seg.keyframe:
            u, v = old[seg.index]
        else:  # between keyframes seg.index-1 and seg.index, at the receiver's fraction
            a = float(seg.alphas()[f - seg.start])
            (u0, v0), (u1, v1) = old[seg.index - 1], old[seg.index]
            u, v = torch.lerp(u0, u1, a), torch.lerp(v0, v1, a)
        records.append(KeyframeRecord(*_requantised(u, v, h.bits)))
    header = replace(h, interval=interval)
    return read_stream(stream_bytes(header, stream.init_latent, records))
