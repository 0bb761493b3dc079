"""Sliders that respond while you drag: a preview from the fitted stream before any fit, a fit
that replaces it, and rapid drags that never pile up jobs."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from promptlab.gui.sliders import StopSlider, decade_stops, int_stops  # noqa: E402
from promptlab.gui.tuning import Tuner  # noqa: E402

pytestmark = pytest.mark.usefixtures("lab_dirs")  # the user's folders in tmp for every test here


# ----------------------------------------------------------------------------- the slider


def test_stop_slider_shows_any_value_and_steps_like_a_spin_box(qtbot):
    s = StopSlider(int_stops(1, 16, 1024))
    qtbot.addWidget(s)
    seen = []
    s.valueChanged.connect(seen.append)
    s.setValue(37)  # not a stop: becomes one, shown as it is
    assert s.value() == 37 and s.label.text() == "37" and 37 in s.stops()
    s.slider.setFocus()
    qtbot.keyClick(s.slider, Qt.Key.Key_Right)
    assert s.value() > 37 and seen[-1] == s.value()
    qtbot.keyClick(s.slider, Qt.Key.Key_Left)
    assert s.value() == 37
    assert int_stops(1, 16, 1024)[:16] == list(range(1, 17)) and int_stops(1, 16, 1024)[-1] == 1024
    kb = decade_stops(1.0, 100000.0)
    assert kb[0] == 1.0 and kb[-1] == 100000.0 and all(b / a <= 1.51 for a, b in zip(kb, kb[1:]))
    moved = []
    s.userMoved.connect(lambda: moved.append(s.value()))
    s.setValue(5)  # the program sets a value: not a user's move
    qtbot.keyClick(s.slider, Qt.Key.Key_Right)
    assert len(moved) == 1
    c = StopSlider(("none", "lossless", "lossy"))
    qtbot.addWidget(c)
    c.setCurrentText("lossy")
    assert c.currentText() == "lossy" and c.label.text() == "lossy"
    with pytest.raises(ValueError):
        c.setCurrentText("fast")


# ----------------------------------------------------------------------------- the tuner's policy


class FakeLab:
    """Jobs that run until `end()` is called; counts what ran at once."""

    def __init__(self) -> None:
        self.running: str | None = None
        self.started: list[str] = []
        self.cancelled = 0
        self.most_at_once = 0
        self.tuner: Tuner | None = None

    def can_preview(self) -> bool:
        return True

    def job_busy(self) -> bool:
        return self.running is not None

    def _start(self, kind: str) -> bool:
        assert self.running is None, "a job started while another runs"
        self.running = kind
        self.started.append(kind)
        return True

    def start_preview(self) -> bool:
        return self._start("preview")

    def start_refine(self) -> bool:
        return self._start("refine")

    def cancel_job(self) -> None:
        self.cancelled += 1

    def end(self, outcome: str = "finished") -> None:
        self.running = None
        self.tuner.job_ended(outcome)


def test_tuner_previews_then_refines_and_supersedes_instead_of_queueing(qtbot):
    lab = FakeLab()
    t = lab.tuner = Tuner(lab)
    t.set_delays(20, 150)
    for _ in range(10):  # a drag: ten moves between two turns of the event loop
        t.moved("rank")
    qtbot.waitUntil(lambda: t.pending == ["refine"], timeout=5000)
    assert lab.started == ["preview"], "one preview for the whole drag; the fit waits for its job"
    lab.end()
    qtbot.waitUntil(lambda: lab.started == ["preview", "refine"], timeout=2000)
    # a move during the fit cancels it (superseded) and starts over: preview, then a new fit
    t.moved("bits")
    assert lab.cancelled == 1
    lab.end("cancelled")
    qtbot.waitUntil(lambda: len(lab.started) == 3, timeout=2000)
    assert lab.started[-1] == "preview"
    lab.end()
    qtbot.waitUntil(lambda: len(lab.started) == 4, timeout=2000)
    assert lab.started[-1] == "refine" and t.pending == []
    lab.end()
    t.moved("rank")
    t.stop()  # another source opened: nothing more starts
    qtbot.wait(300)
    assert len(lab.started) == 4


# ----------------------------------------------------------------------------- the window, real engine

import test_gui  # noqa: E402
from test_gui import N, run_and_wait  # noqa: E402

win = test_gui.win  # the lab window on the sky clip (test_gui's fixture)


def _job_children(w) -> int:
    """Live job processes of this test: its children but the resource tracker and the idle spare."""
    from pathlib import Path

    me, n, spare = os.getpid(), 0, w.runner.spare_pid()
    for d in Path("/proc").glob("[0-9]*"):
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == me and stat[0] not in ("Z", "X") and b"resource_tracker" not in cmd and int(d.name) != spare:
            n += 1
    return n


def _drag(qtbot, w, slider: StopSlider, key=Qt.Key.Key_Left, times: int = 1) -> None:
    slider.slider.setFocus()
    for _ in range(times):
        qtbot.keyClick(slider.slider, key)


def _wait_preview(qtbot, w) -> None:
    qtbot.waitUntil(lambda: w.tuner.started_jobs["preview"] > 0 and not w.runner.busy(), timeout=180_000)


@pytest.mark.slow
def test_each_slider_previews_from_the_fit_then_a_fit_replaces_it(qtbot, win):
    from promptlab.runs.records import PREVIEW, PROMPTLAB

    assert run_and_wait(qtbot, win) == "finished", win.state.last_error
    fitted = {i: win.viewer.recon[i].copy() for i in range(N)}
    win.tuner.set_delays(30, 3_600_000)  # no fit starts on its own while the previews are checked
    c = win.controls
    c.use_target.setChecked(False)
    for knob, slider, key in (("rank", c.rank, Qt.Key.Key_Left), ("bits", c.bits, Qt.Key.Key_Left),
                              ("interval", c.interval, Qt.Key.Key_Right)):
        before = win.tuner.started_jobs["preview"]
        _drag(qtbot, win, slider, key)
        qtbot.waitUntil(lambda b=before: win.tuner.started_jobs["preview"] > b and not win.runner.busy(),
                        timeout=180_000)
        st = win.state
        assert st.previewing and st.summary is not None and st.summary.method == PREVIEW, knob
        assert sorted(st.rows) == list(range(N)) and {r.stage for r in st.rows.values()} == {"preview"}, knob
        assert len(win.plots.quality.values) == N, knob  # the plots show the preview's frames
        assert any(not np.array_equal(win.viewer.recon[i], fitted[i]) for i in range(N)), knob
        assert win.tuner.started_jobs["refine"] == 0, "no fit ran: the preview came from the fitted stream"
    # target bitrate: the rank is solved for it; the preview transcodes to that rate
    c.use_target.setChecked(True)
    c.target.setValue(float(win.state.summary.kbps))
    before = win.tuner.started_jobs["preview"]
    _drag(qtbot, win, c.target, Qt.Key.Key_Left, 2)
    qtbot.waitUntil(lambda: win.tuner.started_jobs["preview"] > before and not win.runner.busy(), timeout=180_000)
    assert win.state.previewing and win.state.summary.kbps <= c.target.value() + 1e-6
    # rest: the fit at the new settings starts in the background and replaces the preview when done
    c.use_target.setChecked(False)
    win.tuner.set_delays(30, 200)
    with qtbot.waitSignal(win.jobDone, timeout=300_000, check_params_cb=lambda o: win.state.summary is not None
                          and win.state.summary.method == PROMPTLAB):
        _drag(qtbot, win, c.rank, Qt.Key.Key_Right)
    st = win.state
    assert not st.previewing and st.shown_key == win.current_key() and win.cache.has(st.shown_key)
    assert {r.stage for r in st.rows.values()} <= {"encode", "decode"}
    assert win.tuner.started_jobs["refine"] >= 1


@pytest.mark.slow
def test_rapid_drags_leave_at_most_one_running_job(qtbot, win):
    assert run_and_wait(qtbot, win) == "finished", win.state.last_error
    win.tuner.set_delays(30, 800)
    in_flight, most = [0], [0]  # jobs started and not yet ended, as the window's runner sees them
    start = win.runner.start

    def counted(job):
        ok = start(job)
        if ok:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        return ok

    win.runner.start = counted
    win.runner.finished.connect(lambda _outcome: in_flight.__setitem__(0, in_flight[0] - 1))
    moves = 0
    t_end = time.monotonic() + 8.0
    key = Qt.Key.Key_Left
    while time.monotonic() < t_end:
        _drag(qtbot, win, win.controls.rank, key)
        key = Qt.Key.Key_Right if key == Qt.Key.Key_Left else Qt.Key.Key_Left
        moves += 1
        qtbot.wait(40)
        assert len(win.tuner.pending) <= 2
    assert most[0] == 1, most  # jobs ran, never two at once
    started = sum(win.tuner.started_jobs.values())
    assert started < moves / 4, (started, moves)  # superseded, never one job per move
    qtbot.waitUntil(lambda: not win.runner.busy() and not win.tuner.pending, timeout=300_000)
    qtbot.waitUntil(lambda: _job_children(win) == 0, timeout=10_000)  # only the idle spare is left


@pytest.mark.slow
def test_every_move_of_a_drag_finds_a_warm_job_process(qtbot, win):
    """The design behind a preview in under a second, tested without timing it: each slider
    move's preview runs in a job process that was started, had its imports done and its model
    loaded before the move; and while that preview runs the next one is already warming, so the
    second move of a drag (whose first preview took the spare) does not pay for a process start."""
    assert run_and_wait(qtbot, win) == "finished", win.state.last_error
    win.tuner.set_delays(30, 3_600_000)  # previews only: no fit starts on its own
    runner = win.runner
    ran_in: list[int | None] = []  # the process each preview started in, as it started
    win.tuner.started.connect(lambda kind: ran_in.append(runner.job_pid()))
    for move in (1, 2, 3):
        qtbot.waitUntil(runner.spare_ready, timeout=180_000)
        warm = runner.spare_pid()
        _drag(qtbot, win, win.controls.rank, Qt.Key.Key_Left if move % 2 else Qt.Key.Key_Right)
        qtbot.waitUntil(lambda m=move: win.tuner.started_jobs["preview"] == m, timeout=60_000)
        assert ran_in[-1] == warm, move                            # the preview ran in the warm process
        assert runner.spare_pid() not in (None, warm), move        # and the next one is on its way
        if move == 2:
            qtbot.waitUntil(lambda: not runner.busy(), timeout=180_000)
    qtbot.waitUntil(lambda: not runner.busy(), timeout=180_000)
    assert win.state.previewing and win.viewer.mark_label.mark == "PREVIEW"
    assert win.controls.status.text().startswith("PREVIEW")
    assert win.tuner.started_jobs["refine"] == 0
    qtbot.waitUntil(lambda: _job_children(win) == 0, timeout=10_000)  # one spare waits, nothing else
