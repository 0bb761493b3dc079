"""The lab's run: encode (unless the stream is cached) → decode → score every frame → baseline.

One Qt-free generator of typed records (runs/records.py) that the GUI's job process, the
`promptlab run` command and the tests iterate alike. Each frame is scored as it is generated,
so plots fill frame by frame. Finished runs go to the results cache (runs/results.py), named
by what produced them, so unchanged settings are never recomputed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from promptlab.device import set_threads
from promptlab.engine import records as engine_records
from promptlab.errors import Cancelled
from promptlab.runs.eta import DECODE_FRAME, DRAFT_FRAME, ENCODE_FRAME, ITERATION, Clock, Eta
from promptlab.runs.records import (
    PROMPTLAB,
    Encoded,
    FrameResult,
    KeyframeFitted,
    Progress,
    Record,
    Reused,
    Saved,
    Scoring,
    Stage,
    Summary,
)
from promptlab.runs.results import Result, ResultsCache
from promptlab.settings import ENCODE_KEYS, Settings

ENCODE_SHARE = 0.8  # of the progress bar, when the run encodes (the fit dominates the time)


@dataclass
class RunSpec:
    """What one run does. Plain data: it crosses the GUI's process boundary by pickling."""

    settings: Settings
    source: str | None = None                 # video or image folder (None for a bare .plab)
    frames: tuple[int, int] | None = None     # [A, B) of `source`; of `stream` when there is no source
    stream: str | None = None                 # decode this .plab instead of encoding
    key: str | None = None                    # results-cache name (default: result_key of the source)
    baseline: str | None = None               # "h265" | "h264": also this codec at the achieved rate
    baseline_gop: int = 0                     # the baseline in closed GOPs of this many frames (0: its own)
    lpips_net: str = "alex"
    maps: bool = False                        # LPIPS spatial maps per frame (the GUI's difference view)
    vmaf: bool = False                        # also VMAF per frame (needs the vmaf extra)
    cache_root: str | None = None             # results cache folder (default: the user's cache)
    first_answer: bool = True                 # show each segment from the prompt encoder's guess before its fit

    def __post_init__(self) -> None:
        if self.key is None and self.source and not self.stream:
            from promptlab.runs.results import result_key

            self.key = result_key(self.source, self.settings, self.frames)


def check_cancel(cancel: Any) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled by the user")


class Scorer:
    """Scores reconstructions against the originals read once for the run; one home for the metrics."""

    def __init__(self, originals: list[np.ndarray] | None, lpips_net: str, maps: bool, vmaf: bool = False) -> None:
        self.originals, self.maps, self.metrics = originals, maps, None
        if originals is None:
            self.status = Scoring(measured=False, lpips_available=False,
                                  message="not measured: no original to compare with (a .plab opened without its source)")
            return
        from promptlab.metrics import FrameMetrics, lpips_status

        ok, why = lpips_status(lpips_net)
        self.metrics = FrameMetrics(lpips_net=lpips_net, device="cpu", need_lpips=bool(ok), vmaf=vmaf)
        self.status = Scoring(measured=True, lpips_available=bool(ok),
                              message="" if ok else f"LPIPS unavailable: run promptlab fetch-weights lpips ({why})")

    def frame(self, stage: str, index: int, image: np.ndarray, **numbers: Any) -> FrameResult:
        rec = FrameResult(index=index, stage=stage, image=image, **numbers)
        if self.metrics is not None and index < len(self.originals):
            o = self.originals
            m = self.metrics.compute_batch([o[index]], [image], maps=self.maps, prev_ref=o[index - 1] if index else None,
                                           next_ref=o[index + 1] if index + 1 < len(o) else None)[0]
            rec.lpips, rec.psnr, rec.ssim, rec.ms_ssim = m["lpips"], m["psnr"], m["ssim"], m["ms_ssim"]
            rec.vmaf = m["vmaf"]
            rec.lpips_map = m.get("lpips_map")
        return rec


def summarize(method: str, rows: list[FrameResult], total_bytes: int, kbps: float, **extra: Any) -> Summary:
    """Means over the frames (None where not measured) and the severe-frame count, by metrics.summarize."""
    from promptlab.metrics import summarize as stats

    s = stats([r.row() for r in rows])
    mean = s["mean"]
    gen = [r.gen_ms for r in rows if r.gen_ms is not None]
    return Summary(method=method, n_frames=len(rows), total_bytes=int(total_bytes), kbps=float(kbps),
                   lpips=mean["lpips"], psnr=mean["psnr"], ssim=mean["ssim"], ms_ssim=mean["ms_ssim"], vmaf=mean["vmaf"],
                   severe_frames=s["severe_count"], gen_ms=float(np.mean(gen)) if gen else None, extra=extra)


def run_lab(spec: RunSpec, cancel: Any = None, cache_control: Any = None,
            clock: Clock = time.perf_counter) -> Iterator[Record]:
    """Yield the run's records; the last is Summary (and Saved / the baseline's Summary after it).

    `cache_control`: the decoder's generation cache (an engine CacheControl the caller may switch
    while decoding); default: the settings' policy. `clock`: seconds, for `Progress.eta_s`
    (runs/eta.py; tests pass a fake one).
    """
    eta = Eta(clock)
    set_threads(spec.settings.threads)  # the decode of a stored stream too, not only the encode
    cache = ResultsCache(spec.cache_root)
    stored = cache.load(spec.key) if spec.key and cache.has(spec.key, baseline=bool(spec.baseline)) else None
    if stored is not None and reusable(stored, spec.settings, vmaf=spec.vmaf):
        yield from replay(stored)
        return
    originals = _originals(spec)
    scorer = Scorer(originals, spec.lpips_net, spec.maps, spec.vmaf)
    yield scorer.status
    if spec.stream:
        stream, share = Path(spec.stream), 0.0
    else:
        stream = cache.path(spec.key) / "stream.plab"
        share = 0.0 if stream.is_file() else ENCODE_SHARE
        if share:
            yield from _encode(spec, cache, stream, scorer, cancel, eta)
    rows, recon, summary = yield from _decode(spec, stream, scorer, cancel, share, cache_control, eta)
    yield summary
    check_cancel(cancel)
    if spec.key:
        cache.save(spec.key, [r.row() for r in rows], summary.to_dict(), recon)
        yield Saved(key=spec.key, path=str(cache.path(spec.key)))
    if spec.baseline and originals is not None and summary.kbps:
        yield from _baseline(spec, cache, scorer, summary.kbps, cancel)


def reusable(res: Result, settings: Settings, vmaf: bool = False) -> bool:
    """A stored result stands for a new run only if nothing it reports would differ.

    Its generation times hold for the cache policy they were measured with; a result measured
    without LPIPS is redone once LPIPS weights exist, one without VMAF when VMAF is asked for; a result stored by an older layout is
    redone (its stream is reused, so that costs a decode, not an encode).
    """
    from promptlab.metrics import lpips_status

    extra = res.summary.get("extra")
    if "method" not in res.summary or not isinstance(extra, dict):
        return False
    if extra.get("cache") != cache_label(settings.cache, settings.cache_threshold):
        return False
    if vmaf and extra.get("measured", True) and res.summary.get("vmaf") is None:
        return False
    return bool(extra.get("lpips_available")) or not extra.get("measured", True) or not lpips_status("alex")[0]


def replay(res: Result) -> Iterator[Record]:
    """A stored result as the records a live run yielded (LPIPS maps are not stored)."""
    yield Reused(key=res.key, path=str(res.path))
    s = Summary(**res.summary)
    ex = s.extra
    yield Scoring(measured=ex.get("measured", True), lpips_available=ex.get("lpips_available", False),
                  message=ex.get("lpips_message", ""))
    for row, img in zip(res.frames, res.recon, strict=False):
        yield FrameResult(**row, image=img)
    yield s
    if res.baseline is not None:
        for row, img in zip(res.baseline_frames, res.baseline, strict=False):
            yield FrameResult(**row, image=img)
        yield Summary(**res.baseline_summary)


def _clip(spec: RunSpec) -> str | None:
    """Which frames the run scored (the RD view gathers the runs of one clip); None for a bare stream."""
    from promptlab.runs.rd import clip_id

    return clip_id(spec.source, spec.settings, spec.frames) if spec.source else None


def _originals(spec: RunSpec) -> list[np.ndarray] | None:
    if not spec.source:
        return None
    from promptlab.io.video import read_frames

    s = spec.settings
    return list(read_frames(spec.source, frames=spec.frames, size=s.size, crop=s.crop))


def _encode(spec: RunSpec, cache: ResultsCache, stream: Path, scorer: Scorer, cancel: Any, eta: Eta) -> Iterator[Record]:
    """Fit prompts; the encoder's own reconstructions are scored and shown as they come.

    The ETA counts what is left: iterations of the budgets (an early stop only shortens it), the
    encoder's frames, and the receiver's decode of every frame.
    """
    from promptlab.engine.encoder import encode

    s = spec.settings
    work = cache.work_stream(stream.parent.name)
    work.parent.mkdir(parents=True, exist_ok=True)
    yield Stage("encode", "fitting prompts (inversion)")
    budgets: list[int] = []
    done = cur = last_it = n_frames = encoded = drafted = 0  # drafts come first, so once seen they are counted

    def left() -> float | None:
        return eta.remaining(**{ITERATION: sum(budgets) - cur, ENCODE_FRAME: n_frames - encoded,
                                DRAFT_FRAME: n_frames - drafted if drafted else 0, DECODE_FRAME: n_frames})

    for rec in encode(spec.source, s, work, frames=spec.frames, cancel=cancel, resume=True,
                      first_answer=spec.first_answer):
        if isinstance(rec, engine_records.Started):
            budgets = [s.first_iters] + [s.iters] * max(0, rec.n_keyframes - 1)
            done = cur = sum(budgets[: rec.resumed_keyframes])
            n_frames = rec.n_frames
            eta.restart()  # loading the model and the clip is not the run's per-unit work
            yield rec
        elif isinstance(rec, engine_records.Iteration):
            it = min(rec.iteration, rec.iterations)
            eta.charge(ITERATION, it - last_it if it > last_it else it)
            last_it, cur = it, done + it
            yield Progress(ENCODE_SHARE * cur / max(1, sum(budgets)),
                           f"keyframe {rec.keyframe + 1}/{len(budgets)} iteration {rec.iteration}/{rec.iterations}"
                           f"  loss {rec.loss:.4f}", eta_s=left())
        elif isinstance(rec, engine_records.KeyframeDone):
            eta.charge(ITERATION, 0)  # writing the record: not a unit of anything
            done = cur = sum(budgets[: rec.keyframe + 1])
            last_it = 0
            yield KeyframeFitted(rec.keyframe, list(rec.frames), rec.record_bytes, rec.loss)
            yield Progress(ENCODE_SHARE * done / max(1, sum(budgets)), f"keyframe {rec.keyframe + 1}/{len(budgets)} done",
                           eta_s=left())
        elif isinstance(rec, engine_records.Frame):
            row = scorer.frame("encode", rec.index, rec.image, bytes=float(rec.bytes), gen_ms=float(rec.gen_ms),
                               keyframe=rec.keyframe, reused=float(rec.reused), draft=rec.draft)
            if rec.draft:
                drafted += 1
                eta.charge(DRAFT_FRAME)
            else:
                encoded += 1
                eta.charge(ENCODE_FRAME)
            yield row
        elif isinstance(rec, engine_records.Done):
            yield Encoded(rec.total_bytes, rec.kbps, rec.kbps_without_init, rec.elapsed)
    stream.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(work), str(stream))


def cache_label(policy: str, threshold: float) -> str:
    """How generation times were measured: the cache policy (and the lossy threshold)."""
    return f"lossy {threshold:g}" if policy == "lossy" else policy


def _decode(spec: RunSpec, stream: Path, scorer: Scorer, cancel: Any, share: float, control: Any, eta: Eta):
    """Generate every frame as the receiver does and score it; returns (rows, recon, summary)."""
    from promptlab.engine.cache import CacheControl
    from promptlab.engine.decoder import decode

    s = spec.settings
    control = control or CacheControl(s.cache, s.cache_threshold)
    # a bare stream's range is read from the GOP holding its start (the container's GOP index)
    span = spec.frames if spec.stream and not spec.source else None
    first = span[0] if span else 0
    yield Stage("decode", "generating frames (receiver) and measuring them")
    rows: list[FrameResult] = []
    images: list[np.ndarray] = []
    policies: list[str] = []             # as they were switched during the decode, in order
    started: engine_records.Started | None = None
    done: engine_records.Done | None = None
    n = 1
    for rec in decode(stream, device=s.device, cancel=cancel, cache=control, frames=span):
        if isinstance(rec, engine_records.Started):
            started = rec
            n = max(1, rec.n_frames)
            eta.restart()
            yield rec
        elif isinstance(rec, engine_records.Frame):
            label = cache_label(control.policy, control.threshold)
            if not policies or policies[-1] != label:
                policies.append(label)
            row = scorer.frame("decode", rec.index - first, rec.image, bytes=float(rec.bytes), gen_ms=float(rec.gen_ms),
                               keyframe=rec.keyframe, reused=float(rec.reused))
            rows.append(row)
            images.append(rec.image)
            eta.charge(DECODE_FRAME)
            yield row
            yield Progress(share + (1 - share) * len(rows) / n, f"frame {len(rows)}/{n}",
                           eta_s=eta.remaining(**{DECODE_FRAME: n - len(rows)}))
        elif isinstance(rec, engine_records.Done):
            done = rec
        check_cancel(cancel)
    assert started is not None and done is not None
    status = scorer.status
    summary = summarize(PROMPTLAB, rows, done.total_bytes, done.kbps, kbps_without_init=done.kbps_without_init,
                        decode_s=done.elapsed, model=started.model, header_bytes=started.header_bytes,
                        init_bytes=started.init_bytes, width=started.width, height=started.height,
                        fps=started.fps, cache=" then ".join(policies), measured=status.measured,
                        lpips_available=status.lpips_available, lpips_message=status.message,
                        clip=_clip(spec), encode={k: getattr(s, k) for k in ENCODE_KEYS})
    recon = np.stack(images) if images else np.zeros((0, 1, 1, 3), np.uint8)
    return rows, recon, summary


def _baseline(spec: RunSpec, cache: ResultsCache, scorer: Scorer, kbps: float, cancel: Any) -> Iterator[Record]:
    """The comparison method at the bitrate promptlab achieved, every byte counted, scored the same way."""
    from promptlab.runs import methods

    codec = spec.baseline or "h265"
    yield Stage("baseline", f"{methods.get(codec).label} at {kbps:.1f} kbps")
    t0 = time.perf_counter()
    res = methods.encode(codec, scorer.originals, spec.settings.fps, kbps,
                         options=methods.Options(gop=spec.baseline_gop))
    rows = []
    for i, img in enumerate(res.recon):
        check_cancel(cancel)
        row = scorer.frame("baseline", i, np.asarray(img), bytes=float(res.frame_bytes[i]))
        rows.append(row)
        yield row
    summary = summarize(codec, rows, res.bytes, res.kbps, target_kbps=res.target_kbps,
                        within_tolerance=res.converged, note=res.note, elapsed=time.perf_counter() - t0,
                        gop=spec.baseline_gop)
    if spec.key:
        cache.save_baseline(spec.key, [r.row() for r in rows], summary.to_dict(), np.stack(res.recon))
    yield summary
