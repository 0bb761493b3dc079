"""Slider drags become at most one preview job, then one background fit: never a queue.

While a slider moves, the window shows an instant preview: the fitted stream it shows,
transcoded or re-keyed to the new settings and decoded by the receiver alone (runs/preview.py:
no optimiser step). After a pause with no move (REFINE_MS) a real fit at the new settings
starts in the background; the window holds its records back and swaps them in when it
finishes, so the preview stays on screen until something better replaces it. A move
supersedes what the tuner started: the running preview or fit is cancelled and only the newest
request waits. So there is one running job at most and never more than one preview and one
fit waiting; a job the user started (Run) is never cancelled by a slider.
"""

from __future__ import annotations

import time
from typing import Protocol

from PySide6.QtCore import QObject, QTimer, Signal

PREVIEW_MS = 60    # moves closer together than this make one preview
REFINE_MS = 1500   # the pause after which the new settings are fitted for real
KINDS = ("preview", "refine")


class Lab(Protocol):
    """What the tuner asks of the window."""

    def can_preview(self) -> bool: ...
    def start_preview(self) -> bool: ...
    def start_refine(self) -> bool: ...
    def job_busy(self) -> bool: ...
    def cancel_job(self) -> None: ...


class Tuner(QObject):
    """`started(kind)` when it starts a job; `latency(seconds)` from the last move to a preview's end."""

    started = Signal(str)
    latency = Signal(float)

    def __init__(self, lab: Lab, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.lab = lab
        self.pending: list[str] = []     # kinds waiting, in KINDS order
        self.active: str | None = None   # the kind of the job this tuner started, while it runs
        self.moved_at = 0.0
        self.started_jobs: dict[str, int] = dict.fromkeys(KINDS, 0)
        self._preview = self._timer(PREVIEW_MS, "preview")
        self._refine = self._timer(REFINE_MS, "refine")

    def set_delays(self, preview_ms: int, refine_ms: int) -> None:
        """How long a slider must rest before its preview, and before its fit, start."""
        self._preview.setInterval(preview_ms)
        self._refine.setInterval(refine_ms)

    def _timer(self, ms: int, kind: str) -> QTimer:
        t = QTimer(self)
        t.setSingleShot(True)
        t.setInterval(ms)
        t.timeout.connect(lambda: self._want(kind))
        return t

    def moved(self, knob: str = "") -> None:
        """A slider moved: supersede what this tuner started, preview soon, fit after a pause."""
        if not self.lab.can_preview():
            return
        self.moved_at = time.monotonic()
        self.pending.clear()
        if self.active is not None:
            self.lab.cancel_job()
        self._preview.start()
        self._refine.start()

    def stop(self) -> None:
        """Forget every request (another source, a user's Run): nothing more starts."""
        self._preview.stop()
        self._refine.stop()
        self.pending.clear()

    def _want(self, kind: str) -> None:
        if kind not in self.pending:
            self.pending.append(kind)
            self.pending.sort(key=KINDS.index)
        self._next()

    def job_ended(self, outcome: str) -> None:
        """The window's job ended (any job): start what waits."""
        if self.active == "preview" and outcome == "finished":
            self.latency.emit(time.monotonic() - self.moved_at)
        self.active = None
        QTimer.singleShot(0, self._next)

    def _next(self) -> None:
        while self.pending and not self.lab.job_busy():
            kind = self.pending.pop(0)
            start = self.lab.start_preview if kind == "preview" else self.lab.start_refine
            if start():
                self.active = kind
                self.started_jobs[kind] += 1
                self.started.emit(kind)
                return
