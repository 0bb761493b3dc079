"""The network view driven as a user drives it: open it, choose a trace, Run, Play, switch the rule.

The job runs in the window's job process (the streaming engine, as `promptlab stream`); the
view's event loop stays free; the plotted curves are the session records; Play shows what each
viewer sees, frozen during a stall; switching the rule redraws without a new job.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt, QTimer  # noqa: E402

from promptlab.cli import stream as stream_cli  # noqa: E402
from promptlab.stream.engine import Network  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO / "tests" / "data" / "traces"
ATT = TRACES / "ATT-LTE-driving-2016.down"
TMOBILE = TRACES / "TMobile-UMTS-driving.down"
ARGS = [str(REPO / "promptlab" / "assets" / "sky.mp4"), "--model", "tiny", "--size", "64", "--rank", "4",
        "--bits", "4", "--interval", "2", "--gop", "4", "--frames", "0:8", "--iters", "2", "--first-iters", "4",
        "--threads", "1", "--trace", str(ATT)]


def _curve(plot, name):
    item = next(i for i in plot.listDataItems() if i.name() == name)
    return item.getData()


def test_network_view_open_choose_run_play_switch(qtbot, lab_dirs, tmp_path):
    from promptlab.gui.network_view import NetworkView

    spec = stream_cli.spec_from_args(stream_cli.parser().parse_args(ARGS))
    # a tight link, so that stalls happen and can be watched
    view = NetworkView(spec.ladder, traces=[str(TMOBILE), str(ATT)], network=Network(duration_s=12))
    qtbot.addWidget(view)
    view.show()
    view.trace_box.setCurrentIndex(view.trace_box.findText(ATT.name))
    view.scale.setValue(0.0015)
    gaps: list[float] = []
    last = [time.thread_time()]

    def tick() -> None:  # CPU time of the view's own thread between two ticks: the time it was busy
        now = time.thread_time()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(20)
    with qtbot.waitSignal(view.jobDone, timeout=300_000) as sig:
        qtbot.mouseClick(view.run_btn, Qt.MouseButton.LeftButton)
    timer.stop()
    assert sig.args[0] == "finished", view.last_error
    assert view.run_btn.text() == "Run"
    assert len(gaps) > 10 and max(gaps) < 0.25, f"the view's thread was busy {max(gaps):.3f} s in one tick"

    # the plots are the records: LPIPS shown and buffers, both codecs
    s = view.sessions[(ATT.name, "promptlab", "throughput")]
    assert s.mapping["scale"] == pytest.approx(0.0015)
    x, y = _curve(view.p_lp, "promptlab")
    assert list(y) == [f.lpips for f in s.frames] and list(x) == view.playback["promptlab"].times
    assert _curve(view.p_lp, "h265")[1].tolist() == [f.lpips for f in view.sessions[(ATT.name, "h265", "throughput")].frames]
    _, buf = _curve(view.p_buf, "promptlab buffer")
    assert buf[2::3].tolist() == [g.buffer_after_s for g in s.delivery.segments]
    assert "LPIPS shown" in view.summary.text()

    # Play: the clock runs and both panes show a frame from the chosen rung's reconstruction
    qtbot.mouseClick(view.play_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.clock > s.delivery.startup_s + 0.3, timeout=20_000)
    qtbot.mouseClick(view.play_btn, Qt.MouseButton.LeftButton)
    assert not view.timer.isActive()
    for role in ("promptlab", "baseline"):
        assert not view.panes[role].pixmap().isNull()
        assert "LPIPS" in view.captions[role].text()
    assert view.captions["baseline"].text().startswith("h265 ")

    # during a stall the viewer's frame is frozen (the last one shown before it) and said so
    for codec, pb in view.playback.items():
        for a, b in pb.stall_spans[:3]:
            before, _ = pb.at(a - 1e-6)
            k, stalled = pb.at((a + b) / 2)
            assert stalled and k == before
            view.seek((a + b) / 2)
            assert "STALLED" in view.captions[codec].text()
    assert any(pb.stall_spans for pb in view.playback.values()), "the tight link should stall someone"

    # the pane shows the rung the session chose for that segment, at that clip frame
    pb = view.playback["promptlab"]
    t = pb.times[len(pb.times) // 2] + 1e-6
    view.seek(t)
    k, _ = pb.at(t)
    f = pb.session.frames[k]
    rung = pb.ladder.rungs[pb.session.delivery.segments[f.segment].rung]
    assert f"{rung.label}: frame {f.clip_frame}" in view.captions["promptlab"].text()
    img = view.panes["promptlab"].pixmap().toImage().convertToFormat(view.panes["promptlab"].pixmap().toImage().Format.Format_RGB888)
    shown = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())[:, :img.width() * 3]
    shown = shown.reshape(img.height(), img.width(), 3)[::2, ::2]
    assert np.array_equal(shown, view.recon[f"{rung.key}:{rung.codec}"][f.clip_frame])

    # switch the rule: redrawn from the sessions already simulated, no new job
    jobs = view.runner.jobs_started
    view.rule_box.setCurrentText("mpc")
    assert view.runner.jobs_started == jobs
    mpc = view.sessions[(ATT.name, "promptlab", "mpc")]
    assert _curve(view.p_lp, "promptlab")[1].tolist() == [f.lpips for f in mpc.frames]
    assert view.playback["promptlab"].session is mpc

    # another trace: Run again, and Run while it runs cancels it (the sessions shown stay)
    view.trace_box.setCurrentIndex(view.trace_box.findText(TMOBILE.name))
    with qtbot.waitSignal(view.jobDone, timeout=300_000) as sig:
        qtbot.mouseClick(view.run_btn, Qt.MouseButton.LeftButton)
        assert view.run_btn.text() == "Cancel"
        qtbot.mouseClick(view.run_btn, Qt.MouseButton.LeftButton)
    assert sig.args[0] in ("cancelled", "finished") and view.run_btn.text() == "Run"
    assert (ATT.name, "promptlab", "mpc") in view.sessions

    out = view.screenshot(tmp_path / "network.png")
    assert out.stat().st_size > 10_000
    view.close()


def test_the_lab_window_opens_the_network_view_for_its_clip(qtbot, lab_dirs):
    """Ctrl+Shift+N in the lab window: the network view of the open clip at the window's settings,
    segments of one keyframe interval (no GOP set), the range cut to whole segments."""
    from promptlab.gui.network_view import NetworkView
    from promptlab.gui.session import Session
    from promptlab.gui.window import MainWindow
    from promptlab.settings import Settings

    small = Settings(model="tiny", size=64, rank=4, interval=5, iters=2, first_iters=2, threads=1)
    w = MainWindow(Session(settings=small))
    qtbot.addWidget(w)
    w.show()
    w.open_network_view()  # no clip yet: said so, nothing opened
    assert getattr(w, "network_view", None) is None and "open a clip" in w.state.last_error
    sky = str(REPO / "promptlab" / "assets" / "sky.mp4")
    assert w.open(sky, frames="0:11"), w.last_error
    qtbot.waitUntil(lambda: len(w.viewer.originals) == 11, timeout=30_000)
    qtbot.keyClick(w, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: isinstance(getattr(w, "network_view", None), NetworkView), timeout=10_000)
    spec = w.network_view.ladder_spec
    assert spec.source == sky and spec.frames == (0, 10) and spec.settings.gop == 5
    assert spec.settings.replace(gop=0) == w.controls.settings()
    w.network_view.close()
    w.close()
