"""One process, one model, the same inputs and dtype on both sides of every ratio.

Load on a shared machine affects both sides equally because repetitions are interleaved
(A B A B …) and medians are taken. Ratios:

* generation: frames/s of our generator per cache policy (one segment of `frames` frames, factor
  interpolation, one batch) against the diffusers StableDiffusionPipeline called per frame with
  the same UNet, latent decoder, latents and prompt embeddings (bench/diffusers_ref.py);
  `speedup_vs_diffusers` uses the lossless policy, `speedup_vs_diffusers_by_policy` has all;
* lossless cache: none vs lossless time, the max |image difference|, and
  `lossless_cache_flop_speedup`, what the cache would gain if time followed FLOPs: (UNet + decoder
  FLOPs) / (the same less what lossless skips), from FLOP counts on fake tensors;
* inversion: seconds per frame visit of the batched fit against the reference sequential loop
  (one Adam step per frame visit) on the same segment, targets, start and loss, and the time each
  takes to reach the reference's best loss (the batched fit runs until it gets there, or has
  used 3× the reference's time);
* peak RSS (resource.getrusage) of the whole process.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from promptlab.codec.prompt import TOKENS
from promptlab.codec.schedule import segments
from promptlab.engine.cache import POLICIES, CacheControl, UnetCache, count_flops, factors_for
from promptlab.engine.generator import fixed_noise, forward, segment_contexts
from promptlab.engine.inverter import fit_segment
from promptlab.engine.losses import make_loss
from promptlab.models.base import Model
from promptlab.settings import Settings


def machine() -> dict[str, Any]:
    import diffusers

    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "python": platform.python_version()}
    try:
        info["loadavg_1m"] = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _sync(model: Model) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize()


def _timed(model: Model, fn: Any) -> tuple[float, Any]:
    _sync(model)
    t0 = time.perf_counter()
    out = fn()
    _sync(model)
    return time.perf_counter() - t0, out


def segment_inputs(model: Model, size: int, frames: int, rank: int = 8, seed: int = 0):
    """A later segment of `frames` frames with random factors (factor interpolation) and its z."""
    seg = segments(frames + 1, frames)[1]
    g = torch.Generator().manual_seed(seed)
    prev = (torch.rand(77, rank, generator=g), torch.rand(rank, model.context_dim, generator=g))
    cur = (torch.rand(77, rank, generator=g), torch.rand(rank, model.context_dim, generator=g))
    dev = model.device
    prev, cur = (prev[0].to(dev), prev[1].to(dev)), (cur[0].to(dev), cur[1].to(dev))
    ctx = segment_contexts(seg, cur, prev, "factors")
    f = factors_for(seg.index, cur, prev, seg.alphas().to(dev), "factors")
    z = fixed_noise(seed + 88, (1, model.latent_channels, size // 8, size // 8))
    return seg, prev, ctx, f, z


def bench_generation(model: Model, size: int, frames: int, reps: int, threshold: float,
                     compile_: bool = False) -> dict[str, Any]:
    """Generation speed per policy against the diffusers pipeline; `compile_` adds torch.compile'd sides.

    The compiled sides run on a compiled copy of the same weights, so the diffusers side and the
    eager policies keep running eager code.
    """
    from promptlab.bench.diffusers_ref import build_pipeline, eps_parameterisation, pipeline_frame
    from promptlab.engine.runtime import compiled

    _, _, ctx, f, z = segment_inputs(model, size, frames)
    pipe = build_pipeline(model)
    control = CacheControl("none", threshold)
    sides: dict[str, tuple[Model, str]] = {p: (model, p) for p in POLICIES}
    compile_seconds = None
    with torch.no_grad():
        cache = UnetCache(model, control)
        ccontrol, ccache = control, cache
        if compile_:
            cm = compiled(model, copy=True)
            ccontrol = CacheControl("none", threshold)
            ccache = UnetCache(cm, ccontrol)
            for p in ("none", "lossless"):
                sides[f"{p}+compile"] = (cm, p)

        def ours(name: str) -> torch.Tensor:
            m, policy = sides[name]
            (ccontrol if m is not model else control).set(policy)
            return forward(m, z, ctx, factors=f, cache=ccache if m is not model else cache)[1]

        def theirs() -> torch.Tensor:
            with eps_parameterisation(model):
                return torch.cat([pipeline_frame(pipe, model, z, ctx[i:i + 1], size) for i in range(frames)])

        names = ["diffusers", *sides]
        times: dict[str, list[float]] = {n: [] for n in names}
        images: dict[str, torch.Tensor] = {}
        reused: dict[str, float] = {}
        t0 = time.perf_counter()
        for n in sides:  # warm-up (and, for the compiled sides, compilation)
            ours(n)
            ours(n)
        if compile_:
            compile_seconds = time.perf_counter() - t0
        theirs()
        for _ in range(reps):  # interleaved: load hits every side alike
            for name in names:
                dt, img = _timed(model, theirs if name == "diffusers" else (lambda n=name: ours(n)))
                times[name].append(dt)
                images[name] = img
                if name != "diffusers":
                    c = ccache if sides[name][0] is not model else cache
                    reused[name] = float(np.mean(c.reused()))
                    if name == "lossless":
                        unet_flops = c.costs()[0]
    med = {k: statistics.median(v) for k, v in times.items()}
    x0 = torch.zeros(1, model.latent_channels, size // model.latent_factor, size // model.latent_factor,
                     dtype=model.dtype, device=model.device)
    decoder_flops = count_flops(lambda: model.decode(x0))
    ours01 = {p: ((images[p] + 1) / 2).clamp(0, 1) for p in sides}
    out = {
        "frames_per_s": {k: frames / v for k, v in med.items()},
        "seconds_per_frame": {k: v / frames for k, v in med.items()},
        "speedup_vs_diffusers": med["diffusers"] / med["lossless"],
        "speedup_vs_diffusers_by_policy": {p: med["diffusers"] / med[p] for p in sides},
        "diffusers_max_abs_diff": {p: float((ours01[p] - images["diffusers"]).abs().max()) for p in sides},
        "lossless_cache_speedup": med["none"] / med["lossless"],
        "lossless_cache_max_abs_diff": float((images["lossless"] - images["none"]).abs().max()),
        "lossless_cache_flop_speedup": lossless_flop_speedup(unet_flops, decoder_flops, reused["lossless"]),
        "flops_per_frame": {"unet": unet_flops, "decoder": decoder_flops},
        "lossy_cache_speedup": med["none"] / med["lossy"],
        "lossy_cache_max_abs_diff": float((images["lossy"] - images["none"]).abs().max()),
        "lossy_threshold": threshold,
        "reused_flops_fraction": reused,
        "raw_seconds": times,
    }
    if compile_:
        out["compile_seconds"] = compile_seconds
        out["speedup_vs_diffusers_compiled"] = med["diffusers"] / med["lossless+compile"]
        out["compile_speedup"] = med["lossless"] / med["lossless+compile"]
    return out


def lossless_flop_speedup(unet_flops: float, decoder_flops: float, reused: float) -> float:
    """What an exact cache gains if time follows FLOPs: (UNet + decoder) / what is left of them.

    The decoder runs for every frame under every policy, so the UNet FLOPs a lossless cache skips
    (`reused` of them) are diluted by it; `lossless_cache_speedup` is read against this (measured
    time can beat it a little: the skipped layers run at the highest resolution, where a FLOP costs more).
    """
    total = unet_flops + decoder_flops
    left = total - reused * unet_flops
    return total / left if left > 0 else float("inf")


def _fit_run(model: Model, seg: Any, targets: torch.Tensor, z: torch.Tensor, prev: Any, settings: Settings,
             loss: Any, frames: int, stop_at: float | None = None, max_seconds: float = math.inf) -> dict[str, Any]:
    """One fit: (seconds, best loss) after every iteration, frame visits; stops at `stop_at` or `max_seconds`."""
    stamps: list[tuple[float, float]] = []
    visits = 0
    t0 = time.perf_counter()
    for rec in fit_segment(model, seg, targets, z, prev, settings, loss):
        _sync(model)
        stamps.append((time.perf_counter() - t0, rec.best_loss))
        visits += frames if settings.batched else frames + (2 if settings.dynamic and rec.iteration > 1 else 0)
        if (stop_at is not None and rec.best_loss <= stop_at) or stamps[-1][0] > max_seconds:
            break
    return {"seconds": time.perf_counter() - t0, "visits": visits, "stamps": stamps}


def bench_inversion(model: Model, size: int, frames: int, reps: int, iters: int) -> dict[str, Any]:
    """Batched fit vs the reference sequential loop on one interpolated segment (same start, loss, lr).

    Each repetition runs the reference for `iters` passes; its best loss is the target. The
    batched fit then runs until it reaches that loss or has used 3× the reference's time (so
    "time to target" can come out worse, or never). Per-visit cost is each run's seconds /
    frame visits.
    """
    seg, prev, _, _, z = segment_inputs(model, size, frames)
    g = torch.Generator().manual_seed(7)
    targets = torch.rand(frames, 3, size, size, generator=g) * 2 - 1
    base = Settings(model=model.name if model.name != "sd-turbo" else "tiny", size=size, rank=8,
                    interval=frames, iters=iters, perceptual="none", patience=10**6)
    loss = make_loss(base, model.device)
    runs: dict[str, list[dict[str, Any]]] = {"reference": [], "batched": []}
    targets_reached: list[float] = []
    for _ in range(reps):  # interleaved: load hits both sides alike
        ref = _fit_run(model, seg, targets, z, prev, base.replace(batched=False), loss, frames)
        target = min(b for _, b in ref["stamps"])
        bat = _fit_run(model, seg, targets, z, prev, base.replace(batched=True, iters=10**6), loss, frames,
                       stop_at=target, max_seconds=3 * ref["seconds"])
        runs["reference"].append(ref)
        runs["batched"].append(bat)
        targets_reached.append(target)

    def reach(r: dict[str, Any], target: float) -> float | None:
        return next((t for t, b in r["stamps"] if b <= target), None)

    per_visit = {k: statistics.median(r["seconds"] / r["visits"] for r in v) for k, v in runs.items()}
    reached = {k: [reach(r, t) for r, t in zip(v, targets_reached)] for k, v in runs.items()}
    ttt = {k: (statistics.median(x) if all(x_ is not None for x_ in x) else None) for k, x in reached.items()}
    return {
        "seconds_per_frame_visit": per_visit,
        "inversion_speedup_vs_reference": per_visit["reference"] / per_visit["batched"],
        "target_loss": statistics.median(targets_reached),
        "seconds_to_target": ttt,
        "time_to_target_ratio": (ttt["reference"] / ttt["batched"]) if ttt["batched"] and ttt["reference"] else None,
        "final_best_loss": {k: statistics.median(min(b for _, b in r["stamps"]) for r in v) for k, v in runs.items()},
        "iterations": {k: statistics.median(len(r["stamps"]) for r in v) for k, v in runs.items()},
        "frame_visits": {k: statistics.median(r["visits"] for r in v) for k, v in runs.items()},
    }


def bench_preview(model: Model, size: int, frames: int, rank: int = 8, interval: int = 10,
                  reps: int = 3) -> dict[str, Any]:
    """A slider's preview path on a stream of `frames` frames: transcode to half the rank, then the
    receiver's decode, no optimiser step (codec/transcode + engine/decoder.decode, as runs/preview). Medians of
    `reps`: transcode ms, ms to the first frame and to the last after the slider's release. The
    factors are random (the path's cost does not depend on what they hold)."""
    from promptlab.codec.container import KeyframeRecord, StreamHeader, read_stream, stream_bytes
    from promptlab.codec.quant import qparams, quantize
    from promptlab.codec.shapes import ModelShape
    from promptlab.codec.transcode import transcode
    from promptlab.engine.decoder import decode
    from promptlab.engine.records import Frame
    from promptlab.settings import Settings

    g = torch.Generator().manual_seed(0)
    settings = Settings(model=model.name, size=size, rank=rank, interval=interval)
    shape = ModelShape(model.context_dim, model.latent_channels, model.latent_factor)
    header = StreamHeader.from_settings(settings, frames, shape)
    recs = []
    for _ in range(header.n_keyframes):
        u, v = torch.randn(TOKENS, rank, generator=g), torch.randn(rank, model.context_dim, generator=g)
        up, vp = qparams(float(u.min()), float(u.max()), 8), qparams(float(v.min()), float(v.max()), 8)
        recs.append(KeyframeRecord(quantize(u, up), quantize(v, vp), up, vp))
    fitted = read_stream(stream_bytes(header, torch.randn(header.latent_shape, generator=g) * 0.5, recs))
    lower = settings.replace(rank=max(1, rank // 2))
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        derived = read_stream(transcode(fitted, lower.rank).data)  # what runs/preview.derive does for a rank
        t1 = time.perf_counter()
        first = None
        for rec in decode(derived, model=model):
            if isinstance(rec, Frame) and first is None:
                _sync(model)
                first = time.perf_counter()
        _sync(model)
        t2 = time.perf_counter()
        runs.append(((t1 - t0) * 1000, ((first or t2) - t0) * 1000, (t2 - t0) * 1000))
    med = [statistics.median(r[i] for r in runs) for i in range(3)]
    return {"frames": frames, "rank": rank, "preview_rank": lower.rank, "interval": interval,
            "transcode_ms": med[0], "first_frame_ms": med[1], "all_frames_ms": med[2],
            "ms_per_frame": med[2] / frames}


def run_bench(model: str | Model = "tiny", size: int = 128, frames: int = 10, reps: int = 3,
              inv_iters: int = 10, inv_reps: int = 1, threshold: float = 0.05, device: str = "cpu",
              dtype: str = "fp32", threads: int = 0, channels_last: bool = False,
              compile_: bool = False) -> dict[str, Any]:
    """Every measurement of the bench in one dict (see module doc)."""
    from promptlab.device import set_threads
    from promptlab.engine.runtime import channels_last as to_channels_last
    from promptlab.models.registry import load_model

    set_threads(threads)
    m = model if isinstance(model, Model) else load_model(model, device, dtype)
    if channels_last:
        to_channels_last(m)  # the bench owns its model: both sides of every ratio get the format
    t0 = time.perf_counter()
    gen = bench_generation(m, size, frames, reps, threshold, compile_)
    inv = bench_inversion(m, size, frames, inv_reps, inv_iters)
    prev = bench_preview(m, size, frames, reps=reps)
    return {
        "model": m.label, "size": size, "frames": frames, "reps": reps, "dtype": str(m.dtype).replace("torch.", ""),
        "device": str(m.device), "channels_last": channels_last, "compile": compile_, "machine": machine(),
        **{k: gen[k] for k in ("speedup_vs_diffusers", "lossless_cache_speedup", "lossless_cache_max_abs_diff")},
        "inversion_speedup_vs_reference": inv["inversion_speedup_vs_reference"],
        "generation": gen, "inversion": inv, "preview": prev,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "bench_seconds": time.perf_counter() - t0,
    }


def answer_times(run: Callable[[], Iterable[Any]], is_frame: Callable[[Any], bool], reps: int = 3,
                 clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """What a user waits for after Run, the median of `reps` fresh runs: seconds to the first
    reconstructed frame (a record `is_frame` accepts, a first answer included) and to the last
    record (the full result). The median, not the best: one quiet moment is not the speed."""
    runs: list[tuple[float, float]] = []
    for _ in range(reps):
        t0, first = clock(), None
        for rec in run():
            if first is None and is_frame(rec):
                first = clock() - t0
        full = clock() - t0
        runs.append((full if first is None else first, full))
    return {"first_frame_s": statistics.median(r[0] for r in runs), "full_s": statistics.median(r[1] for r in runs),
            "runs": [{"first_frame_s": a, "full_s": b} for a, b in runs]}
