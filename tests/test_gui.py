"""Acceptance of the lab window with the real engine (built-in model, tiny budget, offscreen Qt).

Open the sky clip, run encode+decode+metrics, one plot point per frame, click a point to seek,
cancel mid-run, change rank and re-run, reuse a cached result with no job, and an event loop
that is never blocked for long while an inversion runs in the worker process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, Qt, QTimer  # noqa: E402

from promptlab.gui.session import Session  # noqa: E402
from promptlab.runs.records import FrameResult, Progress, Stage  # noqa: E402
from promptlab.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SKY = REPO / "promptlab" / "assets" / "sky.mp4"  # the bundled sample clip

SMALL = Settings(model="tiny", size=64, rank=4, interval=5, iters=5, first_iters=10, patience=5,
                 first_patience=5, perceptual="none", threads=1)
N = 11


@pytest.fixture(autouse=True)
def _dirs(lab_dirs):
    return lab_dirs


@pytest.fixture
def win(qtbot):
    from promptlab.gui.window import MainWindow

    w = MainWindow(Session(settings=SMALL))
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    assert w.open(str(SKY), frames=f"0:{N}"), w.last_error
    qtbot.waitUntil(lambda: len(w.viewer.originals) == N, timeout=30_000)
    yield w
    w.close()


def run_and_wait(qtbot, w, timeout=300_000) -> str:
    with qtbot.waitSignal(w.jobDone, timeout=timeout) as sig:
        w.run()
    return sig.args[0]


def click_plot_point(qtbot, w, frame: int) -> None:
    """A real mouse click on the quality plot's point for `frame`."""
    p = w.plots
    p.redraw()
    y = p.quality.values[frame]
    scene = p.q.vb.mapViewToScene(pg_point(frame, y))
    view_pos = p.glw.mapFromScene(scene)
    qtbot.mouseClick(p.glw.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(view_pos.x(), view_pos.y()))


def pg_point(x, y):
    from PySide6.QtCore import QPointF

    return QPointF(float(x), float(y))


@pytest.mark.slow
def test_run_plots_seek_rerun_and_reuse(qtbot, win):
    assert run_and_wait(qtbot, win) == "finished", win.state.last_error
    assert win.runner.jobs_started == 1
    # one point per frame on every plot, one reconstruction per frame in the viewer
    assert sorted(win.plots.quality.values) == list(range(N))
    assert sorted(win.plots.bytes.values) == list(range(N))
    assert sorted(win.plots.gen.values) == list(range(N))
    assert sorted(win.viewer.recon) == list(range(N))
    assert win.viewer.recon[0].shape == (64, 64, 3)
    total = sum(win.plots.bytes.values.values())
    assert total == pytest.approx(win.state.summary.total_bytes, rel=1e-6)  # every byte counted
    # clicking a plot point seeks the viewer
    win.seek(0)
    click_plot_point(qtbot, win, 7)
    qtbot.waitUntil(lambda: win.viewer.index == 7, timeout=5_000)
    assert win.transport.index() == 7
    # keyboard stepping
    qtbot.keyClick(win, Qt.Key.Key_Right)
    assert win.viewer.index == 8
    # change rank: results become stale, a re-run computes new ones
    first_key = win.state.shown_key
    win.controls.rank.setValue(2)
    assert win.is_stale() and "STALE" in win.banner.text()
    assert run_and_wait(qtbot, win) == "finished", win.state.last_error
    assert win.runner.jobs_started == 2 and win.state.shown_key != first_key
    # back to the first rank: the stored result comes back and no job runs
    win.controls.rank.setValue(4)
    assert win.is_stale()
    assert run_and_wait(qtbot, win) == "cached"
    assert win.runner.jobs_started == 2 and win.state.shown_key == first_key
    assert sorted(win.plots.quality.values) == list(range(N)) and len(win.viewer.recon) == N
    assert not win.is_stale()


@pytest.mark.slow
def test_the_plotted_points_are_the_run_services_records(qtbot, win, tmp_path):
    """The window plots exactly what run_lab yields for the same settings, live and replayed from the cache."""
    from promptlab.runs.lab import RunSpec, run_lab

    s, st = win.controls.settings(), win.state
    spec = RunSpec(settings=s, source=st.source, frames=st.run_frames(), cache_root=str(tmp_path / "direct"))
    direct = [r for r in run_lab(spec) if isinstance(r, FrameResult) and r.stage == "decode"]
    assert [r.index for r in direct] == list(range(N))

    def plotted_equal_records() -> None:
        p = win.plots
        p.redraw()
        metric = "lpips" if p.quality_is_lpips else "psnr"
        for series, name in ((p.quality, metric), (p.bytes, "bytes")):
            x, y = series.item.getData()  # what is drawn
            assert list(x) == list(range(N))
            assert list(y) == pytest.approx([getattr(r, name) for r in direct], rel=1e-5, abs=1e-7), name
        for mine, theirs in zip((st.rows[i] for i in range(N)), direct, strict=True):  # every number but the time
            for k in ("index", "stage", "bytes", "keyframe", "lpips", "psnr", "ssim", "ms_ssim"):
                a, b = getattr(mine, k), getattr(theirs, k)
                assert a == b or a == pytest.approx(b, rel=1e-5, abs=1e-7), (mine.index, k)

    assert run_and_wait(qtbot, win) == "finished", win.state.last_error
    assert win.runner.jobs_started == 1
    plotted_equal_records()
    win.plots.clear()
    assert run_and_wait(qtbot, win) == "cached"
    plotted_equal_records()


@pytest.mark.slow
def test_cancel_mid_run_stops_within_an_iteration(qtbot, win):
    win.controls.first_iters.setValue(100_000)  # far longer than the test
    iterations = []
    win.runner.record.connect(lambda r: iterations.append(r) if isinstance(r, Progress) and "iteration" in r.text else None)
    win.run()
    qtbot.waitUntil(lambda: len(iterations) >= 3, timeout=120_000)
    proc = win.runner._proc
    with qtbot.waitSignal(win.jobDone, timeout=30_000) as sig:
        win.cancel()
    assert sig.args == ["cancelled"]
    assert not proc.is_alive()
    assert win.controls.run_btn.isEnabled() and not win.runner.busy()
    assert win.state.shown_key is None  # nothing half-done is presented as a result
    assert not win.cache.has(win.current_key())


@pytest.mark.slow
def test_event_loop_never_blocked_while_inverting(qtbot, win):
    """A 10 ms timer keeps firing from the first iteration to the end of the run.

    "Blocked" means the window's own thread was busy: for every gap between ticks, the CPU
    time the main thread spent inside it (time.thread_time) must stay under 100 ms. Wall-clock
    gaps are reported too; on a machine loaded by other processes they can exceed 100 ms while
    the window's process is merely waiting for a core, which is not the window's doing.
    """
    win.controls.first_iters.setValue(60)
    win.controls.iters.setValue(30)
    ticks: list[tuple[float, float]] = []
    measuring = {"on": False}

    def tick():
        if measuring["on"]:
            ticks.append((time.perf_counter(), time.thread_time()))

    def on_record(rec):
        if isinstance(rec, Progress) and "iteration" in rec.text and not measuring["on"]:
            measuring["on"] = True
            tick()

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    win.runner.record.connect(on_record)
    outcome = run_and_wait(qtbot, win)
    measuring["on"] = False
    timer.stop()
    assert outcome == "finished", win.state.last_error
    assert len(ticks) > 50, "the run was too short to measure"
    wall = [b[0] - a[0] for a, b in zip(ticks, ticks[1:], strict=False)]
    busy = [b[1] - a[1] for a, b in zip(ticks, ticks[1:], strict=False)]
    worst = max(range(len(busy)), key=busy.__getitem__)
    print(f"ticks {len(ticks)}, max wall gap {max(wall) * 1000:.0f} ms, "
          f"max busy gap {busy[worst] * 1000:.0f} ms (wall {wall[worst] * 1000:.0f} ms)")
    assert busy[worst] < 0.100, f"the event loop was busy for {busy[worst] * 1000:.0f} ms in one gap"
    # and most of the time the loop really runs at its 10 ms pace
    assert sorted(wall)[len(wall) // 2] < 0.100


@pytest.mark.slow
def test_cli_screenshot_path(tmp_path):
    out = tmp_path / "gui.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "promptlab", "gui", str(SKY), "--frames", "0:6", "--size", "64",
           "--rank", "4", "--interval", "5", "--iters", "3", "--first-iters", "5", "--run",
           "--screenshot", str(out), "--exit"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    from PySide6.QtGui import QImage

    img = QImage(str(out))
    assert not img.isNull() and img.width() > 600 and img.height() > 400
    bad = subprocess.run([sys.executable, "-m", "promptlab", "gui", str(tmp_path / "nope.mp4"), "--exit"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "error" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_cli_one_run_five_views_five_screenshots(tmp_path):
    """`--run --view V --zoom N --screenshot --exit`: one run (the later ones reuse it) and five
    pictures that differ in far more than the view buttons; --zoom 8 changes the side view too."""
    from PySide6.QtGui import QImage

    from promptlab.gui.views import MODES

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    base = [sys.executable, "-m", "promptlab", "gui", str(SKY), "--frames", "0:6", "--size", "64", "--rank", "4",
            "--interval", "5", "--iters", "3", "--first-iters", "5", "--baseline", "--run", "--exit"]

    def shot(name: str, *flags: str) -> np.ndarray:
        out = tmp_path / f"{name}.png"
        r = subprocess.run([*base, *flags, "--screenshot", str(out)], env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        img = QImage(str(out)).convertToFormat(QImage.Format.Format_RGB888)
        w, h, bpl = img.width(), img.height(), img.bytesPerLine()
        return np.frombuffer(img.constBits(), np.uint8).reshape(h, bpl)[:, : 3 * w].reshape(h, w, 3).copy()

    shots = {v: shot(v, "--view", v) for v in MODES}
    shots["side-8x"] = shot("side-8x", "--view", "side", "--zoom", "8")
    names = list(shots)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert shots[a].shape == shots[b].shape
            changed = np.any(shots[a] != shots[b], axis=2).mean()
            assert changed > 0.02, (a, b, changed)


@pytest.mark.slow
def test_a_cache_policy_change_decodes_again_and_says_so(qtbot, win):
    """Generation times depend on the cache policy: a stored result measured with another policy
    is not shown as this one's; the stored stream is decoded again (no new encode) and the timing
    plot names the policy its times were measured with."""
    win.controls.cache.setCurrentText("none")
    assert run_and_wait(qtbot, win) == "finished", win.state.last_error
    assert "with cache none" in win.plots.t.titleLabel.text
    stages: list[str] = []
    win.runner.record.connect(lambda r: stages.append(r.stage) if isinstance(r, Stage) else None)
    win.controls.cache.setCurrentText("lossless")
    with qtbot.waitSignal(win.jobDone, timeout=300_000) as sig:
        win.run()
        assert "timed with cache none: decoding its stream again with cache lossless" in win.controls.status.text()
    assert sig.args == ["finished"], win.state.last_error
    assert win.runner.jobs_started == 2 and "decode" in stages and "encode" not in stages
    assert "with cache lossless" in win.plots.t.titleLabel.text
    assert run_and_wait(qtbot, win) == "cached" and win.runner.jobs_started == 2
    assert "with cache lossless" in win.plots.t.titleLabel.text


@pytest.mark.slow
def test_cache_policy_switches_live_and_the_timing_plot_shows_it(qtbot, win, tmp_path):
    """Switching the cache policy during generation applies from the next segment (no restart)."""
    win.controls.cache.setCurrentText("none")
    frames: list[FrameResult] = []
    switched = {"at": None}

    def on_record(rec):
        if isinstance(rec, FrameResult) and rec.stage == "decode":
            frames.append(rec)
            if switched["at"] is None:
                switched["at"] = len(frames)
                win.controls.cache.setCurrentText("lossless")  # while the job runs

    win.runner.record.connect(on_record)
    assert run_and_wait(qtbot, win) == "finished", win.state.last_error
    assert win.runner.jobs_started == 1
    first_seg = [f for f in frames if f.keyframe == 0]
    assert first_seg and all(f.reused == 0 for f in first_seg)  # generated before the switch
    switched_segs = {f.keyframe for f in frames if f.reused > 0}
    assert switched_segs, "the switch never reached the running decoder"
    # a policy applies to whole segments, from the segment after the switch to the end
    assert switched_segs == set(range(min(switched_segs), max(f.keyframe for f in frames) + 1))
    # the generation-time plot holds the receiver's per-frame times of this very run
    by_index = {f.index: f.gen_ms for f in frames}
    assert len(win.plots.gen.values) == N
    assert [win.plots.gen.values[i] for i in range(N)] == pytest.approx([by_index[i] for i in range(N)])
    # and the window exports what the export CLI makes, from this run
    files = win.export(tmp_path)
    assert all(f.exists() and f.stat().st_size > 0 for f in files) and len(files) == 6


def test_opening_a_stream_takes_every_setting_it_records(qtbot, tmp_path):
    """A .plab's header is the settings it was made with (StreamHeader.to_settings); the rest stay the session's."""
    import torch

    from promptlab.codec.container import KeyframeRecord, StreamHeader, write_stream
    from promptlab.codec.quant import RunningRange, quantize
    from promptlab.codec.schedule import segments
    from promptlab.codec.shapes import shape_for
    from promptlab.gui.window import MainWindow

    made = SMALL.replace(seed=5, blend=0.25, interp="slerp", crop="pad", rank=3, interval=4, fps=25.0)
    h = StreamHeader.from_settings(made, 9, shape_for("tiny"))
    recs = []
    for _ in segments(9, 4):
        u, v = torch.rand(h.tokens, h.rank), torch.rand(h.rank, h.context_dim)
        qu, qv = RunningRange(8).update(u), RunningRange(8).update(v)
        recs.append(KeyframeRecord(quantize(u, qu), quantize(v, qv), qu, qv))
    path = tmp_path / "s.plab"
    write_stream(path, h, torch.zeros(h.latent_shape), recs)
    w = MainWindow(Session(settings=SMALL.replace(iters=7)))
    qtbot.addWidget(w)
    assert w.open(str(path)), w.last_error
    assert w.controls.settings() == made.replace(iters=7)
    w.close()
