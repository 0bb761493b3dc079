"""The lab's model jobs, run in a child process so torch never holds the window's GIL.

Qt-free on purpose: `run_job` is a plain top-level function that a "spawn" process imports
and runs. It iterates the engines (encode, decode, metrics, baseline) and turns their records
into small picklable messages `(kind, payload)` on a queue; the window drains the queue on a
timer. Cancel is an `mp.Event` handed to the engines as their `cancel` check. The job dies
with the window (`die_with_parent`): a window that crashes or is killed leaves no worker behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promptlab.errors import Cancelled, PromptlabError
from promptlab.runs.results import ResultsCache
from promptlab.settings import CACHE_POLICIES, SEVERE_LPIPS

Message = tuple[str, dict[str, Any]]
DEFAULT_PIPELINE = "promptlab.gui.jobs:pipeline"
PR_SET_PDEATHSIG = 1            # linux/prctl.h
PARENT_GONE_EXIT = 75           # exit status of a job whose window went away
PARENT_POLL_S = 0.5


@dataclass
class JobSpec:
    """What one job does. Plain data: it crosses the process boundary by pickling."""

    kind: str                                 # "run" (encode+decode+metrics) | "decode" (.plab)
    key: str                                  # result name (results.result_key)
    settings: dict[str, Any]                  # Settings.to_dict()
    source: str | None = None                 # video or image folder (None for a bare .plab)
    frames: tuple[int, int] | None = None
    stream: str | None = None                 # .plab to decode (kind "decode")
    baseline: bool = False                    # also H.265 at the achieved bitrate
    lpips_net: str = "alex"
    cache_root: str | None = None
    threads: int = 0                          # torch threads; 0: the CLI's default (same bytes as the CLI)
    pipeline: str = DEFAULT_PIPELINE          # "module:function" yielding messages
    extra: dict[str, Any] = field(default_factory=dict)


_LIVE_CACHE: Any = None  # the window's shared (policy, threshold), set in the job process


def shared_cache_values(ctx: Any, policy: str, threshold: float) -> tuple[Any, Any]:
    """Shared-memory policy index and threshold that the window writes and the job reads."""
    return ctx.Value("i", CACHE_POLICIES.index(policy)), ctx.Value("d", float(threshold))


def cache_label(policy: str, threshold: float) -> str:
    """How a result's generation times were measured: the cache policy (and lossy threshold)."""
    return f"lossy {threshold:g}" if policy == "lossy" else policy


def live_cache_control(spec: JobSpec) -> Any:
    """The decoder's cache switch: live from the window when it gave one, else the job's settings."""
    from promptlab.engine.cache import CacheControl

    if _LIVE_CACHE is None:
        return CacheControl(spec.settings.get("cache", "none"), spec.settings.get("cache_threshold", 0.05))
    pv, tv = _LIVE_CACHE

    class SharedCacheControl(CacheControl):
        """Reads the window's shared values at every segment, so a change applies to the next one."""

        def __init__(self) -> None:  # noqa: D107 - the state lives in shared memory
            pass

        policy = property(lambda self: CACHE_POLICIES[max(0, min(len(CACHE_POLICIES) - 1, pv.value))])  # type: ignore[assignment]
        threshold = property(lambda self: max(0.0, float(tv.value)))  # type: ignore[assignment]

    return SharedCacheControl()


def die_with_parent(parent_pid: int) -> None:
    """End this process as soon as `parent_pid` (the window) is gone, however it went.

    A window killed by a signal or a fatal error runs no cleanup, and its job would live on
    (often blocked forever writing to a queue no one reads). On Linux the kernel kills us
    (PR_SET_PDEATHSIG); everywhere a daemon thread polls the parent pid, which changes when
    the parent dies and we are re-parented.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError, TypeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before the line above could take effect
        os._exit(PARENT_GONE_EXIT)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(PARENT_GONE_EXIT)

    threading.Thread(target=watch, daemon=True, name="promptlab-parent-watch").start()


def run_job(spec: JobSpec, queue: Any, cancel: Any, live_cache: tuple[Any, Any] | None = None,
            parent_pid: int | None = None) -> None:
    """Child-process entry point: every outcome, including a crash, ends as a message."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    global _LIVE_CACHE
    _LIVE_CACHE = live_cache
    put = queue.put
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the window's to handle: it stops this job
    try:
        with contextlib.suppress(OSError, AttributeError):
            os.nice(5)  # the window, not the model, gets the CPU first
        _limit_threads(spec.threads)
        func = _resolve(spec.pipeline)
        for msg in func(spec, cancel):
            put(msg)
        put(("finished", {}))
    except Cancelled as exc:
        put(("cancelled", {"message": str(exc) or "cancelled"}))
    except PromptlabError as exc:
        put(("error", {"message": str(exc)}))
    except BaseException as exc:  # noqa: BLE001 - the window must see every failure
        put(("error", {"message": f"internal error: {type(exc).__name__}: {exc}",
                       "details": traceback.format_exc()}))


def _threads(threads: int) -> int:
    """The CLI's rule (device.default_threads): a stream's bytes depend on the thread count, so the
    lab and the CLI must agree; the job runs at a lower priority (nice) to keep the window responsive."""
    from promptlab.device import default_threads

    return threads or default_threads()


def _limit_threads(threads: int) -> None:
    from promptlab.device import set_threads

    set_threads(_threads(threads))


def _resolve(path: str) -> Callable[[JobSpec, Any], Iterator[Message]]:
    mod, _, name = path.partition(":")
    return getattr(importlib.import_module(mod), name)


def _check(cancel: Any) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled by the user")


# --------------------------------------------------------------------------- the real pipeline


def pipeline(spec: JobSpec, cancel: Any) -> Iterator[Message]:
    """Encode (unless the stream is cached), decode, measure each frame, optionally the baseline."""
    from promptlab.settings import Settings

    settings = Settings.from_dict(dict(spec.settings))
    if settings.threads == 0:  # the CLI's rule, spelled out (threads is not an encode key)
        settings = settings.replace(threads=_threads(spec.threads))
    cache = ResultsCache(spec.cache_root) if spec.cache_root else ResultsCache()
    originals = _originals(spec, settings)
    metrics, lpips_ok, lpips_msg = _metric(spec, originals is not None)
    measured = originals is not None
    yield ("metric", {"lpips_available": lpips_ok, "lpips_message": lpips_msg, "quality_measured": measured})
    measure = _Measure(metrics, originals, lpips_ok)
    if spec.kind == "decode":
        stream = Path(spec.stream or "")
        weights = (0.0, 1.0)
    else:
        stream = cache.path(spec.key) / "stream.plab"
        if stream.is_file():
            weights = (0.0, 1.0)
        else:
            weights = (0.8, 0.2)
            yield from _encode(spec, settings, cache, stream, cancel, weights[0], measure)
    frames, recon, summary = yield from _decode(spec, stream, measure, cancel, weights)
    summary.update(lpips_available=lpips_ok, lpips_message=lpips_msg, quality_measured=measured)
    _check(cancel)
    if spec.kind == "run":
        cache.save(spec.key, frames, summary, recon)
        yield ("saved", {"key": spec.key, "path": str(cache.path(spec.key))})
    if spec.baseline and originals is not None and summary.get("kbps"):
        yield from _baseline(spec, settings, cache, measure, summary, cancel)


def _originals(spec: JobSpec, settings: Any) -> list[np.ndarray] | None:
    if not spec.source:
        return None
    from promptlab.io.video import read_frames

    return list(read_frames(spec.source, frames=spec.frames, size=settings.size, crop=settings.crop))


def _encode(spec: JobSpec, settings: Any, cache: ResultsCache, stream: Path, cancel: Any,
            weight: float, measure: _Measure) -> Iterator[Message]:
    """Fit prompts; the encoder's own reconstructions are measured and plotted as they come."""
    from promptlab.engine.encoder import encode
    from promptlab.engine.records import Done, Frame, Iteration, KeyframeDone, Started

    work = cache.work_stream(spec.key)
    work.parent.mkdir(parents=True, exist_ok=True)
    yield ("stage", {"stage": "encode", "text": "fitting prompts (inversion)"})
    budgets: list[int] = []
    done_iters = 0
    for rec in encode(spec.source, settings, work, frames=spec.frames, cancel=cancel, resume=True):
        if isinstance(rec, Started):
            budgets = [settings.first_iters] + [settings.iters] * max(0, rec.n_keyframes - 1)
            done_iters = sum(budgets[: rec.resumed_keyframes])
            yield ("started", _started(rec))
        elif isinstance(rec, Iteration):
            cur = done_iters + min(rec.iteration, rec.iterations)
            frac = weight * cur / max(1, sum(budgets))
            yield ("progress", {"fraction": frac, "text": f"keyframe {rec.keyframe + 1}/{len(budgets)}"
                                f" iteration {rec.iteration}/{rec.iterations}  loss {rec.loss:.4f}"})
        elif isinstance(rec, KeyframeDone):
            if rec.keyframe < len(budgets):
                done_iters = sum(budgets[: rec.keyframe + 1])
            yield ("keyframe", {"keyframe": rec.keyframe, "frames": list(rec.frames),
                                "record_bytes": rec.record_bytes, "loss": rec.loss})
            yield ("progress", {"fraction": weight * done_iters / max(1, sum(budgets)),
                                "text": f"keyframe {rec.keyframe + 1}/{len(budgets)} done"})
        elif isinstance(rec, Frame):
            yield ("frame", measure.message(rec, stage="encode"))
        elif isinstance(rec, Done):
            yield ("encoded", {"total_bytes": rec.total_bytes, "kbps": rec.kbps,
                               "kbps_without_init": rec.kbps_without_init, "elapsed": rec.elapsed})
    stream.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(work), str(stream))


def _started(rec: Any) -> dict[str, Any]:
    d = asdict(rec)
    return {k: d[k] for k in ("job", "n_frames", "n_keyframes", "width", "height", "fps", "model",
                              "header_bytes", "init_bytes")}


def _decode(spec: JobSpec, stream: Path, measure: _Measure, cancel: Any, weights: tuple[float, float]):
    """Generate every frame as the receiver does, measure it, and stream both to the window."""
    from promptlab.engine.decoder import decode
    from promptlab.engine.records import Done, Frame, Started

    yield ("stage", {"stage": "decode", "text": "generating frames (receiver) and measuring them"})
    frames: list[dict[str, Any]] = []
    images: list[np.ndarray] = []
    summary: dict[str, Any] = {}
    n = 1
    control = live_cache_control(spec)
    policies: list[str] = []            # as the window switched them, in order
    for rec in decode(stream, device=spec.settings.get("device", "auto"), cancel=cancel, cache=control):
        if isinstance(rec, Started):
            n = max(1, rec.n_frames)
            summary.update(_started(rec))
            yield ("started", _started(rec))
        elif isinstance(rec, Frame):
            label = cache_label(control.policy, control.threshold)
            if not policies or policies[-1] != label:
                policies.append(label)
            msg = measure.message(rec, stage="decode")
            frames.append({k: v for k, v in msg.items() if k not in ("image", "lpips_map")})
            images.append(rec.image)
            yield ("frame", msg)
            yield ("progress", {"fraction": weights[0] + weights[1] * len(frames) / n,
                                "text": f"frame {len(frames)}/{n}"})
        elif isinstance(rec, Done):
            summary.update(total_bytes=rec.total_bytes, kbps=rec.kbps,
                           kbps_without_init=rec.kbps_without_init, decode_s=rec.elapsed)
        _check(cancel)
    summary.update(_means(frames), cache=" then ".join(policies))
    yield ("summary", summary)
    recon = np.stack(images) if images else np.zeros((0, 1, 1, 3), np.uint8)
    return frames, recon, summary


class _Measure:
    """Turns a Frame record into a message: its numbers, its metrics against the original, its image."""

    def __init__(self, metrics: Any, originals: list[np.ndarray] | None, lpips_ok: bool) -> None:
        self.metrics, self.originals, self.lpips_ok = metrics, originals, lpips_ok

    def message(self, rec: Any, stage: str) -> dict[str, Any]:
        row: dict[str, Any] = {"index": rec.index, "bytes": float(rec.bytes), "gen_ms": float(rec.gen_ms),
                               "keyframe": rec.keyframe, "reused": float(rec.reused), "stage": stage}
        lmap = None
        if self.metrics is not None and rec.index < len(self.originals):
            ref = self.originals[rec.index]
            row.update(_measure(self.metrics, ref, rec.image))
            lmap = _lpips_map(self.metrics, ref, rec.image) if self.lpips_ok else None
        return {**row, "image": rec.image, "lpips_map": lmap}


def _metric(spec: JobSpec, have_refs: bool) -> tuple[Any, bool, str]:
    if not have_refs:
        return None, False, "not measured: no original to compare with (a .plab opened without its source)"
    from promptlab.metrics import FrameMetrics, lpips_status

    ok, msg = lpips_status(spec.lpips_net)
    if not ok:
        msg = f"LPIPS unavailable: run promptlab fetch-weights lpips ({msg})"
    return FrameMetrics(lpips_net=spec.lpips_net, device="cpu"), bool(ok), msg


def _measure(metrics: Any, ref: np.ndarray, img: np.ndarray) -> dict[str, Any]:
    m = metrics.compute(ref, img)
    return {k: (None if m.get(k) is None else float(m[k])) for k in ("lpips", "psnr", "ssim", "ms_ssim")}


def _lpips_map(metrics: Any, ref: np.ndarray, img: np.ndarray) -> np.ndarray | None:
    """LPIPS's per-pixel distance (the same loaded weights with spatial=True), as uint8 0..255."""
    model = getattr(metrics, "lpips_model", None)
    if model is None or not hasattr(model, "spatial"):
        return None
    import torch

    from promptlab.metrics.perceptual import to_lpips_tensor

    model.spatial = True
    try:
        with torch.no_grad():
            m = model(to_lpips_tensor(ref), to_lpips_tensor(img))[0, 0].cpu().numpy()
    finally:
        model.spatial = False
    if m.shape != ref.shape[:2]:
        return None
    return (np.clip(m, 0.0, 1.0) * 255).astype(np.uint8)


def _means(frames: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ("lpips", "psnr", "ssim", "ms_ssim", "gen_ms"):
        vals = [f[k] for f in frames if f.get(k) is not None]
        out[f"mean_{k}"] = float(np.mean(vals)) if vals else None
    lp = [f["lpips"] for f in frames if f.get("lpips") is not None]
    out["severe_frames"] = sum(v > SEVERE_LPIPS for v in lp) if lp else None
    return out


def _baseline(spec: JobSpec, settings: Any, cache: ResultsCache, measure: _Measure,
              summary: dict[str, Any], cancel: Any) -> Iterator[Message]:
    """H.265 at the bitrate promptlab achieved, every byte counted, measured the same way."""
    from promptlab.baselines import encode_baseline

    yield ("stage", {"stage": "baseline", "text": f"H.265 at {summary['kbps']:.1f} kbps"})
    t0 = time.perf_counter()
    originals, metrics = measure.originals, measure.metrics  # the same metric as promptlab's frames
    res = encode_baseline(originals, settings.fps, float(summary["kbps"]), codec="h265")
    rows = []
    recon = [np.asarray(f) for f in res.recon]
    for i, img in enumerate(recon):
        _check(cancel)
        row = {"index": i, "bytes": float(res.frame_bytes[i]) if i < len(res.frame_bytes) else 0.0}
        row.update(_measure(metrics, originals[i], img))
        rows.append(row)
        yield ("baseline_frame", {**row, "image": img})
    bsum = {"codec": res.codec, "target_kbps": res.target_kbps, "kbps": res.kbps,
            "bytes": res.bytes, "within_tolerance": res.converged, "note": res.note,
            "elapsed": time.perf_counter() - t0, **_means(rows)}
    cache.save_baseline(spec.key, rows, bsum, np.stack(recon))
    yield ("baseline_summary", bsum)
