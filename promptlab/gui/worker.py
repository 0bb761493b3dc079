"""Runs one model job at a time in a "spawn" child process and turns its messages into Qt signals.

The child (jobs.run_job) does all torch work, so the window's event loop only ever unpickles
small messages. A QTimer drains the queue with a time budget per tick; cancel sets an
mp.Event the engines check every iteration; close() stops the child cleanly (then firmly).
The child is given this process's pid and ends itself when this process is gone (jobs.die_with_parent).
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

from promptlab.gui.jobs import JobSpec, run_job, shared_cache_values
from promptlab.settings import CACHE_POLICIES

DRAIN_BUDGET_S = 0.02
POLL_MS = 15


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
    """One job at a time. Signals carry the child's messages; `finished` always comes last."""

    message = Signal(str, dict)          # kind, payload (every message, in order)
    progress = Signal(float, str, float)  # fraction 0..1, text, eta seconds (-1 unknown)
    failed = Signal(str)                 # an engine error, shown in the window
    finished = Signal(str)               # "finished" | "cancelled" | "error"

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._queue: Any = None
        self._cancel: Any = None
        self._live: Any = None
        self._t0 = 0.0
        self._outcome: str | None = None
        self.jobs_started = 0            # tests use this to prove a cached result ran no job
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._drain)

    def busy(self) -> bool:
        return self._proc is not None

    def start(self, spec: JobSpec) -> bool:
        """Start `spec` unless a job is already running (one model job at a time)."""
        if self.busy():
            return False
        self._queue = self._ctx.Queue()
        self._cancel = self._ctx.Event()
        self._live = shared_cache_values(self._ctx, spec.settings.get("cache", "none"),
                                         spec.settings.get("cache_threshold", 0.05))
        self._proc = self._ctx.Process(target=run_job, args=(spec, self._queue, self._cancel, self._live, os.getpid()),
                                       daemon=True, name=f"promptlab-{spec.kind}")
        with _no_main_reimport():
            self._proc.start()
        self.jobs_started += 1
        self._t0 = time.monotonic()
        self._outcome = None
        self._timer.start()
        self.progress.emit(0.0, "starting the job process", -1.0)
        return True

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
        """Stop the job for good (window closing): cancel, wait, then terminate if need be."""
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
                kind, payload = self._queue.get_nowait()
            except (queue_mod.Empty, EOFError, OSError):
                break
            self._handle(kind, payload)
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

    def _handle(self, kind: str, payload: dict) -> None:
        if kind == "progress":
            f = float(payload.get("fraction", 0.0))
            el = time.monotonic() - self._t0
            eta = el * (1 - f) / f if f > 0.01 else -1.0
            self.progress.emit(f, str(payload.get("text", "")), eta)
        elif kind in ("finished", "cancelled", "error"):
            self._outcome = kind
            if kind == "error":
                self.failed.emit(payload.get("message", "error"))
        self.message.emit(kind, payload)

    def _finish(self, outcome: str) -> None:
        self._timer.stop()
        if self._proc is not None:
            self._proc.join(1.0)
        self._proc = self._queue = self._cancel = self._live = None
        self.finished.emit(outcome)
