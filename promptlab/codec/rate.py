"""Rate arithmetic that counts every byte a receiver needs: header, init latent, keyframe records.

Keyframe records are entropy coded, so their exact size is known only after coding; before a
run we use the worst case (the coder's raw fallback), so a solved rank never overshoots the
target. `kbps` is total bytes × 8 / clip duration; "without init" drops the init latents (one
per closed GOP) that the Promptus papers leave out of their rates. The GOP index that ends a
finished stream is counted too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from promptlab.codec import entropy
from promptlab.codec.container import INIT_BITS, StreamHeader
from promptlab.codec.prompt import TOKENS
from promptlab.codec.schedule import gop_starts, stream_segments
from promptlab.codec.shapes import ModelShape, shape_for
from promptlab.errors import PromptlabError
from promptlab.settings import MAX_RANK, Settings

CHUNK_OVERHEAD = 9          # tag u8 + length u32 + CRC32
SCALES_BYTES = 16           # U scale, U zero-point, V scale, V zero-point (float32)
HEADER_FIXED = 7 + 46 + 4   # magic, version, body length, fixed body with the GOP length, CRC32 (plus the model name)


@dataclass(frozen=True)
class RateEstimate:
    header_bytes: int
    init_bytes: int             # every GOP's init record
    keyframe_bytes: list[int]
    total_bytes: int            # header, inits, keyframes and the GOP index
    kbps: float
    kbps_without_init: float
    exact: bool = False       # True when measured from a written stream


def duration(n_frames: int, fps: float) -> float:
    return n_frames / fps


def kbps(n_bytes: float, n_frames: int, fps: float) -> float:
    if n_frames < 1 or fps <= 0:
        raise PromptlabError("kbps needs at least one frame and a positive fps")
    return n_bytes * 8 / duration(n_frames, fps) / 1000


def keyframe_record_max(rank: int, bits: int, context_dim: int, tokens: int = TOKENS) -> int:
    """Worst-case bytes of one keyframe record (raw codes, bit-packed)."""
    return CHUNK_OVERHEAD + SCALES_BYTES + entropy.max_block_size((tokens + context_dim) * rank, bits)


def init_record_bytes(init_mode: str, latent_values: int) -> int:
    """Worst-case bytes of one init record (entropy-coded modes: their raw fallback)."""
    per = {"f32": 4, "f16": 2, "zero": 0}.get(init_mode)
    if per is not None:
        return CHUNK_OVERHEAD + per * latent_values
    if init_mode == "q6":
        return CHUNK_OVERHEAD + 4 + entropy.max_block_size(latent_values, INIT_BITS)
    return CHUNK_OVERHEAD + 8 + entropy.max_block_size(latent_values, 8)


def estimate(settings: Settings, n_frames: int, shape: ModelShape | None = None) -> RateEstimate:
    shape = shape or shape_for(settings.model)
    lat = settings.size // shape.latent_factor
    header = HEADER_FIXED + len(settings.model.encode())
    gops = len(gop_starts(n_frames, settings.gop))
    init = gops * init_record_bytes(settings.init_mode, shape.latent_channels * lat * lat)
    per_key = keyframe_record_max(settings.rank, settings.bits, shape.context_dim)
    keys = [per_key] * len(stream_segments(n_frames, settings.interval, settings.gop))
    total = header + init + sum(keys) + CHUNK_OVERHEAD + 8 * gops
    return RateEstimate(header, init, keys, total, kbps(total, n_frames, settings.fps),
                        kbps(total - init, n_frames, settings.fps))


def measured(header: StreamHeader, header_bytes: int, init_bytes: int, keyframe_bytes: list[int],
             index_bytes: int = 0) -> RateEstimate:
    total = header_bytes + init_bytes + sum(keyframe_bytes) + index_bytes
    return RateEstimate(header_bytes, init_bytes, list(keyframe_bytes), total,
                        kbps(total, header.n_frames, header.fps),
                        kbps(total - init_bytes, header.n_frames, header.fps), exact=True)


def steady_kbps(rank: int, interval: int, fps: float, bits: int = 8, context_dim: int = 1024) -> float:
    """Long-clip rate: one worst-case keyframe record per interval."""
    return keyframe_record_max(rank, bits, context_dim) * 8 * fps / interval / 1000


def solve_rank(target_kbps: float, settings: Settings, n_frames: int, include_init: bool = True,
               shape: ModelShape | None = None) -> int:
    """The largest rank whose worst-case rate stays within target (at the settings' interval and bits)."""
    if not math.isfinite(target_kbps) or target_kbps <= 0:
        raise PromptlabError(f"target bitrate must be positive, got {target_kbps}")
    best = 0
    lo, hi = 1, MAX_RANK
    while lo <= hi:
        mid = (lo + hi) // 2
        est = estimate(settings.replace(rank=mid), n_frames, shape)
        rate = est.kbps if include_init else est.kbps_without_init
        if rate <= target_kbps:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    if best == 0:
        floor = estimate(settings.replace(rank=1), n_frames, shape)
        need = floor.kbps if include_init else floor.kbps_without_init
        raise PromptlabError(
            f"{target_kbps:g} kbps is below the smallest stream at these settings ({need:.1f} kbps at rank 1); "
            "raise the target, the keyframe interval or the clip length"
        )
    return best
