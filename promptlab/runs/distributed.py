"""Ray execution: an encode's closed GOPs on worker actors, a sweep's points as Ray tasks.

Why an encode on workers is exact: a closed GOP is coded from its own first frame (its init
latent, a fresh chain, keyframe numbers from 0; codec/schedule.stream_segments), so GOP g's
bytes are those of a one-GOP encode of its frames. An actor (which loads the model once) runs
that encode with the very encoder a serial run uses and returns the GOP's records; the driver
appends them in GOP order (StreamWriter.write_gop) and the GOP index, so the file is
byte-identical to a serial `--gop` encode, whatever torch thread count the worker or the driver
runs (the encoder's numerics run at one fixed count: device.fixed_threads, docs/reliability.md). A sweep's points and their baselines are
independent tasks; each returns its stream's bytes and rows, and the driver stores them.

Faults: an actor that dies is restarted and its call retried, a task that dies is retried on
any node (`RayOptions.retries`); results are keyed by GOP or point, so a retry neither loses
nor duplicates anything. What finished is stored at once (an encode's GOPs in OUT.gops/, a
sweep's points beside their streams), so an interrupted job resumes where it stopped; final
files are written atomically at the end only. Workers read the sources, and write their
partial encodes, at the driver's paths: on a cluster those need a filesystem every node sees.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlab.codec.container import StreamWriter, read_stream
from promptlab.codec.schedule import gop_starts, stream_segments
from promptlab.device import set_threads
from promptlab.engine import records
from promptlab.engine.encoder import header_for, identity
from promptlab.errors import PromptlabError
from promptlab.extras import require
from promptlab.io.atomic import check_target, write_bytes_atomic
from promptlab.io.video import FrameRange, count_frames, parse_frames
from promptlab.runs.records import TaskDone, TasksPlanned
from promptlab.runs.sweep import (
    PointJob,
    SweepPoint,
    SweepSource,
    baseline_point,
    encode_point,
    load_finished,
    originals_of,
    plan_points,
    point_identity,
    save_finished,
    summarize_sweep,
)
from promptlab.settings import Settings

CONNECT_TIMEOUT = 5.0  # seconds to reach a cluster's address before saying it is unreachable


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a job runs (docs/scale-out.md)."""

    address: str | None = None  # None: start a local Ray; "auto" or HOST:PORT: join a running cluster
    workers: int = 2            # actors (encode) or tasks in flight (sweep)
    cpus: float = 1.0           # Ray CPUs reserved per worker / task
    gpus: float = 0.0           # Ray GPUs reserved per worker / task
    retries: int = 3            # times a task (or a dead actor's call) is retried

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise PromptlabError(f"--workers must be >= 1, got {self.workers}")
        if self.cpus < 0 or self.gpus < 0 or (self.cpus == 0 and self.gpus == 0):
            raise PromptlabError("each task needs some CPU or GPU (--task-cpus, --task-gpus)")
        if self.retries < 0:
            raise PromptlabError(f"--retries must be >= 0, got {self.retries}")

    def torch_threads(self, settings: Settings) -> int:
        """Torch threads per worker, set explicitly (Ray starts workers with OMP_NUM_THREADS=1): the
        settings' threads (--threads), else the CPUs reserved per task."""
        return settings.threads or max(1, int(self.cpus))


def import_ray() -> Any:
    """The ray module, or a one-line error naming the extra."""
    require("ray")
    import ray

    return ray


def check_address(address: str) -> None:
    """Refuse an unreachable HOST:PORT in seconds (Ray itself waits minutes before giving up)."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise PromptlabError(f"--address must be HOST:PORT (a Ray head's GCS address), 'auto' or ray://…, got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise PromptlabError(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); "
                             "start one with `ray start --head` or leave out --address for a local Ray") from None


class Session:
    """A connection to Ray for one job: started here (and shut down after) unless it was running already."""

    def __init__(self, options: RayOptions) -> None:
        self.ray = ray = import_ray()
        self.options = options
        self.owned = False
        if ray.is_initialized():
            return
        env = {k: v for k, v in os.environ.items() if k.startswith("PROMPTLAB_")}
        kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False,
                                  "logging_level": "ERROR", "configure_logging": True}
        if options.address:
            check_address(options.address)
            kwargs["address"] = options.address
        else:
            kwargs.update(num_cpus=max(os.cpu_count() or 1, options.workers * options.cpus),
                          include_dashboard=False)
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise PromptlabError(f"cannot start or join Ray ({str(exc).splitlines()[0]})") from None
        self.owned = True

    @property
    def address(self) -> str:
        return self.options.address or "local"

    def get(self, ref: Any) -> Any:
        """ray.get with a worker's PromptlabError raised here as one line (no remote traceback)."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, PromptlabError):
                raise type(cause)(str(cause)) from None
            raise
        except self.ray.exceptions.RayError as exc:
            raise PromptlabError(f"a Ray worker failed after {self.options.retries} retries: "
                                 f"{str(exc).splitlines()[0]}") from None

    def close(self, refs: list[Any] = ()) -> None:  # type: ignore[assignment]
        """End the job: a Ray started here is shut down with its workers; on a joined cluster the tasks
        still running are cancelled. (Force-cancelling tasks of a Ray about to be shut down raced with their
        replies: Ray's driver aborted in 3 of 14 Ctrl-Cs of a sweep, leaving Ray's agents running.)"""
        if self.owned:
            if self.ray.is_initialized():
                self.ray.shutdown()
            return
        for ref in refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - an actor call cannot be force-cancelled; the cluster ends it
                pass


# ----------------------------------------------------------------------------------------------- workers
# What runs inside Ray's worker processes: each loads a model once per process and keeps it.

_models: dict[tuple[str, str, str], Any] = {}


def _model(settings: Settings, threads: int) -> Any:
    set_threads(threads)
    key = (settings.model, settings.device, settings.dtype)
    if key not in _models:
        from promptlab.models.registry import load_model

        _models[key] = load_model(*key)
    return _models[key]


class GopWorker:
    """An actor that encodes closed GOPs of one clip (the model loaded once)."""

    def __init__(self, settings: Settings, threads: int) -> None:
        self.threads = threads
        self.model = _model(settings, threads)

    def describe(self) -> dict[str, Any]:
        m = self.model
        return {"context_dim": m.context_dim, "latent_channels": m.latent_channels,
                "latent_factor": m.latent_factor, "version": m.version, "fingerprint": m.fingerprint,
                "label": m.label}

    def encode_gop(self, g: int, source: str, settings: Settings, frames: FrameRange, work: str) -> dict[str, Any]:
        """GOP g: a one-GOP encode of its frames (resuming a partial one left in `work`); its records' bytes."""
        from promptlab.engine.encoder import encode

        t0 = time.perf_counter()
        set_threads(self.threads)
        out = Path(work) / f"gop-{g:05d}.plab"
        done = None
        for r in encode(source, settings.replace(gop=0), out, frames=frames, force=True, model=self.model):
            if isinstance(r, records.Done):
                done = r
        assert done is not None
        s = read_stream(out)
        data = out.read_bytes()[s.header_bytes:s.total_bytes - s.index_bytes]
        out.unlink()
        return {"gop": g, "data": data, "init_size": s.init_bytes, "keyframe_bytes": s.keyframe_bytes,
                "losses": done.extra["best_losses"], "node": _node(), "elapsed": time.perf_counter() - t0}


def _node() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()[:8]


def _point_task(job: PointJob, base: Settings, frames: FrameRange, severe: float, vmaf: bool,
                threads: int) -> tuple[SweepPoint, bytes, str, float]:
    """A sweep point's encode and scoring: its row, its stream's bytes, the node and the time it took."""
    t0 = time.perf_counter()
    model = _model(job.settings(base), threads)
    originals = originals_of(job.source, base, frames)
    job.folder.mkdir(parents=True, exist_ok=True)
    gen = encode_point(job, base, originals, _metrics(vmaf), severe, frames=frames, model=model)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        point = stop.value
    return point, job.stream.read_bytes(), _node(), time.perf_counter() - t0


def _baseline_task(job: PointJob, base: Settings, frames: FrameRange, kbps: float, codec: str, severe: float,
                   vmaf: bool, threads: int) -> tuple[SweepPoint, str, float]:
    t0 = time.perf_counter()
    set_threads(threads)
    originals = originals_of(job.source, base, frames)
    point = baseline_point(job, base, originals, kbps, codec, _metrics(vmaf), severe)
    return point, _node(), time.perf_counter() - t0


_metric_sets: dict[bool, Any] = {}


def _metrics(vmaf: bool) -> Any:
    if vmaf not in _metric_sets:
        from promptlab.metrics.frame import FrameMetrics

        _metric_sets[vmaf] = FrameMetrics(vmaf=vmaf)
    return _metric_sets[vmaf]


# ----------------------------------------------------------------------------------------------- encode

def work_folder(out: str | Path) -> Path:
    """Where a distributed encode of `out` keeps its finished GOPs until the stream is assembled."""
    p = Path(out)
    return p.with_name(p.name + ".gops")


def _stored_gops(work: Path, ident: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Finished GOPs of an earlier run with the same identity (anything else in the folder is dropped)."""
    try:
        same = json.loads((work / "identity.json").read_text()) == ident
    except (OSError, ValueError):
        same = False
    if not same:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        write_bytes_atomic(work / "identity.json", json.dumps(ident).encode())
        return {}
    out = {}
    for meta in work.glob("gop-*.json"):
        try:
            m = json.loads(meta.read_text())
            m["data"] = meta.with_suffix(".bin").read_bytes()
            if len(m["data"]) == m["init_size"] + sum(m["keyframe_bytes"]):
                out[int(m["gop"])] = m
        except (OSError, ValueError, KeyError):
            continue
    return out


def encode_gops(source: str | Path, settings: Settings, out: str | Path, options: RayOptions, *,
                frames: str | FrameRange | None = None, force: bool = False, resume: bool = True) -> Iterator[Any]:
    """Yield Started, TasksPlanned, a TaskDone per GOP, then Done: the stream written as a serial encode would."""
    t_start = time.perf_counter()
    out = check_target(out, force)
    frange = parse_frames(frames) if isinstance(frames, str) or frames is None else frames
    n_frames = count_frames(source, frange)
    if n_frames < 1:
        raise PromptlabError(f"{source} has no frames to encode")
    first = frange[0] if frange else 0
    starts = gop_starts(n_frames, settings.gop)
    session = Session(options)
    threads = options.torch_threads(settings)
    inflight: dict[Any, tuple[int, Any]] = {}
    try:
        actor_cls = session.ray.remote(GopWorker).options(
            num_cpus=options.cpus, num_gpus=options.gpus, max_restarts=options.retries,
            max_task_retries=options.retries)
        actors = [actor_cls.remote(settings, threads) for _ in range(min(options.workers, len(starts)))]
        info = session.get(actors[0].describe.remote())
        model = _Described(info)
        header = header_for(settings, model, n_frames)  # type: ignore[arg-type]
        ident = identity(source, frange, settings, model)  # type: ignore[arg-type]
        work = work_folder(out)
        if not resume:
            shutil.rmtree(work, ignore_errors=True)
        done = _stored_gops(work, ident)
        stored = len(done)
        segs = stream_segments(n_frames, settings.interval, settings.gop)
        keys_in = [sum(1 for gg, _ in segs if gg == g) for g in range(len(starts))]
        yield records.Started(job="encode", n_frames=n_frames, n_keyframes=len(segs), width=settings.size,
                              height=settings.size, fps=settings.fps, model=info["label"],
                              resumed_keyframes=sum(keys_in[g] for g in done))
        todo = [g for g in range(len(starts)) if g not in done]
        yield TasksPlanned(job="encode", total=len(starts), skipped=len(done), workers=len(actors),
                           address=session.address)
        free = list(actors)
        while todo or inflight:
            while todo and free:
                g, actor = todo.pop(0), free.pop(0)
                a = first + starts[g]
                span = (a, a + min(settings.gop or n_frames, n_frames - starts[g]))
                inflight[actor.encode_gop.remote(g, str(source), settings, span, str(work))] = (g, actor)
            ready, _ = session.ray.wait(list(inflight), num_returns=1)
            g, actor = inflight.pop(ready[0])
            free.append(actor)
            res = session.get(ready[0])
            write_bytes_atomic(work / f"gop-{g:05d}.bin", res["data"])
            write_bytes_atomic(work / f"gop-{g:05d}.json", json.dumps(
                {k: v for k, v in res.items() if k != "data"}).encode())
            done[g] = res
            yield TaskDone(job="encode", name=f"GOP {g}", node=res["node"], elapsed=res["elapsed"],
                           done=len(done), total=len(starts))
        total = _assemble(out, header, [done[g] for g in range(len(starts))])
        shutil.rmtree(work, ignore_errors=True)
        from promptlab.codec import rate

        init = sum(done[g]["init_size"] for g in done)
        yield records.Done(job="encode", path=str(out), total_bytes=total, kbps=rate.kbps(total, n_frames, header.fps),
                           kbps_without_init=rate.kbps(total - init, n_frames, header.fps),
                           elapsed=time.perf_counter() - t_start,
                           extra={"model": info["label"], "gops": len(starts), "workers": len(actors),
                                  "threads": threads, "resumed_gops": stored,
                                  "best_losses": [x for g in range(len(starts)) for x in done[g].get("losses", [])]})
    finally:
        session.close(list(inflight))


class _Described:
    """What the header and the resume identity need of a model, as a worker described it."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.context_dim, self.latent_channels = info["context_dim"], info["latent_channels"]
        self.latent_factor, self.version, self.fingerprint = info["latent_factor"], info["version"], info["fingerprint"]


def _assemble(out: Path, header: Any, gops: list[dict[str, Any]]) -> int:
    """The GOPs in order, then the GOP index, into OUT.partial; checked whole, then renamed onto OUT."""
    from promptlab.engine.encoder import partial_paths

    partial = partial_paths(out)[0]
    with open(partial, "wb") as fh:
        w = StreamWriter(fh, header)
        for g in gops:
            w.write_gop(g["data"], g["init_size"], list(g["keyframe_bytes"]))
        w.finish()
        fh.flush()
        os.fsync(fh.fileno())
    read_stream(partial)
    os.replace(partial, out)
    return w.total_bytes


# ----------------------------------------------------------------------------------------------- sweep

def sweep_tasks(sources: list[SweepSource], base: Settings, ranks: list[int], intervals: list[int], out_dir: Path,
                options: RayOptions, *, frames: FrameRange = None, baseline: str | None = "h265",
                severe: float = 0.32, vmaf: bool = False, force: bool = False) -> Iterator[Any]:
    """The sweep of runs/sweep.run_sweep with every point and baseline a Ray task (at most `workers` in flight).

    Yields TasksPlanned, a SweepPoint per row (stored ones first, `extra['reused']`), a TaskDone per task,
    then SweepDone with the rows in table order, as run_sweep gives them."""
    jobs = plan_points(sources, ranks, intervals, out_dir)
    idents = [point_identity(j, base, frames, baseline, severe, vmaf) for j in jobs]
    rows: dict[int, list[SweepPoint]] = {}
    for i, (job, ident) in enumerate(zip(jobs, idents)):
        stored = None if force else load_finished(job, ident)
        if stored is not None:
            for p in stored:
                p.extra["reused"] = True
            rows[i] = stored
    per_job = 2 if baseline else 1
    total = per_job * (len(jobs) - len(rows))
    session = Session(options)
    threads = options.torch_threads(base)
    inflight: dict[Any, tuple[int, str]] = {}
    try:
        opts = {"num_cpus": options.cpus, "num_gpus": options.gpus, "max_retries": options.retries}
        point_fn = session.ray.remote(_point_task).options(**opts)
        base_fn = session.ray.remote(_baseline_task).options(**opts)
        yield TasksPlanned(job="sweep", total=total, skipped=len(rows), workers=options.workers,
                           address=session.address)
        for i in sorted(rows):
            yield from rows[i]
        todo = [i for i in range(len(jobs)) if i not in rows]
        follow: list[tuple[int, float]] = []  # baselines whose point finished: (job, its kbps)
        finished = 0
        while todo or follow or inflight:
            while (follow or todo) and len(inflight) < options.workers:
                if follow:  # a baseline first: it finishes its point's row
                    i, kbps = follow.pop(0)
                    ref = base_fn.remote(jobs[i], base, frames, kbps, baseline, severe, vmaf, threads)
                    inflight[ref] = (i, "baseline")
                else:
                    i = todo.pop(0)
                    inflight[point_fn.remote(jobs[i], base, frames, severe, vmaf, threads)] = (i, "point")
            ready, _ = session.ray.wait(list(inflight), num_returns=1)
            i, kind = inflight.pop(ready[0])
            job = jobs[i]
            if kind == "point":
                point, data, node, elapsed = session.get(ready[0])
                if not (job.stream.is_file() and job.stream.read_bytes() == data):
                    job.folder.mkdir(parents=True, exist_ok=True)
                    write_bytes_atomic(job.stream, data)  # a worker on another node wrote its own copy
                point.path = str(job.stream)
                rows[i] = [point]
                if baseline:
                    follow.append((i, point.kbps))
            else:
                point, node, elapsed = session.get(ready[0])
                rows[i].append(point)
            finished += 1
            yield point
            yield TaskDone(job="sweep", name=f"{job.source.name} r{job.rank} k{job.interval} "
                           f"{'promptlab' if kind == 'point' else baseline}", node=node, elapsed=elapsed,
                           done=finished, total=total)
            if len(rows[i]) == per_job:
                save_finished(job, idents[i], rows[i])
        yield summarize_sweep([p for i in range(len(jobs)) for p in rows[i]], baseline)
    finally:
        session.close(list(inflight))
