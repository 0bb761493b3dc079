"""The rate–distortion view of one clip: every run of it in the results cache against an H.265 ladder.

A run's operating point is its cached summary (kbps with every byte counted, mean LPIPS, PSNR,
VMAF when measured), labelled by the rank and keyframe interval its stream's header records.
Runs belong to one clip when they saw the same frames: the same source (path, sizes and times
of its files), frame range, size, crop and fps (`clip_id`, stored in each run's summary). The
H.265 ladder encodes those frames at rates spanning the promptlab points and is stored next to
the results, so a second look costs nothing. The BD-rate (metrics.bdrate) is computed where the
two curves overlap in quality. Qt-free: the GUI computes the ladder off its UI thread.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promptlab.io.atomic import write_bytes_atomic
from promptlab.runs.results import ResultsCache, source_stamp
from promptlab.settings import Settings

LADDER_STEPS = 5
LADDER_SPAN = 2.0   # the ladder runs from the cheapest promptlab point / SPAN to the dearest × SPAN


@dataclass
class RdPoint:
    """One operating point: a cached promptlab run (with its results-cache key) or a ladder rung."""

    method: str                 # "promptlab" | "h265" | "h264"
    kbps: float
    lpips: float | None
    psnr: float | None
    vmaf: float | None = None
    label: str = ""             # "r8 k10" for promptlab, "120 kbps" for a rung
    key: str | None = None      # the results-cache key (click to load)


def clip_id(source: str | Path, settings: Settings, frames: tuple[int, int] | None) -> str:
    """The identity of the frames a run scored: source, range, size, crop and fps."""
    rng = "all" if frames is None else f"{frames[0]}:{frames[1]}"
    payload = f"{source_stamp(source)}|{rng}|{settings.size}|{settings.crop}|{settings.fps:g}"
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def cached_points(cache: ResultsCache, clip: str) -> list[RdPoint]:
    """The promptlab operating points of `clip` in the results cache, cheapest first."""
    out: list[RdPoint] = []
    if not cache.root.is_dir():
        return out
    for p in sorted(cache.root.iterdir()):
        meta = p / "metrics.json"
        if not meta.is_file():
            continue
        try:
            summary = json.loads(meta.read_text())["summary"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        extra = summary.get("extra") if isinstance(summary, dict) else None
        if not isinstance(extra, dict) or extra.get("clip") != clip or not summary.get("kbps"):
            continue
        out.append(RdPoint("promptlab", float(summary["kbps"]), summary.get("lpips"), summary.get("psnr"),
                           summary.get("vmaf"), _label(p / "stream.plab"), p.name))
    return sorted(out, key=lambda q: q.kbps)


def _header(stream: Path) -> Any:
    from promptlab.codec.container import iter_stream

    with stream.open("rb") as fh:
        _, header, _ = next(iter_stream(fh))
    return header


def _label(stream: Path) -> str:
    """"r<rank> k<interval>" from the stream's header (the one home of those settings)."""
    try:
        header = _header(stream)
        return f"r{header.rank} k{header.interval}"
    except Exception:  # noqa: BLE001 - an unreadable stream still has a point, just no label
        return "?"


def ladder_targets(points: Sequence[RdPoint], steps: int = LADDER_STEPS) -> list[float]:
    """Rates (kbps) spaced evenly in log rate over the promptlab points' range, widened by LADDER_SPAN."""
    rates = [p.kbps for p in points if p.kbps > 0]
    if not rates:
        return []
    lo, hi = min(rates) / LADDER_SPAN, max(rates) * LADDER_SPAN
    return [float(round(v, 3)) for v in np.geomspace(lo, hi, steps)]


def ladder(originals: Sequence[np.ndarray], fps: float, targets: Sequence[float], clip: str,
           cache: ResultsCache, codec: str = "h265", lpips_net: str = "alex", cancel: Any = None) -> list[RdPoint]:
    """The classical codec at each target rate on the clip's frames, scored; stored per clip and rate."""
    from promptlab.baselines import encode_baseline
    from promptlab.metrics import FrameMetrics, lpips_status, score, summarize

    store = cache.root / "rd" / f"{clip}-{codec}.json"
    known = _read_ladder(store)
    metrics = None
    out = []
    for t in targets:
        k = f"{t:.3f}"
        if k not in known:
            if cancel is not None and cancel.is_set():
                break
            if metrics is None:
                metrics = FrameMetrics(lpips_net, need_lpips=bool(lpips_status(lpips_net)[0]))
            res = encode_baseline(list(originals), fps, t, codec=codec)
            mean = summarize(score(metrics, originals, res.recon))["mean"]
            known[k] = asdict(RdPoint(codec, float(res.kbps), mean["lpips"], mean["psnr"], None,
                                      f"{res.kbps:.0f} kbps"))
            store.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(store, json.dumps(known, indent=1).encode())
        out.append(RdPoint(**known[k]))
    return sorted(out, key=lambda q: q.kbps)


def _read_ladder(path: Path) -> dict[str, dict]:
    try:
        doc = json.loads(path.read_text())
        return {k: v for k, v in doc.items() if isinstance(v, dict) and "kbps" in v}
    except (OSError, ValueError, AttributeError):
        return {}


def bd_rates(ours: Sequence[RdPoint], anchor: Sequence[RdPoint]) -> dict[str, float | None]:
    """BD-rate (%) of promptlab against the ladder on PSNR and on LPIPS (quality −LPIPS); None: no overlap."""
    from promptlab.metrics.bdrate import bd_rate

    def curve(pts: Sequence[RdPoint], metric: str, sign: float) -> tuple[list[float], list[float]]:
        keep = [p for p in pts if getattr(p, metric) is not None and math.isfinite(getattr(p, metric))]
        return [p.kbps for p in keep], [sign * getattr(p, metric) for p in keep]

    out: dict[str, float | None] = {}
    for metric, sign in (("psnr", 1.0), ("lpips", -1.0)):
        (ra, qa), (rt, qt) = curve(anchor, metric, sign), curve(ours, metric, sign)
        out[metric] = bd_rate(ra, qa, rt, qt) if ra and rt else None
    return out
