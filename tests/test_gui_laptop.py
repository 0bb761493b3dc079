"""The lab on a laptop and what its status, marks, plots and playback say (issue: fits 1280×720).

The window is built as `promptlab gui` builds it (MainWindow over the user's session), a clip
is opened from a 150-character path, and every visible button and label must lie inside the
window at 1366×768. The runs use the real engine at a tiny budget.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from promptlab.gui.session import Session  # noqa: E402
from promptlab.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SKY = REPO / "promptlab" / "assets" / "sky.mp4"
SMALL = Settings(model="tiny", size=64, rank=4, interval=4, iters=3, first_iters=5, patience=5,
                 first_patience=5, perceptual="none", threads=1)
N = 5


@pytest.fixture(autouse=True)
def _dirs(lab_dirs):
    return lab_dirs


def long_clip(tmp_path: Path, length: int = 150) -> Path:
    """A copy of the sample clip whose absolute path is exactly `length` characters long."""
    base = tmp_path / "clips"
    name = "sky.mp4"
    room = length - len(str(base)) - 1 - len(name) - 1
    assert room > 10, "tmp path too long for this test"
    folder = base / ("very-long-folder-name-" * 10)[:room]
    folder.mkdir(parents=True)
    clip = folder / name
    shutil.copy(SKY, clip)
    assert len(str(clip)) == length
    return clip


@pytest.fixture
def win(qtbot):
    from promptlab.gui.window import MainWindow

    w = MainWindow(Session(settings=SMALL))
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def open_and_wait(qtbot, w, path: Path, n: int = N) -> None:
    assert w.open(str(path), frames=f"0:{n}"), w.last_error
    qtbot.waitUntil(lambda: len(w.viewer.originals) == n, timeout=30_000)


def run_and_wait(qtbot, w, timeout: int = 300_000) -> str:
    with qtbot.waitSignal(w.jobDone, timeout=timeout) as sig:
        w.run()
    return sig.args[0]


def outside(w) -> list[str]:
    """Visible buttons and labels that do not lie wholly inside the window."""
    from PySide6.QtCore import QRect
    from PySide6.QtWidgets import QAbstractButton, QLabel

    inside = QRect(0, 0, w.width(), w.height())
    bad = []
    for c in w.findChildren(QAbstractButton) + w.findChildren(QLabel):
        if not c.isVisibleTo(w) or c.width() == 0:
            continue
        # a widget inside a scroll area only needs to lie inside the area's viewport when scrolled to
        scroll = w.controls_scroll
        if scroll.isAncestorOf(c):
            if c.width() > scroll.viewport().width():
                bad.append(f"{type(c).__name__} {getattr(c, 'text', lambda: '')()!r} wider than the controls")
            continue
        top_left = c.mapTo(w, c.rect().topLeft())
        r = QRect(top_left, c.size())
        if not inside.contains(r):
            bad.append(f"{type(c).__name__} {getattr(c, 'text', lambda: '')()[:40]!r} at {r.getRect()}")
    return bad


def test_a_long_path_fits_a_laptop_screen(qtbot, win, tmp_path):
    clip = long_clip(tmp_path)
    open_and_wait(qtbot, win, clip)
    hint = win.minimumSizeHint()
    assert hint.width() <= 1280 and hint.height() <= 720, hint
    win.resize(1366, 768)
    qtbot.waitUntil(lambda: win.width() == 1366, timeout=5_000)
    assert outside(win) == []
    # the path is elided in the middle, whole in the tooltip
    label = win.source_label
    assert label.toolTip().startswith(str(clip)) and str(clip) in label.full_text()
    shown = label.shown_text()
    assert "…" in shown and shown.endswith(label.full_text()[-5:])
    # the model drop-down shows the model's name
    box = win.controls.model
    assert box.currentText() == "tiny" and "available" in box.toolTip()  # the name, whole; the why in the tip
    assert box.fontMetrics().horizontalAdvance(box.currentText()) < box.width() - 20
    win.resize(1280, 720)
    qtbot.waitUntil(lambda: win.width() == 1280, timeout=5_000)
    assert outside(win) == []


@pytest.mark.skipif(not shutil.which("xvfb-run"), reason="xvfb-run is not installed")
def test_the_window_fits_a_real_x_screen(tmp_path):
    """The same under a real X server at 1366×768 (window manager-free Xvfb)."""
    clip = long_clip(tmp_path)
    code = (
        "import sys\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from promptlab.gui.window import MainWindow\n"
        "app = QApplication(sys.argv)\n"
        "w = MainWindow(); w.show(); w.open(sys.argv[1], frames='0:3')\n"
        "for _ in range(50): app.processEvents()\n"
        "h = w.minimumSizeHint(); w.resize(1366, 768)\n"
        "for _ in range(50): app.processEvents()\n"
        "print('SIZE', h.width(), h.height(), w.width(), w.height())\n"
        "w.close()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    env["PROMPTLAB_CONFIG_DIR"] = str(tmp_path / "config")
    r = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1366x768x24", sys.executable, "-c", code, str(clip)],
                       capture_output=True, text=True, timeout=120, env=env)
    if "could not connect to display" in r.stderr or "xcb" in r.stderr and r.returncode:
        pytest.skip(f"no usable X platform here: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr[-2000:]
    size = next(line for line in r.stdout.splitlines() if line.startswith("SIZE")).split()[1:]
    hw, hh, w, h = map(int, size)
    assert hw <= 1280 and hh <= 720 and w <= 1366 and h <= 768


@pytest.mark.slow
def test_status_marks_rate_and_cancel_across_runs(qtbot, win, tmp_path):
    """Many runs in one window: fitted, reused, STALE after a change, PREVIEW of a transcode,
    cancelled (status and progress reset), and the rate estimate is an honest bound."""
    from promptlab.codec import rate

    open_and_wait(qtbot, win, SKY)
    est = rate.estimate(win.controls.settings(), N)
    assert "at most" in win.controls.estimate.text() and "bound" in win.controls.estimate.text()
    assert run_and_wait(qtbot, win) == "finished", win.state.last_error
    s = win.state.summary
    status = win.controls.status.text()
    assert status.startswith("fitted now:") and f"{s.kbps:.1f} kbps" in status
    assert f"{s.lpips:.4f}" in status and f"{s.severe_frames} of {N} frames severe" in status
    # the achieved rate never exceeds the estimate's bound, and the bound is not far off
    assert s.kbps <= est.kbps
    assert win.viewer.mark_label.mark == "" and not win.plots.mark_label.isVisible()
    assert win.controls.progress.value() == 1000
    # the same settings again: reused, and the status says so with the same numbers
    assert run_and_wait(qtbot, win) == "cached"
    status = win.controls.status.text()
    assert status.startswith("reused") and f"{s.kbps:.1f} kbps" in status and "severe" in status
    # another rank: what is shown is STALE, on the viewer and on the plots
    win.controls.rank.setValue(2)
    assert win.viewer.mark_label.mark == "STALE" and win.plots.mark_label.isVisible()
    assert "STALE" in win.plots.mark_label.text()
    # a preview of the transcode at these settings is marked PREVIEW until a fit replaces it
    with qtbot.waitSignal(win.jobDone, timeout=120_000) as sig:
        assert win.start_preview()
    assert sig.args[0] == "finished"
    assert win.viewer.mark_label.mark == "PREVIEW" and "PREVIEW" in win.plots.mark_label.text()
    assert win.controls.status.text().startswith("PREVIEW")
    # cancel a run: the status says so and the progress bar is reset
    win.pipeline = "test_gui_fakes:slow_pipeline"
    win.controls.rank.setValue(3)
    assert win.run()
    qtbot.waitUntil(lambda: len(win.viewer.recon) >= 2, timeout=60_000)
    with qtbot.waitSignal(win.jobDone, timeout=30_000) as sig:
        win.cancel()
    assert sig.args[0] == "cancelled"
    assert win.controls.status.text().startswith("cancelled") and win.controls.progress.value() == 0


def test_a_one_frame_plot_has_integer_frame_ticks(qtbot):
    from promptlab.gui.plots import PlotPanel

    p = PlotPanel()
    qtbot.addWidget(p)
    p.resize(900, 400)
    p.show()
    p.add_frame({"index": 0, "lpips": 0.3, "bytes": 700.0, "gen_ms": 50.0})
    p.redraw()
    for plot in (p.q, p.bw, p.t):
        lo, hi = plot.vb.viewRange()[0]
        axis = plot.getAxis("bottom")
        ticks = [v for _, values in axis.tickValues(lo, hi, 800) for v in values]
        assert ticks and all(float(v).is_integer() for v in ticks), ticks
    # the running mean is drawn on the quality plot, and the legend sits beside the plots
    assert p.quality_mean.values == {0: pytest.approx(0.3)}
    assert "running mean" in p.key.text() and not p.glw.isAncestorOf(p.key)


def test_loop_and_speed_playback(qtbot):
    from promptlab.gui.transport import SPEEDS, Transport

    t = Transport()
    qtbot.addWidget(t)
    t.set_count(3, fps=10.0)
    assert t.interval_ms() == 100
    t.set_speed(2.0)
    assert t.interval_ms() == 50 and SPEEDS[0] == 0.25 and SPEEDS[-1] == 2.0
    t.set_speed(0.25)
    assert t.interval_ms() == 400
    t.loop.setChecked(True)
    t.toggle_play()
    seen = []
    for _ in range(7):
        t._tick()
        seen.append(t.index())
    assert seen == [1, 2, 0, 1, 2, 0, 1] and t.playing()
    t.loop.setChecked(False)
    t.seek(2)
    t._tick()
    assert not t.playing() and t.index() == 2


def test_space_toggles_playback_in_the_window(qtbot, win):
    from PySide6.QtCore import Qt

    open_and_wait(qtbot, win, SKY, n=3)
    win.activateWindow()
    assert not win.transport.playing()
    qtbot.keyClick(win, Qt.Key.Key_Space)
    assert win.transport.playing()
    qtbot.keyClick(win, Qt.Key.Key_Space)
    assert not win.transport.playing()


def test_solver_off_restores_the_users_rank(qtbot):
    from promptlab.gui.controls import Controls

    c = Controls(SMALL.replace(rank=6))
    qtbot.addWidget(c)
    c.rank.setValue(5)
    c.use_target.setChecked(True)
    c.target.setValue(1.0)             # a low target: the solver picks a small rank
    solved = c.rank.value()
    assert solved != 5
    c.use_target.setChecked(False)
    assert c.rank.value() == 5 and c.settings().rank == 5


def test_window_size_option(capsys):
    from promptlab.cli.gui import options

    assert options(["--window", "1366x768"]).window == (1366, 768)
    assert options([]).window is None
    for bad in ("big", "1366", "100x100"):
        with pytest.raises(SystemExit) as info:
            options(["--window", bad])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("promptlab gui: error: argument --window")


def test_cancel_says_what_it_left_through_views_playback_and_another_clip(qtbot, win):
    """A user's evening in one window (fake job, real window): a run cancelled after some frames
    while they switch views and play, one cancelled before its first frame, one dropped by
    opening another clip. Each time the status says what is on screen, the bar is reset, and
    partial frames wear PARTIAL on the viewer and the plots; a new run takes the mark away."""
    from promptlab.gui.viewer import MODES

    open_and_wait(qtbot, win, SKY, n=3)
    win.pipeline = "test_gui_fakes:slow_pipeline"
    assert win.run()
    qtbot.waitUntil(lambda: len(win.viewer.recon) >= 2, timeout=60_000)
    assert win.viewer.mark_label.mark == ""  # a run in progress is not marked: it is the current settings
    for mode in MODES:
        win.set_mode(mode)
    win.set_mode("side")
    win.transport.toggle_play()
    assert win.transport.playing() and win.controls.progress.value() >= 0
    with qtbot.waitSignal(win.jobDone, timeout=30_000) as sig:
        win.cancel()
    assert sig.args[0] == "cancelled"
    n = len(win.state.rows)
    status = win.controls.status.text()
    assert n >= 2 and status.startswith(f"cancelled: the {n} frames shown are partial") and "not saved" in status
    assert win.controls.progress.value() == 0
    assert win.viewer.mark_label.mark == "PARTIAL" and "PARTIAL" in win.plots.mark_label.text()
    assert win.plots.mark_label.isVisible() and win.viewer.mark_label.isVisible()
    win.transport.toggle_play()
    # cancelled before the job yields a frame: nothing is shown, and the status does not claim any
    assert win.run()
    assert win.viewer.mark_label.mark == ""  # the new run cleared the partial frames and their mark
    with qtbot.waitSignal(win.jobDone, timeout=60_000) as sig:
        win.cancel()
    assert sig.args[0] == "cancelled"
    assert not win.state.rows and win.controls.status.text().startswith("cancelled before any frame")
    assert "partial" not in win.controls.status.text() and win.viewer.mark_label.mark == ""
    assert win.controls.progress.value() == 0
    # another clip opened mid-run: the job is dropped, nothing of it stays, the bar is reset
    assert win.run()
    qtbot.waitUntil(lambda: len(win.viewer.recon) >= 1, timeout=60_000)
    with qtbot.waitSignal(win.jobDone, timeout=60_000):
        open_and_wait(qtbot, win, SKY, n=2)
    qtbot.waitUntil(lambda: not win.runner.busy(), timeout=30_000)
    assert "another source was opened" in win.controls.status.text()
    assert win.controls.progress.value() == 0 and not win.state.rows and win.viewer.mark_label.mark == ""
