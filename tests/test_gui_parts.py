"""GUI building blocks without a model job: results cache, session, viewer, plots, controls, errors."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import process_alive

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from promptlab.gui.session import Session, first_run_settings, load_session, save_session  # noqa: E402
from promptlab.runs.results import ResultsCache, result_key  # noqa: E402
from promptlab.settings import Settings, load_preset  # noqa: E402

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _dirs(lab_dirs):
    return lab_dirs


def test_result_key_names_what_changes_the_stream(tmp_path):
    src = tmp_path / "clip"
    src.mkdir()
    (src / "00000.png").write_bytes(b"x")
    s = Settings(size=64)
    k = result_key(src, s, (0, 5))
    assert k == result_key(src, s, (0, 5))
    assert k != result_key(src, s.replace(rank=4), (0, 5))
    assert k != result_key(src, s, (0, 6))
    assert k == result_key(src, s.replace(cache="none", device="cpu"), (0, 5))  # not an encode key
    os.utime(src / "00000.png", ns=(1, 10**18))
    assert k != result_key(src, s, (0, 5))


def test_results_cache_round_trip(tmp_path):
    cache = ResultsCache()
    assert str(cache.root).startswith(str(tmp_path / "cache"))
    recon = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
    assert cache.load("k") is None
    cache.save("k", [{"index": 0, "psnr": 30.0}, {"index": 1, "psnr": np.float32(31.0)}], {"kbps": 12.5}, recon)
    res = cache.load("k")
    assert res is not None and res.summary["kbps"] == 12.5 and res.frames[1]["psnr"] == 31.0
    assert np.array_equal(res.recon, recon)
    assert cache.has("k") and not cache.has("k", baseline=True)
    cache.save_baseline("k", [{"index": 0}], {"kbps": 13.0}, recon[:1])
    assert cache.has("k", baseline=True) and cache.load("k").baseline.shape == (1, 8, 8, 3)
    (cache.path("k") / "metrics.json").write_text("{broken")
    assert cache.load("k") is None


def test_session_persists_atomically_and_survives_garbage(tmp_path):
    s = Session(settings=Settings(rank=5, size=64), source="/x/clip.mp4", frames="0:9", view_mode="split")
    p = save_session(s)
    assert p.parent == tmp_path / "config" and not list(p.parent.glob("*.part*"))
    back = load_session()
    assert back.settings.rank == 5 and back.frames == "0:9" and back.view_mode == "split"
    p.write_text(json.dumps({"version": 999}))
    assert load_session().settings == first_run_settings() == load_preset("preview")
    p.write_text("not json")
    assert load_session().source is None


def test_viewer_modes_wipe_diff_and_pixel_readout(qtbot):
    from promptlab.gui.viewer import Viewer, abs_diff_heat

    v = Viewer()
    qtbot.addWidget(v)
    a = np.zeros((16, 16, 3), np.uint8)
    b = np.full((16, 16, 3), 200, np.uint8)
    v.set_originals([a, a])
    v.set_recon(0, b)
    v.set_mode("split")
    v.set_split(0.25)
    wipe = v._images()[0][1]
    assert (wipe[:, :4] == 0).all() and (wipe[:, 4:] == 200).all()
    v.set_mode("diff")
    heat = v._images()[1][1]
    assert heat.shape == (16, 16, 3) and np.array_equal(heat, abs_diff_heat(a, b, v.gain))
    assert abs_diff_heat(a, a).max() == 0
    assert "original (0, 0, 0)" in v.read_pixel(3, 3) and "recon (200, 200, 200)" in v.read_pixel(3, 3)
    v.set_show_baseline(True)
    assert len(v._images()) == 3
    v.seek(99)
    assert v.index == 1 and v._images()[1][1] is None  # frame 1 has no reconstruction yet


def test_plots_one_point_per_frame_click_seeks_and_worst_list(qtbot):
    from promptlab.gui.plots import PlotPanel

    p = PlotPanel()
    qtbot.addWidget(p)
    p.resize(800, 600)
    p.show()
    for i in range(6):
        p.add_frame({"index": i, "lpips": 0.1 * i, "psnr": 30 - i, "bytes": 100.0, "gen_ms": 5.0})
    p.add_frame({"index": 2, "lpips": 0.05, "psnr": 29, "bytes": 100.0, "gen_ms": 5.0})  # replaces, no new point
    p.redraw()
    x, y = p.quality.item.getData()
    assert list(x) == [0, 1, 2, 3, 4, 5] and y[2] == pytest.approx(0.05)
    assert p.worst.item(0).text().startswith("frame    5")
    with qtbot.waitSignal(p.frameClicked) as sig:
        p.worst.itemClicked.emit(p.worst.item(0))
    assert sig.args == [5]
    p.set_quality_metric(False, "LPIPS unavailable: run promptlab fetch-weights lpips")
    assert "PSNR" in p.q.titleLabel.text and "fetch-weights" in p.q.titleLabel.text


def test_controls_target_bitrate_solves_rank_and_presets(qtbot, tmp_path):
    from promptlab.codec import rate
    from promptlab.gui.controls import Controls

    c = Controls(Settings(size=64))
    qtbot.addWidget(c)
    c.set_n_frames(11)
    c.use_target.setChecked(True)
    c.target.setValue(150.0)
    want = rate.solve_rank(150.0, c.settings(), 11)
    assert c.rank.value() == want and not c.rank.isEnabled()
    assert f"{rate.estimate(c.settings(), 11).kbps:.1f} kbps" in c.estimate.text()
    # the cache policy: a three-stop slider over every policy, which switches live
    assert c.cache.stops() == ["none", "lossless", "lossy"] and "live" in c.cache.toolTip()
    seen = []
    c.cacheChanged.connect(lambda p, t: seen.append((p, t)))
    c.cache.setCurrentText("lossy")
    assert c.cache_threshold.isEnabled() and seen[-1][0] == "lossy"
    c.cache.setCurrentText("none")
    assert not c.cache_threshold.isEnabled() and seen[-1][0] == "none"
    c.use_target.setChecked(False)
    c.rank.setValue(3)
    c.save_preset("mine")
    assert (tmp_path / "config" / "presets" / "mine.json").is_file()  # the user's folder, not the install
    c.rank.setValue(7)
    c.apply_preset("mine")
    assert c.settings().rank == 3


def _wait(qtbot, win, timeout=60_000):
    with qtbot.waitSignal(win.jobDone, timeout=timeout) as sig:
        pass
    return sig.args[0]


@pytest.mark.slow
def test_engine_errors_and_crashes_show_in_the_window(sky_frames, qtbot):
    from promptlab.gui.window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    assert win.open(str(sky_frames), frames="0:3")
    win.pipeline = "test_gui_fakes:failing_pipeline"
    with qtbot.waitSignal(win.jobDone, timeout=60_000) as sig:
        win.run()
    assert sig.args == ["error"] and "simulated engine error" in win.banner.text()
    win.pipeline = "test_gui_fakes:crashing_pipeline"
    with qtbot.waitSignal(win.jobDone, timeout=60_000) as sig:
        win.run()
    assert sig.args == ["error"] and "exit code 3" in win.banner.text()
    assert not win.runner.busy() and win.controls.run_btn.isEnabled()
    assert not win.open(str(sky_frames / "missing.mp4"))
    assert not win.banner.isHidden() and "Error" in win.banner.text()


def test_closing_the_window_stops_the_worker(sky_frames, qtbot):
    from promptlab.gui.window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    assert win.open(str(sky_frames), frames="0:3")
    win.pipeline = "test_gui_fakes:slow_pipeline"
    win.run()
    proc = win.runner._proc
    qtbot.waitUntil(lambda: len(win.viewer.recon) >= 2, timeout=60_000)
    t0 = time.monotonic()
    win.close()
    assert not proc.is_alive() and proc.exitcode is not None
    assert time.monotonic() - t0 < 10
    assert not win.runner.busy()


def test_report_summary_and_export_through_the_export_package(tmp_path):
    import csv

    import av
    import pytest

    from promptlab.errors import PromptlabError
    from promptlab.gui.report import EXPORT_FILES, comparison, export_all, summary_text
    from promptlab.runs.records import FrameResult, Summary

    s = Summary(method="promptlab", n_frames=4, total_bytes=1234, kbps=100.0, psnr=25.5, gen_ms=3.0,
                extra={"kbps_without_init": 40.0, "model": "tiny (random weights)"})
    t = summary_text(s)
    assert "100.0 kbps every byte counted" in t and "PSNR 25.50 dB (LPIPS unavailable)" in t
    b = Summary(method="h265", n_frames=4, total_bytes=1300, kbps=101.5, psnr=31.25)
    assert "H265 at 101.5 kbps: mean PSNR 31.25 dB" in summary_text(s, b)
    rng = np.random.default_rng(0)
    originals = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(4)]
    recon = {i: 255 - f for i, f in enumerate(originals)}
    rows = {i: FrameResult(index=i, stage="decode", bytes=100.0, gen_ms=2.0, psnr=10.0 + i, ssim=0.5, ms_ssim=0.5)
            for i in range(4)}
    with pytest.raises(PromptlabError, match="run the lab first"):
        comparison(originals, {}, rows, {}, {}, s, None, 30.0, 0, "tiny", 8)
    comp = comparison(originals, recon, rows, {}, {}, s, None, 30.0, 10, "tiny", 8)
    files = export_all(tmp_path, comp, 2)
    assert [p.name for p in files] == list(EXPORT_FILES) and all(p.exists() for p in files)
    table = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert len(table) == 4 and float(table[3]["promptlab_psnr"]) == 13.0
    with av.open(str(tmp_path / "comparison.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 4
    with pytest.raises(PromptlabError, match="--force|exists"):
        export_all(tmp_path, comp, 2)  # nothing is overwritten unless asked
    export_all(tmp_path, comp, 2, force=True)


def test_job_module_imports_without_qt():
    """The worker process imports promptlab.gui.jobs; it must not need Qt."""
    import subprocess

    code = ("import sys\nclass B:\n    def find_spec(self, n, p=None, t=None):\n"
            "        if n.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6'):\n"
            "            raise ImportError(n)\nsys.meta_path.insert(0, B())\n"
            "import promptlab.gui.jobs, promptlab.gui.state, promptlab.gui.session, promptlab.gui.report\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=TESTS.parent, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


# --------------------------------------------------------------------------- the window never breaks


@pytest.fixture
def clip(tmp_path, make_clip, ramp):
    """Two small lossless clips (8 frames, 64 px): the lab's sources for the window tests."""
    def make(name: str, n: int = 8) -> Path:
        return make_clip(tmp_path / name, ramp(n, 64, 64))
    return make


@pytest.fixture
def window(qtbot):
    from promptlab.gui.window import MainWindow

    w = MainWindow(Session(settings=Settings(size=64, rank=4, interval=5, iters=2, first_iters=3)))
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    yield w
    w.close()


def _image_size(v) -> float:
    it = v.items[0]
    return it.mapRectToScene(it.boundingRect()).width()


def test_viewer_keeps_the_frames_on_screen_size(qtbot):
    """Mode switches, the baseline pane and new results never shrink (or grow) the frame."""
    from PySide6.QtWidgets import QApplication

    from promptlab.gui.viewer import Viewer

    v = Viewer()
    qtbot.addWidget(v)
    v.resize(900, 500)
    v.show()
    frames = [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(3)]
    v.set_originals(frames)

    def settled() -> float:
        for _ in range(5):
            QApplication.processEvents()
        return _image_size(v)

    for zoom in (None, 2):  # fit to the pane (default), then an integer zoom
        if zoom:
            v.set_zoom(zoom)
        v.set_mode("side")
        before = settled()
        for _ in range(3):
            for mode in ("split", "diff", "side"):
                v.set_mode(mode)
                settled()
        v.set_show_baseline(True)
        settled()
        v.set_show_baseline(False)
        v.set_recon(0, frames[1])
        v.clear_results()
        v.set_recon(0, frames[2])
        assert settled() == pytest.approx(before, rel=0.01), (zoom, before)
    assert v.image_scale() > 1.0


def test_plots_share_one_frame_axis_and_frame0_does_not_squash_the_rest(qtbot):
    from PySide6.QtCore import QPointF

    from promptlab.gui.plots import PlotPanel

    p = PlotPanel()
    qtbot.addWidget(p)
    p.resize(900, 600)
    p.show()
    n = 41
    p.set_init(4105, 57)
    for i in range(n):
        p.add_frame({"index": i, "lpips": 0.5, "psnr": 20.0, "gen_ms": 20.0 + i,
                     "bytes": 4162.0 if i == 0 else 150.0})
    p.redraw()
    qtbot.wait(50)
    rects = [pl.vb.sceneBoundingRect() for pl in (p.q, p.bw, p.t)]
    assert len({(round(r.left()), round(r.right())) for r in rects}) == 1  # one frame axis
    for pl, r in zip((p.q, p.bw, p.t), rects, strict=True):
        x = pl.vb.mapViewToScene(QPointF(n - 1, 0)).x()
        assert r.left() < x < r.right() - 3  # the last frame's point is inside every plot
    bw = rects[1]
    y = p.bw.vb.mapViewToScene(QPointF(5, 150.0)).y()
    assert (bw.bottom() - y) / bw.height() > 0.5  # ordinary frames use the plot's height
    assert "frame 0: 4162 B off the top" in p.frame0_note.text()  # beside the plots, over no point
    top = p.bw.viewRange()[1][1]
    assert all(0 < p.running.values[i] < top for i in range(1, n))  # the running mean is drawn in range
    assert sum(p.bytes.values.values()) == 4162.0 + 150.0 * (n - 1)  # every byte still counted


def test_an_impossible_target_bitrate_blocks_run(window, clip):
    from promptlab.codec import rate

    assert window.open(str(clip("a.mkv")))
    c = window.controls
    c.use_target.setChecked(True)
    c.target.setValue(50_000.0)
    assert c.run_btn.isEnabled() and not c.problem
    c.target.setValue(1.0)  # below the smallest stream at these settings
    assert "below the smallest stream" in c.problem and not c.run_btn.isEnabled()
    window.run()
    assert window.runner.jobs_started == 0 and "cannot run these settings" in window.banner.text()
    c.set_running(True)
    c.set_running(False)
    assert not c.run_btn.isEnabled()  # a finished job does not re-enable Run either
    c.target.setValue(rate.estimate(c.settings().replace(rank=2), 8).kbps + 0.1)
    assert c.run_btn.isEnabled() and c.rank.value() == 2


def test_a_preset_applies_fully_and_its_errors_stay_in_the_window(window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    c = window.controls
    c.apply_preset("reference")
    assert c.settings().start == "uniform" and c.settings().batched is False
    c.apply_preset("preview")
    s = c.settings()
    assert s.start == Settings().start and s.batched is True
    assert s == load_preset("preview", Settings(fps=s.fps)) and s.model == "tiny2"  # the preset names its model
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert not c.apply_preset(str(broken))
    assert "broken.json" in window.banner.text() and c.settings() == s
    window.banner.setText("")
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("no/such/folder/x", True))
    c.save_btn.click()  # a name that cannot be a preset: said in the window, nothing raised
    assert "no/such/folder/x" in window.banner.text() and "Error" in window.banner.text()


def test_export_before_any_run_and_after_a_cached_result(window, clip, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from promptlab.gui.report import EXPORT_FILES
    from promptlab.runs.lab import cache_label
    from promptlab.runs.records import FrameResult, Summary

    out = tmp_path / "export"
    out.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(out))
    assert window.open(str(clip("a.mkv")))
    qtbot.waitUntil(lambda: len(window.viewer.originals) == 8, timeout=30_000)
    window.export_dialog()  # nothing to export yet
    assert "cannot export" in window.banner.text() and not list(out.iterdir())
    originals = np.stack(window.viewer.originals)
    rows = [FrameResult(index=i, stage="decode", bytes=100.0, gen_ms=1.0, lpips=0.1, psnr=30.0, ssim=0.9,
                        ms_ssim=0.9).row() for i in range(8)]
    s = window.controls.settings()
    summary = Summary(method="promptlab", n_frames=8, total_bytes=800, kbps=24.0,
                      extra={"model": "tiny (random weights)", "cache": cache_label(s.cache, s.cache_threshold),
                             "measured": True, "lpips_available": True})
    window.cache.save(window.current_key(), rows, summary.to_dict(), originals)
    with qtbot.waitSignal(window.jobDone) as sig:
        window.run()
    assert sig.args == ["cached"] and window.runner.jobs_started == 0
    window.export_dialog()
    qtbot.waitUntil(lambda: "exported" in window.controls.status.text(), timeout=60_000)
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPORT_FILES)
    assert "tiny (random weights)" in (out / "report.html").read_text()


def test_opening_another_clip_mid_run_drops_the_old_job(window, clip, qtbot):
    assert window.open(str(clip("a.mkv")))
    window.pipeline = "test_gui_fakes:slow_pipeline"
    window.run()
    qtbot.waitUntil(lambda: len(window.viewer.recon) >= 2, timeout=60_000)
    with qtbot.waitSignal(window.jobDone, timeout=30_000) as sig:
        assert window.open(str(clip("b.mkv", 5)))
    assert sig.args == ["cancelled"] and not window.runner.busy()
    qtbot.wait(200)
    assert not window.viewer.recon and not window.state.rows and not window.plots.quality.values
    assert "another source was opened" in window.controls.status.text()
    assert window.state.shown_key is None and window.controls.run_btn.isEnabled()


def test_a_stream_without_its_original_says_so(qtbot):
    """A .plab opened alone has no original: the plot and the summary say that, not "fetch weights"."""
    from promptlab.gui.plots import PlotPanel
    from promptlab.gui.report import summary_text
    from promptlab.runs.lab import Scorer
    from promptlab.runs.records import Summary

    scoring = Scorer(None, "alex", maps=True).status
    assert not scoring.measured and not scoring.lpips_available and "no original" in scoring.message
    p = PlotPanel()
    qtbot.addWidget(p)
    p.set_quality_metric(scoring.lpips_available, scoring.message, scoring.measured)
    title = p.q.titleLabel.text
    assert "no original" in title and "fetch-weights" not in title and "PSNR" not in title
    text = summary_text(Summary(method="promptlab", n_frames=3, total_bytes=100, kbps=10.0,
                                extra={"measured": False, "lpips_message": scoring.message}))
    assert "no original" in text and "LPIPS unavailable" not in text


PARENT = """
import os, sys, time
sys.path.insert(0, {tests!r})
from PySide6.QtCore import QCoreApplication
from promptlab.gui.jobs import Job
from promptlab.gui.worker import JobRunner
from promptlab.runs.lab import RunSpec
from promptlab.settings import Settings
app = QCoreApplication([])
runner = JobRunner()
got = []
runner.record.connect(lambda rec: got.append(type(rec).__name__))
runner.start(Job(RunSpec(settings=Settings()), pipeline="test_gui_fakes:slow_pipeline"))
while "FrameResult" not in got:
    app.processEvents()
    time.sleep(0.01)
print(runner._proc.pid, flush=True)
time.sleep(600)  # killed by the test; the queue is no longer read, as after a crash
"""




@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_job_process_dies_with_the_window(tmp_path):
    """A window killed outright (no cleanup at all) leaves no job process behind."""
    import signal
    import subprocess

    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(tests=str(TESTS))], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    try:
        child = int(parent.stdout.readline())
        assert process_alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while process_alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not process_alive(child), "the job process outlived its window"
    finally:
        parent.kill()
        with contextlib.suppress(OSError, ValueError):
            os.kill(child, signal.SIGKILL)


def test_a_clip_opened_by_drop_or_dialog_starts_on_all_its_frames(window, clip, qtbot, monkeypatch):
    """A frame range belongs to the clip it was chosen for (the CLI's rule too): dropping or picking
    another clip does not carry 2:5 over to it."""
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent
    from PySide6.QtWidgets import QFileDialog

    assert window.open(str(clip("a.mkv")), frames="2:5")
    qtbot.waitUntil(lambda: len(window.viewer.originals) == 3, timeout=30_000)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(clip("b.mkv", 6)))])
    window.dropEvent(QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                                Qt.KeyboardModifier.NoModifier))
    qtbot.waitUntil(lambda: len(window.viewer.originals) == 6, timeout=30_000)
    assert window.controls.frames.text() == "" and window.state.frames is None
    window.controls.frames.setText("1:3")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(clip("c.mkv", 7)), ""))
    window.open_dialog()
    qtbot.waitUntil(lambda: len(window.viewer.originals) == 7, timeout=30_000)
    assert window.controls.frames.text() == ""
