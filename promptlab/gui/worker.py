"""Runs one model job at a time in a "spawn" child process and hands its records to the window as Qt signals.

The child (jobs.run_job) does all torch work and sends the run service's typed records, so the
window's event loop only ever unpickles them. A QTimer drains the queue with a time budget per tick; cancel sets an
mp.Event the engines check every iteration; close() stops the child cleanly (then firmly).
The child is given this process's pid and ends itself when this process is gone (jobs.die_with_parent).
`prepare()` starts a spare child ahead of time (jobs.serve_job: imports done and the model
loaded, waiting for its job), so the next job, typically a slider's preview, does not wait for
a process start; `keep_spare(warm)` has a new spare started as soon as a job takes the spare, so
every slider move of a drag (whose preview or fit the next move cancels) finds one warm. Every
job still runs in a process of its own that ends with it.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue as queue_mod
import sys
import time
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from promptlab.gui.jobs import Job, JobEnded, run_job, serve_job, shared_cache_values
from promptlab.runs.records import Progress
from promptlab.settings import CACHE_POLICIES

DRAIN_BUDGET_S = 0.02
POLL_MS = 15


def eta_text(rec: Progress) -> str:
    """The core's ETA (runs/eta.py) in words, "" until the run has measured what it needs."""
    return "" if rec.eta_s is None else f"ETA {rec.eta_s:.0f} s"


@contextlib.contextmanager
def _no_main_reimport():
    """Stop "spawn" from re-running the parent's main script in the child.

    The job needs only promptlab.gui.jobs; re-importing whatever started the window (a script,
    the promptlab entry point, pytest) costs seconds and, for an unguarded script, reruns it.
    """
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if hasattr(main, k)}
    try:
        for k in saved:
            if k == "__spec__":
                main.__spec__ = None
            else:
                delattr(main, k)
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


class JobRunner(QObject):
    """One job at a time. `record` carries the child's records in order; `finished` always comes last."""

    record = Signal(object)              # every record of runs.records (and the final JobEnded), in order
    progress = Signal(float, str, str)  # fraction 0..1, text, the ETA as words ("" while unknown)
    failed = Signal(str)                 # an engine error, shown in the window
    finished = Signal(str)               # "finished" | "cancelled" | "error"

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._queue: Any = None
        self._cancel: Any = None
        self._live: Any = None
        self._outcome: str | None = None
        self._spare: tuple[Any, ...] | None = None  # (process, inbox, queue, cancel, live, ready, warm)
        self._keep: tuple[str, str, str, int] | None = None  # keep_spare's model: replace a spare a job takes
        self._closed = False             # close() ran: no spare is started any more
        self._taken: tuple[Any, ...] | None = None  # the spare the running job took, kept alive with it
        self._inbox: Any = None
        self.jobs_started = 0            # tests use this to prove a cached result ran no job
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._drain)

    def busy(self) -> bool:
        return self._proc is not None

    def start(self, job: Job) -> bool:
        """Start `job` unless a job is already running (one model job at a time)."""
        if self.busy():
            return False
        s = job.run.settings
        spare, self._spare = self._spare, None
        if spare is not None and spare[0].is_alive():
            # all of it (the ready event too) stays referenced while the child may still be unpickling
            # it (spawn): a synchronisation object collected here is gone for the child
            self._taken = spare
            self._proc, self._inbox, self._queue, self._cancel, self._live = spare[:5]
            self.set_cache(s.cache, s.cache_threshold)
            self._inbox.put(job)
            if self._keep is not None and spare[5].is_set():
                # the next move of a drag finds a warm process too; one still warming took this job,
                # so none starts beside it (two imports at once would slow the job on two cores)
                self.prepare(self._keep)
        else:
            if spare is not None:
                self._stop_spare(spare)
            self._queue = self._ctx.Queue()
            self._cancel = self._ctx.Event()
            self._live = shared_cache_values(self._ctx, s.cache, s.cache_threshold)
            self._proc = self._ctx.Process(target=run_job, args=(job, self._queue, self._cancel, self._live,
                                                                 os.getpid()), daemon=True, name="promptlab-job")
            with _no_main_reimport():
                self._proc.start()
        self.jobs_started += 1
        self._outcome = None
        self._timer.start()
        self.progress.emit(0.0, "starting the job process", "")
        return True

    def prepare(self, warm: tuple[str, str, str, int] | None = None) -> None:
        """Have a spare job process ready for the next start(): imports done and, given `warm`
        (model, device, dtype, threads), that model loaded."""
        if self._closed:
            return
        spare = self._spare
        if spare is not None and spare[0].is_alive():
            if spare[6] == warm:
                return
            self._spare = None  # warm for another model: its load would be wasted on the next job
            spare[0].terminate()
            spare[0].join(1.0)  # gone before its synchronisation objects are
        inbox, q, cancel, ready = self._ctx.Queue(), self._ctx.Queue(), self._ctx.Event(), self._ctx.Event()
        live = shared_cache_values(self._ctx, CACHE_POLICIES[0], 0.0)
        proc = self._ctx.Process(target=serve_job, args=(inbox, q, cancel, live, os.getpid(), warm, ready),
                                 daemon=True, name="promptlab-job-spare")
        with _no_main_reimport():
            proc.start()
        self._spare = (proc, inbox, q, cancel, live, ready, warm)

    def keep_spare(self, warm: tuple[str, str, str, int] | None) -> None:
        """While set (the sliders can preview), a job that takes the spare has a new one started
        at once, warm for `warm`'s model; None: no replacement (the spare in hand stays)."""
        self._keep = warm
        if warm is not None and not self.busy():
            self.prepare(warm)

    def spare_pid(self) -> int | None:
        return self._spare[0].pid if self._spare is not None else None

    def spare_ready(self) -> bool:
        """A spare waits with its imports done and its model loaded."""
        spare = self._spare
        return spare is not None and spare[0].is_alive() and spare[5].is_set()

    def job_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @staticmethod
    def _stop_spare(spare: tuple[Any, ...]) -> None:
        proc, inbox = spare[0], spare[1]
        with contextlib.suppress(OSError, ValueError):
            inbox.put(None)
        proc.join(2.0)
        if proc.is_alive():
            proc.terminate()
            proc.join(2.0)

    def set_cache(self, policy: str, threshold: float) -> None:
        """Switch the running job's cache policy; the decoder applies it from its next segment."""
        live = self._live
        if live is not None and policy in CACHE_POLICIES:
            live[0].value = CACHE_POLICIES.index(policy)
            live[1].value = float(threshold)

    def cancel(self) -> None:
        """Ask the engines to stop; they check the event once per iteration."""
        if self._cancel is not None:
            self._cancel.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the job for good (window closing): cancel, wait, then terminate if need be; and the spare."""
        self._closed, self._keep = True, None
        spare, self._spare = self._spare, None
        if spare is not None:
            self._stop_spare(spare)
        if self._proc is None:
            return
        self.cancel()
        deadline = time.monotonic() + timeout
        while self._proc is not None and self._proc.is_alive() and time.monotonic() < deadline:
            self._drain()  # a child blocks on exit until its queue is read
            if self._proc is not None:
                self._proc.join(0.05)
        if self._proc is None:
            return
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(2.0)
        self._drain(final=True)
        self._finish(self._outcome or "cancelled")

    def _drain(self, final: bool = False) -> None:
        if self._queue is None:
            return
        deadline = time.monotonic() + DRAIN_BUDGET_S
        while final or time.monotonic() < deadline:
            try:
                rec = self._queue.get_nowait()
            except (queue_mod.Empty, EOFError, OSError):
                break
            self._handle(rec)
        if self._proc is not None and not final and not self._proc.is_alive() and self._queue_empty():
            if self._outcome is None:
                code = self._proc.exitcode
                self._outcome = "error"
                self.failed.emit(f"the job process stopped unexpectedly (exit code {code})")
            self._finish(self._outcome)

    def _queue_empty(self) -> bool:
        try:
            return self._queue.empty()
        except OSError:
            return True

    def _handle(self, rec: object) -> None:
        if isinstance(rec, Progress):
            self.progress.emit(float(rec.fraction), rec.text, eta_text(rec))
        elif isinstance(rec, JobEnded):
            self._outcome = rec.outcome
            if rec.outcome == "error":
                self.failed.emit(rec.message or "error")
        self.record.emit(rec)

    def _finish(self, outcome: str) -> None:
        self._timer.stop()
        if self._proc is not None:
            self._proc.join(1.0)
        self._proc = self._queue = self._cancel = self._live = self._inbox = self._taken = None
        self.finished.emit(outcome)
