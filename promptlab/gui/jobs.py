"""The window's job process: it iterates the run service and sends its typed records to the window.

Qt-free on purpose: `run_job` is a plain top-level function that a "spawn" process imports
and runs. It iterates `runs.lab.run_lab` (the same run as `promptlab run`) and puts every
record, unchanged, on a queue (they are picklable dataclasses); the window drains the queue on
a timer and renders each record by its type. The last record is always a `JobEnded`. Cancel
is an `mp.Event` handed to the engines as their `cancel` check. The job dies with the window
(`die_with_parent`): a window that crashes or is killed leaves no worker behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from promptlab.errors import Cancelled, PromptlabError
from promptlab.runs.lab import RunSpec
from promptlab.runs.records import Record
from promptlab.settings import CACHE_POLICIES

DEFAULT_PIPELINE = "promptlab.gui.jobs:lab"
PREVIEW_PIPELINE = "promptlab.gui.jobs:preview"
STREAM_PIPELINE = "promptlab.gui.jobs:stream"
PR_SET_PDEATHSIG = 1            # linux/prctl.h
PARENT_GONE_EXIT = 75           # exit status of a job whose window went away
PARENT_POLL_S = 0.5
OUTCOMES = ("finished", "cancelled", "error")


@dataclass
class Job:
    """What the job process runs: a run-service spec, and the records' source (tests swap in fakes)."""

    run: RunSpec
    pipeline: str = DEFAULT_PIPELINE          # "module:function(job, cancel, cache_control)" yielding records
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobEnded:
    """The job's last record: how it ended (one of OUTCOMES) and, for an error, what to show."""

    outcome: str
    message: str = ""
    details: str = ""


def shared_cache_values(ctx: Any, policy: str, threshold: float) -> tuple[Any, Any]:
    """Shared-memory policy index and threshold that the window writes and the job reads."""
    return ctx.Value("i", CACHE_POLICIES.index(policy)), ctx.Value("d", float(threshold))


def live_cache_control(shared: tuple[Any, Any]) -> Any:
    """The decoder's cache switch over the window's shared values: a change applies from the next segment."""
    from promptlab.engine.cache import CacheControl

    pv, tv = shared

    class SharedCacheControl(CacheControl):
        """A CacheControl whose policy and threshold live in shared memory (the window writes them)."""

        def __init__(self) -> None:
            super().__init__(self.policy, self.threshold)

        @property
        def policy(self) -> str:  # type: ignore[override]
            return CACHE_POLICIES[max(0, min(len(CACHE_POLICIES) - 1, pv.value))]

        @policy.setter
        def policy(self, value: str) -> None:
            pv.value = CACHE_POLICIES.index(value)

        @property
        def threshold(self) -> float:  # type: ignore[override]
            return max(0.0, float(tv.value))

        @threshold.setter
        def threshold(self, value: float) -> None:
            tv.value = float(value)

    return SharedCacheControl()


def lab(job: Job, cancel: Any, cache_control: Any = None) -> Iterator[Record]:
    """The real job: the run service's records, the decoder's cache switched live by the window."""
    from promptlab.runs.lab import run_lab

    yield from run_lab(job.run, cancel=cancel, cache_control=cache_control)


def preview(job: Job, cancel: Any, cache_control: Any = None) -> Iterator[Record]:
    """A slider's instant preview: the fitted stream transcoded to the new settings and decoded (no fit)."""
    from promptlab.runs.preview import preview as run_preview

    yield from run_preview(job.extra["preview"], cancel=cancel)


def stream(job: Job, cancel: Any, cache_control: Any = None) -> Iterator[Any]:
    """The network view's job: the streaming engine (ladders, then every session), as `promptlab stream`."""
    from promptlab.stream.engine import run_stream

    yield from run_stream(job.extra["stream"], cancel=cancel)


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


def run_job(job: Job, queue: Any, cancel: Any, live_cache: tuple[Any, Any] | None = None,
            parent_pid: int | None = None) -> None:
    """Child-process entry point: every record goes on the queue; every outcome, a crash included, ends as JobEnded."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    put = queue.put
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the window's to handle: it stops this job
    try:
        with contextlib.suppress(OSError, AttributeError):
            os.nice(5)  # the window, not the model, gets the CPU first
        _limit_threads(job.run.settings.threads)
        control = live_cache_control(live_cache) if live_cache is not None else None
        for rec in _resolve(job.pipeline)(job, cancel, control):
            put(rec)
        put(JobEnded("finished"))
    except Cancelled as exc:
        put(JobEnded("cancelled", str(exc) or "cancelled"))
    except PromptlabError as exc:
        put(JobEnded("error", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - the window must see every failure
        put(JobEnded("error", f"internal error: {type(exc).__name__}: {exc}", traceback.format_exc()))


def serve_job(inbox: Any, queue: Any, cancel: Any, live_cache: tuple[Any, Any] | None = None,
              parent_pid: int | None = None, warm: tuple[str, str, str, int] | None = None,
              ready: Any = None) -> None:
    """A spare job process: started ahead of its job, it pays for the process start, the heavy
    imports and (`warm`: model, device, dtype, threads) the model's load before any job is known,
    sets `ready` (an mp.Event) and runs the one job it is handed (None: exit)."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        os.nice(5)
    importlib.import_module("promptlab.runs.preview")  # torch, the engines, the metrics, the run service
    if warm is not None:
        from promptlab.models.registry import preload

        _limit_threads(warm[3])
        with contextlib.suppress(Exception):  # a model that cannot load fails in the job, where it is reported
            preload(*warm[:3])
    if ready is not None:
        ready.set()
    job = inbox.get()
    if job is not None:
        run_job(job, queue, cancel, live_cache)


def _threads(threads: int) -> int:
    """The CLI's rule (device.default_threads): a stream's bytes depend on the thread count, so the
    lab and the CLI must agree; the job runs at a lower priority (nice) to keep the window responsive."""
    from promptlab.device import default_threads

    return threads or default_threads()


def _limit_threads(threads: int) -> None:
    from promptlab.device import set_threads

    set_threads(_threads(threads))


def _resolve(path: str) -> Callable[[Job, Any, Any], Iterator[Record]]:
    mod, _, name = path.partition(":")
    return getattr(importlib.import_module(mod), name)
