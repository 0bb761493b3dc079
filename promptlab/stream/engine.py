"""The streaming job: measure the clip's ladders, then stream them over every trace with every ABR rule.

An iterator of typed records (stream/records.py, with runs.records' Stage and Progress), as the
lab's run is: `promptlab stream`, the window's network view and the tests iterate this one
path. Each session (codec × trace × rule) is pure arithmetic on the measured ladder
(`simulate_session`), so the local loop and Ray tasks (`engine="ray"`) give the same numbers.

The trace mapping: `scale=None` (auto) scales each trace so its mean capacity equals the prompt
ladder's top rung rate; both codecs get the same mapped trace. The clip loops over the trace's
length (or `duration_s`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptlab.errors import Cancelled, PromptlabError
from promptlab.runs.records import Progress, Stage, TaskDone, TasksPlanned
from promptlab.stream.abr import RULES, make_rule
from promptlab.stream.ladder import LadderSpec, build_ladders
from promptlab.stream.records import (
    Ladder,
    LaddersReady,
    SessionDone,
    StreamDone,
    TraceMapped,
    shown_frames,
    summarize,
)
from promptlab.stream.simulator import POLICIES, simulate
from promptlab.stream.traces import Trace, read_trace

NOT_TRACES = {"README", "COPYING", "LICENSE", "LICENCE", "NOTICE", "ATTRIBUTION", "AUTHORS"}
DOC_EXTS = {".md", ".json", ".py", ".html", ".pdf"}


@dataclass(frozen=True)
class Network:
    """How the client fetches: the trace mapping and the player's parameters (stated in results)."""

    scale: float | None = None        # None: auto (trace mean = the prompt ladder's top rung rate)
    offset_bps: float = 0.0
    stretch: float = 1.0
    rtt_s: float = 0.08
    startup_s: float = 1.0
    max_buffer_s: float = 10.0
    policy: str = "wait"
    duration_s: float | None = None   # None: the trace's own length

    def check(self) -> None:
        if self.scale is not None and not (self.scale > 0 and math.isfinite(self.scale)):
            raise PromptlabError(f"--scale must be positive, got {self.scale:g}")
        if self.policy not in POLICIES:
            raise PromptlabError(f"unknown policy {self.policy!r}; choose from {', '.join(POLICIES)}")
        if self.rtt_s < 0 or self.startup_s < 0:
            raise PromptlabError("--rtt and --startup must be >= 0")
        if self.duration_s is not None and not self.duration_s > 0:
            raise PromptlabError(f"--duration must be positive, got {self.duration_s:g}")


@dataclass
class StreamSpec:
    """One streaming job. Plain data (it crosses the GUI's process boundary by pickling)."""

    ladder: LadderSpec
    traces: list[str]
    rules: list[str] = field(default_factory=lambda: list(RULES))
    network: Network = field(default_factory=Network)
    engine: str = "local"             # "local" | "ray"
    ray: Any = None                   # runs.distributed.RayOptions when engine == "ray"

    def check(self) -> None:
        if not self.traces:
            raise PromptlabError("no trace given")
        for r in self.rules:
            if r not in RULES:
                raise PromptlabError(f"unknown ABR rule {r!r}; choose from {', '.join(RULES)}")
        if self.engine not in ("local", "ray"):
            raise PromptlabError(f"unknown engine {self.engine!r}: local or ray")
        self.network.check()
        self.ladder.check()


def trace_files(spec: str | Path) -> list[Path]:
    """A trace file, or every trace in a folder: each file but hidden ones, the licence and readme
    files that travel with trace sets, and documentation (.md, .json, .py). A file there that is
    not a trace is refused by name, in one line, before any work."""
    p = Path(spec)
    if p.is_dir():
        found = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")
                       and q.stem.upper() not in NOT_TRACES and q.suffix.lower() not in DOC_EXTS)
        if not found:
            raise PromptlabError(f"{p} holds no trace files")
        return found
    if not p.is_file():
        raise PromptlabError(f"trace {p} does not exist")
    return [p]


def mapped_trace(trace: Trace, ladder: Ladder, net: Network) -> Trace:
    """The trace as the session sees it: `net.scale`, or auto (mean capacity = the top rung's rate)."""
    mean = float(trace.rate_bps.mean())
    scale = net.scale if net.scale is not None else ladder.rungs[-1].kbps * 1000 / mean
    return trace.mapped(scale, net.offset_bps, net.stretch)


def simulate_session(ladder: Ladder, trace: Trace, rule: str, net: Network) -> SessionDone:
    """One codec's ladder over one (already mapped) trace with one rule: deterministic."""
    seg_s = ladder.seg_s
    duration = net.duration_s or trace.duration_s
    n = max(1, math.ceil(duration / seg_s - 1e-9))
    sizes, quality = ladder.sizes(n), ladder.quality(n)
    choose = make_rule(rule, sizes, quality, seg_s, net.rtt_s)
    delivery = simulate(trace, sizes, seg_s, choose, rtt_s=net.rtt_s, startup_s=net.startup_s,
                        max_buffer_s=max(net.max_buffer_s, seg_s), policy=net.policy)
    frames = shown_frames(delivery, ladder.frame_lpips(), ladder.seg_frames, ladder.n_frames)
    summary = summarize(delivery, frames, seg_s, quality)
    mapping = {**trace.mapping(), "rtt_s": net.rtt_s, "startup_s": net.startup_s,
               "max_buffer_s": net.max_buffer_s, "policy": net.policy, "session_s": n * seg_s,
               "auto_scale": net.scale is None}
    return SessionDone(ladder.codec, trace.name, rule, mapping, delivery, frames, summary)


def _session_task(ladder_dict: dict, trace: Trace, rule: str, net: Network) -> tuple[dict, str]:
    """A Ray task: the session's fields (rebuilt on the driver) and the node it ran on."""
    import ray

    s = simulate_session(Ladder.from_dict(ladder_dict), trace, rule, net)
    fields = {"codec": s.codec, "trace": s.trace, "rule": s.rule, "mapping": s.mapping,
              "delivery": s.delivery, "frames": s.frames, "summary": s.summary}
    return fields, ray.get_runtime_context().get_node_id()[:8]


def run_stream(spec: StreamSpec, cancel: Any = None) -> Iterator[Any]:
    """Yield the ladders' records, LaddersReady, one SessionDone per (trace, codec, rule), then StreamDone."""
    spec.check()
    files = [f for t in spec.traces for f in trace_files(t)]
    traces = [read_trace(f) for f in files]  # every bad trace is refused before any work
    ladders: LaddersReady | None = None
    for rec in build_ladders(spec.ladder, cancel=cancel):
        if isinstance(rec, Progress):
            rec = Progress(0.95 * rec.fraction, rec.text)
        if isinstance(rec, LaddersReady):
            ladders = rec
        yield rec
    assert ladders is not None
    codecs = [ladders.prompt] + ([ladders.baseline] if ladders.baseline else [])
    mapped = [mapped_trace(t, ladders.prompt, spec.network) for t in traces]
    for t in mapped:
        yield TraceMapped(t.name, t.step_s, [float(v) / 1000 for v in t.rate_bps], t.mapping())
    jobs = [(t, lad, rule) for t in mapped for lad in codecs for rule in spec.rules]
    yield Stage("stream", f"{len(jobs)} sessions: {len(traces)} traces × {len(codecs)} codecs × "
                f"{len(spec.rules)} rules")
    sessions = yield from (_ray_sessions(jobs, spec) if spec.engine == "ray" else _local_sessions(jobs, spec, cancel))
    yield Progress(1.0, "done")
    yield StreamDone([s.row() for s in sessions])


def _local_sessions(jobs: list[tuple[Trace, Ladder, str]], spec: StreamSpec, cancel: Any):
    out = []
    for k, (trace, lad, rule) in enumerate(jobs):
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled by the user")
        s = simulate_session(lad, trace, rule, spec.network)
        out.append(s)
        yield s
        yield Progress(0.95 + 0.05 * (k + 1) / len(jobs), f"{trace.name} {lad.codec} {rule}")
    return out


def _ray_sessions(jobs: list[tuple[Trace, Ladder, str]], spec: StreamSpec):
    """Every session a Ray task (at most `workers` in flight); records in the local loop's order."""
    import time

    from promptlab.runs.distributed import RayOptions, Session

    options = spec.ray or RayOptions()
    session = Session(options)
    inflight: dict[Any, int] = {}
    try:
        fn = session.ray.remote(_session_task).options(num_cpus=options.cpus, max_retries=options.retries)
        yield TasksPlanned(job="stream", total=len(jobs), skipped=0, workers=options.workers,
                           address=session.address)
        done: dict[int, SessionDone] = {}
        todo = list(range(len(jobs)))
        started: dict[int, float] = {}
        while todo or inflight:
            while todo and len(inflight) < options.workers:
                k = todo.pop(0)
                trace, lad, rule = jobs[k]
                started[k] = time.perf_counter()
                inflight[fn.remote(lad.to_dict(), trace, rule, spec.network)] = k
            ready, _ = session.ray.wait(list(inflight), num_returns=1)
            k = inflight.pop(ready[0])
            fields, node = session.get(ready[0])
            done[k] = SessionDone(**fields)
            trace, lad, rule = jobs[k]
            yield TaskDone(job="stream", name=f"{trace.name} {lad.codec} {rule}", node=node,
                           elapsed=time.perf_counter() - started[k], done=len(done), total=len(jobs))
        out = [done[k] for k in range(len(jobs))]
        yield from out
        return out
    finally:
        session.close(list(inflight))
