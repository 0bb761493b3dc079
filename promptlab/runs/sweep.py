"""Rate–distortion sweep: promptlab at several ranks/intervals against H.265/H.264 at the same rates.

Each promptlab point is a real encode (every byte of the stream counted); each baseline point
is the classical codec rate-controlled to that point's achieved kbps on the same frames, size
and fps. A sweep runs over one or more sources; every (source, rank, interval) point is one
unit of work (`PointJob`) whose results are stored beside its stream once finished, so a
re-run skips it. The local job below runs the points one after another; runs/distributed.py
runs the same units on Ray workers. Both are iterators of plain records, like the engines.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promptlab.engine import records
from promptlab.engine.encoder import encode
from promptlab.errors import Cancelled, PromptlabError
from promptlab.io.atomic import write_bytes_atomic
from promptlab.io.video import IMAGE_EXTS, VIDEO_EXTS, read_frames
from promptlab.metrics.bdrate import bd_rate
from promptlab.metrics.frame import SEVERE_LPIPS
from promptlab.runs.results import result_key
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
    source: str = ""         # the source's name in a sweep (SweepSource.name)


@dataclass
class SweepDone:
    points: list[SweepPoint]
    bd_rate_psnr: float | None
    bd_rate_lpips: float | None
    baseline: str | None
    per_source: dict[str, SweepDone] = field(default_factory=dict)  # several sources: each one's own summary


@dataclass(frozen=True)
class SweepSource:
    """One clip of a sweep: `name` (unique in the sweep) labels its points, tables and stream folder."""

    name: str
    path: str
    fps: float | None = None  # the clip's own frame rate (None: the sweep's settings')


@dataclass(frozen=True)
class PointJob:
    """One (source, rank, interval) point and where its stream and its finished record live."""

    source: SweepSource
    rank: int
    interval: int
    folder: Path

    @property
    def stream(self) -> Path:
        return self.folder / f"promptlab-r{self.rank}-k{self.interval}.plab"

    @property
    def record(self) -> Path:
        """The finished point (its promptlab and baseline rows, with what they were computed from)."""
        return self.stream.with_suffix(".json")

    def settings(self, base: Settings) -> Settings:
        return base.replace(rank=self.rank, interval=self.interval, fps=self.source.fps or base.fps)


def expand_sources(specs: list[str]) -> list[SweepSource]:
    """Files, folders and globs -> clips. A folder of images is one clip; any other folder holds video clips."""
    paths: list[Path] = []
    for spec in specs:
        matches = [Path(m) for m in sorted(glob.glob(spec))] if any(c in spec for c in "*?[") else [Path(spec)]
        if not matches:
            raise PromptlabError(f"{spec} matches no files")
        for p in matches:
            if not p.exists():
                raise PromptlabError(f"{p} does not exist")
            if p.is_dir() and not any(q.suffix.lower() in IMAGE_EXTS for q in p.iterdir()):
                videos = sorted(q for q in p.iterdir() if q.suffix.lower() in VIDEO_EXTS)
                if not videos:
                    raise PromptlabError(f"{p} holds neither images nor videos ({', '.join(VIDEO_EXTS)})")
                paths += videos
            else:
                paths.append(p)
    out: list[SweepSource] = []
    seen: set[Path] = set()
    for p in paths:
        if p.resolve() in seen:
            continue
        seen.add(p.resolve())
        name, n = p.stem or p.name, 2
        while any(s.name == name for s in out):
            name, n = f"{p.stem}-{n}", n + 1
        out.append(SweepSource(name, str(p)))
    return out


def plan_points(sources: list[SweepSource], ranks: list[int], intervals: list[int], out_dir: Path) -> list[PointJob]:
    """Every point in table order. One source keeps its streams in out_dir, several in out_dir/NAME."""
    jobs = []
    for src in sources:
        folder = out_dir if len(sources) == 1 else out_dir / src.name
        jobs += [PointJob(src, rank, interval, folder) for interval in intervals for rank in ranks]
    return jobs


def point_identity(job: PointJob, base: Settings, frames: FrameRange, baseline: str | None, severe: float,
                   vmaf: bool) -> str:
    """What a finished point was computed from: the stream's settings, weights, source files and frames, the
    baseline and the scoring. A stored point with another identity is computed again."""
    rng = None if frames is None else (frames[0], frames[1])
    return json.dumps([result_key(job.source.path, job.settings(base), rng), baseline, severe, vmaf])


def load_finished(job: PointJob, identity: str) -> list[SweepPoint] | None:
    """The stored rows of a finished point with this identity (its stream still there), else None."""
    try:
        data = json.loads(job.record.read_text())
        if data.get("identity") != identity or not job.stream.is_file():
            return None
        return [SweepPoint(**row) for row in data["points"]]
    except (OSError, ValueError, TypeError, KeyError):
        return None


def save_finished(job: PointJob, identity: str, points: list[SweepPoint]) -> None:
    write_bytes_atomic(job.record, json.dumps({"identity": identity, "points": [asdict(p) for p in points]},
                                              indent=1).encode())


def score(metrics: Any, originals: list[np.ndarray], recon: list[np.ndarray], severe: float) -> dict[str, Any]:
    """The mean quality fields of a SweepPoint."""
    from promptlab.metrics.frame import score as score_frames
    from promptlab.metrics.frame import summarize

    s = summarize(score_frames(metrics, originals, recon), severe=severe)
    mean = s["mean"]
    return {"lpips": mean.get("lpips"), "psnr": mean["psnr"], "ssim": mean["ssim"], "ms_ssim": mean["ms_ssim"],
            "severe_ratio": mean.get("severe_ratio"), "vmaf": mean.get("vmaf")}


def encode_point(job: PointJob, base: Settings, originals: list[np.ndarray], metrics: Any, severe: float, *,
                 frames: FrameRange = None, cancel: Any = None, model: Any = None) -> Generator[Any, None, SweepPoint]:
    """Yield the encode's records; return the promptlab point (`point = yield from encode_point(...)`).

    A partial encode of the point's stream (an interrupted run) resumes; a stale finished stream is replaced."""
    recon: dict[int, np.ndarray] = {}
    done = None
    for rec in encode(job.source.path, job.settings(base), job.stream, frames=frames, cancel=cancel, force=True,
                      model=model):
        if isinstance(rec, records.Frame):
            recon[rec.index] = rec.image
        elif isinstance(rec, records.Done):
            done = rec
        yield rec
    assert done is not None
    q = score(metrics, originals, [recon[i] for i in range(len(originals))], severe)
    return SweepPoint("promptlab", job.rank, job.interval, done.kbps, None, done.total_bytes, path=str(job.stream),
                      extra={"kbps_without_init": done.kbps_without_init, "model": done.extra.get("model")},
                      source=job.source.name, **q)


def baseline_point(job: PointJob, base: Settings, originals: list[np.ndarray], kbps: float, codec: str, metrics: Any,
                   severe: float) -> SweepPoint:
    """The comparison method rate-controlled to `kbps` (the promptlab point's) on the same frames."""
    from promptlab.runs import methods

    b = methods.encode(codec, originals, job.settings(base).fps, kbps)
    bq = score(metrics, originals, b.recon, severe)
    return SweepPoint(codec, None, job.interval, b.kbps, kbps, b.bytes, extra={"within_tolerance": b.converged},
                      source=job.source.name, **bq)


def originals_of(source: SweepSource, base: Settings, frames: FrameRange) -> list[np.ndarray]:
    return list(read_frames(source.path, frames=frames, size=base.size, crop=base.crop))


def run_sweep(sources: list[SweepSource], base: Settings, ranks: list[int], intervals: list[int], out_dir: Path, *,
              frames: FrameRange = None, baseline: str | None = "h265", metrics: Any = None,
              severe: float = SEVERE_LPIPS, cancel: Any = None, force: bool = False) -> Iterator[Any]:
    """Yield engine records of each encode, a SweepPoint per point (stored ones too, `extra['reused']`),
    then SweepDone. Finished points are skipped unless `force`."""
    from promptlab.metrics.frame import FrameMetrics

    metrics = metrics or FrameMetrics()
    vmaf = getattr(metrics, "vmaf", None) is not None
    points: list[SweepPoint] = []
    originals: dict[str, list[np.ndarray]] = {}
    for job in plan_points(sources, ranks, intervals, out_dir):
        ident = point_identity(job, base, frames, baseline, severe, vmaf)
        stored = None if force else load_finished(job, ident)
        if stored is not None:
            for p in stored:
                p.extra["reused"] = True
                points.append(p)
                yield p
            continue
        if job.source.name not in originals:
            originals = {job.source.name: originals_of(job.source, base, frames)}  # one source's frames at a time
        clip = originals[job.source.name]
        job.folder.mkdir(parents=True, exist_ok=True)
        ours = yield from encode_point(job, base, clip, metrics, severe, frames=frames, cancel=cancel)
        found = [ours]
        yield ours
        if baseline:
            if cancel is not None and cancel.is_set():
                raise Cancelled("sweep cancelled")
            theirs = baseline_point(job, base, clip, ours.kbps, baseline, metrics, severe)
            found.append(theirs)
            yield theirs
        save_finished(job, ident, found)
        points += found
    yield summarize_sweep(points, baseline)


def summarize_sweep(points: list[SweepPoint], baseline: str | None) -> SweepDone:
    """BD-rates of promptlab against the baseline; with several sources, per source (the top level: their mean)."""
    names = list(dict.fromkeys(p.source for p in points))
    if len(names) > 1:
        per = {n: summarize_sweep([p for p in points if p.source == n], baseline) for n in names}

        def mean(vals: list[float | None]) -> float | None:
            ok = [v for v in vals if v is not None]
            return sum(ok) / len(ok) if ok else None

        return SweepDone(points, mean([d.bd_rate_psnr for d in per.values()]),
                         mean([d.bd_rate_lpips for d in per.values()]), baseline, per)
    ours = [p for p in points if p.method == "promptlab"]
    theirs = [p for p in points if p.method == baseline]
    bd_psnr = bd_rate([p.kbps for p in theirs], [p.psnr for p in theirs],
                      [p.kbps for p in ours], [p.psnr for p in ours]) if theirs else None
    bd_lpips = None
    if theirs and all(p.lpips is not None for p in ours + theirs):
        bd_lpips = bd_rate([p.kbps for p in theirs], [-p.lpips for p in theirs],  # type: ignore[operator]
                           [p.kbps for p in ours], [-p.lpips for p in ours])      # type: ignore[operator]
    return SweepDone(points, bd_psnr, bd_lpips, baseline)
