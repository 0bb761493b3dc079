"""Rate–distortion sweep: promptlab at several ranks/intervals against H.265/H.264 at the same rates.

Each promptlab point is a real encode (every byte of the stream counted); each baseline point
is the classical codec rate-controlled to that point's achieved kbps on the same frames, size
and fps. The job is an iterator of plain records, like the engines.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promptlab.engine import records
from promptlab.engine.encoder import encode
from promptlab.errors import Cancelled
from promptlab.io.video import read_frames
from promptlab.metrics.bdrate import bd_rate
from promptlab.metrics.frame import SEVERE_LPIPS
from promptlab.settings import Settings

FrameRange = tuple[int, int | None] | None


@dataclass
class SweepPoint:
    method: str              # "promptlab" | "h265" | "h264"
    rank: int | None
    interval: int | None
    kbps: float
    target_kbps: float | None
    total_bytes: int
    lpips: float | None
    psnr: float
    ssim: float
    ms_ssim: float
    severe_ratio: float | None
    vmaf: float | None = None  # when the metrics object scores VMAF
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepDone:
    points: list[SweepPoint]
    bd_rate_psnr: float | None
    bd_rate_lpips: float | None
    baseline: str | None


def _score(metrics: Any, originals: list[np.ndarray], recon: list[np.ndarray], severe: float) -> dict[str, Any]:
    from promptlab.metrics.frame import score, summarize

    s = summarize(score(metrics, originals, recon), severe=severe)
    mean = s["mean"]
    return {"lpips": mean.get("lpips"), "psnr": mean["psnr"], "ssim": mean["ssim"], "ms_ssim": mean["ms_ssim"],
            "severe_ratio": mean.get("severe_ratio"), "vmaf": mean.get("vmaf")}


def run_sweep(source: str | Path, base: Settings, ranks: list[int], intervals: list[int], out_dir: Path, *,
              frames: FrameRange = None, baseline: str | None = "h265", metrics: Any = None,
              severe: float = SEVERE_LPIPS, cancel: Any = None, force: bool = False) -> Iterator[Any]:
    """Yield engine records of each encode, a SweepPoint per point, then SweepDone."""
    from promptlab.baselines import encode_baseline
    from promptlab.metrics.frame import FrameMetrics

    metrics = metrics or FrameMetrics()
    originals = list(read_frames(source, frames=frames, size=base.size, crop=base.crop))
    points: list[SweepPoint] = []
    for interval in intervals:
        for rank in ranks:
            settings = base.replace(rank=rank, interval=interval)
            out = out_dir / f"promptlab-r{rank}-k{interval}.plab"
            recon: dict[int, np.ndarray] = {}
            done = None
            for rec in encode(source, settings, out, frames=frames, cancel=cancel, force=force):
                if isinstance(rec, records.Frame):
                    recon[rec.index] = rec.image
                elif isinstance(rec, records.Done):
                    done = rec
                yield rec
            assert done is not None
            q = _score(metrics, originals, [recon[i] for i in range(len(originals))], severe)
            p = SweepPoint("promptlab", rank, interval, done.kbps, None, done.total_bytes, path=str(out),
                           extra={"kbps_without_init": done.kbps_without_init, "model": done.extra.get("model")}, **q)
            points.append(p)
            yield p
            if baseline:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("sweep cancelled")
                b = encode_baseline(originals, settings.fps, done.kbps, codec=baseline)
                bq = _score(metrics, originals, b.recon, severe)
                bp = SweepPoint(baseline, None, interval, b.kbps, done.kbps, b.bytes,
                                extra={"within_tolerance": b.converged}, **bq)
                points.append(bp)
                yield bp
    yield summarize_sweep(points, baseline)


def summarize_sweep(points: list[SweepPoint], baseline: str | None) -> SweepDone:
    ours = [p for p in points if p.method == "promptlab"]
    theirs = [p for p in points if p.method == baseline]
    bd_psnr = bd_rate([p.kbps for p in theirs], [p.psnr for p in theirs],
                      [p.kbps for p in ours], [p.psnr for p in ours]) if theirs else None
    bd_lpips = None
    if theirs and all(p.lpips is not None for p in ours + theirs):
        bd_lpips = bd_rate([p.kbps for p in theirs], [-p.lpips for p in theirs],  # type: ignore[operator]
                           [p.kbps for p in ours], [-p.lpips for p in ours])      # type: ignore[operator]
    return SweepDone(points, bd_psnr, bd_lpips, baseline)
