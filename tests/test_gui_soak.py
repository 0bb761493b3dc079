"""Soak: Qt bindings must not lose (or leak) references to None and True.

PySide6-Essentials 6.12.0 drops one reference to True at every `Signal.emit()` and two to None
at every Python `QGraphicsItem.paint`; the window then aborts with "Fatal Python error:
none_dealloc" after a few runs or seconds of Play. pyproject.toml excludes that release; this
test fails on any binding that does it again, in stages, so a leak is reported before the
interpreter dies of it.
"""

from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from promptlab.gui.session import Session  # noqa: E402
from promptlab.runs.records import Progress  # noqa: E402
from promptlab.settings import Settings  # noqa: E402


@pytest.fixture(autouse=True)
def _dirs(lab_dirs):
    return lab_dirs


def singleton_refs() -> tuple[int, int]:
    """Reference counts of None and True (mortal objects before Python 3.12)."""
    gc.collect()
    return sys.getrefcount(None), sys.getrefcount(True)


def assert_flat(before: tuple[int, int], ops: int, what: str) -> None:
    """A binding that leaks or drops a reference per operation moves a count by about `ops`."""
    after = singleton_refs()
    drift = [a - b for a, b in zip(after, before, strict=True)]
    assert all(abs(d) < max(20, ops // 10) for d in drift), f"{what}: None/True refcount drift {drift} over {ops}"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None and True are immortal from Python 3.12")
@pytest.mark.slow
def test_emits_paints_and_runs_keep_none_and_true_counts_flat(qtbot, tmp_path, make_clip, ramp):
    from PySide6.QtWidgets import QApplication

    from promptlab.gui.window import MainWindow

    win = MainWindow(Session(settings=Settings(size=64)))
    qtbot.addWidget(win)
    win.resize(1000, 700)
    win.show()
    assert win.open(str(make_clip(tmp_path / "a.mkv", ramp(8, 64, 64))))
    qtbot.waitUntil(lambda: len(win.viewer.originals) == 8, timeout=30_000)
    win.pipeline = "test_gui_fakes:quick_pipeline"

    def play(frames: int) -> None:
        for i in range(frames):
            win.transport.seek(i % 8)     # indexChanged -> viewer and plot cursors
            win.controls.changed.emit()   # a bare signal
            win.runner.record.emit(Progress(0.5, "soak"))  # a record through the window's handler

    play(50)  # warm-up: first-use caches
    win.grab()
    before = singleton_refs()
    play(300)
    assert_flat(before, 900, "Signal.emit")

    before = singleton_refs()
    for _ in range(20):
        win.grab()  # paints every graphics item: images, curves, lines, labels
        QApplication.processEvents()
    assert_flat(before, 20 * 40, "QGraphicsItem.paint")

    with qtbot.waitSignal(win.jobDone, timeout=120_000):
        win.run()
    before = singleton_refs()
    for rank in (3, 5, 6):
        win.controls.rank.setValue(rank)
        with qtbot.waitSignal(win.jobDone, timeout=120_000) as sig:
            win.run()
        assert sig.args == ["finished"], win.state.last_error
        win.grab()
    assert_flat(before, 3 * 100, "job runs")
    assert np.array_equal(win.viewer.recon[7], np.full((64, 64, 3), 49, np.uint8))
