"""GUI building blocks without a model job: results cache, session, viewer, plots, controls, errors."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from promptlab.gui.results import ResultsCache, result_key  # noqa: E402
from promptlab.gui.session import Session, first_run_settings, load_session, save_session  # noqa: E402
from promptlab.settings import Settings, load_preset  # noqa: E402

TESTS = Path(__file__).resolve().parent
SKY = TESTS.parents[0].parent / "shared" / "data" / "promptus-sky" / "frames"


@pytest.fixture(autouse=True)
def _dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PROMPTLAB_CONFIG_DIR", str(tmp_path / "config"))
    if str(TESTS) not in sys.path:
        monkeypatch.syspath_prepend(str(TESTS))  # the job child imports test_gui_fakes


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
    # cache policies other than none are shown but not selectable yet
    assert all(c.cache.model().item(i).isEnabled() for i in range(3)) and "live" in c.cache.toolTip()
    seen = []
    c.cacheChanged.connect(lambda p, t: seen.append((p, t)))
    c.cache.setCurrentText("lossy")
    assert c.cache_threshold.isEnabled() and seen[-1][0] == "lossy"
    c.cache.setCurrentText("none")
    assert not c.cache_threshold.isEnabled() and seen[-1][0] == "none"
    path = tmp_path / "mine.json"
    c.use_target.setChecked(False)
    c.rank.setValue(3)
    c.save_preset(str(path))
    c.rank.setValue(7)
    c.apply_preset(str(path))
    assert c.settings().rank == 3


def _wait(qtbot, win, timeout=60_000):
    with qtbot.waitSignal(win.jobDone, timeout=timeout) as sig:
        pass
    return sig.args[0]


@pytest.mark.skipif(not SKY.is_dir(), reason="shared sky frames missing")
def test_engine_errors_and_crashes_show_in_the_window(qtbot):
    from promptlab.gui.window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    assert win.open(str(SKY), frames="0:3")
    win.pipeline = "test_gui_fakes:failing_pipeline"
    with qtbot.waitSignal(win.jobDone, timeout=60_000) as sig:
        win.run()
    assert sig.args == ["error"] and "simulated engine error" in win.banner.text()
    win.pipeline = "test_gui_fakes:crashing_pipeline"
    with qtbot.waitSignal(win.jobDone, timeout=60_000) as sig:
        win.run()
    assert sig.args == ["error"] and "exit code 3" in win.banner.text()
    assert not win.runner.busy() and win.controls.run_btn.isEnabled()
    assert not win.open(str(SKY / "missing.mp4"))
    assert not win.banner.isHidden() and "Error" in win.banner.text()


@pytest.mark.skipif(not SKY.is_dir(), reason="shared sky frames missing")
def test_closing_the_window_stops_the_worker(qtbot):
    from promptlab.gui.window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    assert win.open(str(SKY), frames="0:3")
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

    s = {"kbps": 100.0, "kbps_without_init": 40.0, "total_bytes": 1234, "mean_lpips": None,
         "mean_psnr": 25.5, "mean_gen_ms": 3.0, "model": "tiny (random weights)"}
    t = summary_text(s)
    assert "100.0 kbps every byte counted" in t and "PSNR 25.50 dB (LPIPS unavailable)" in t
    rng = np.random.default_rng(0)
    originals = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(4)]
    recon = {i: 255 - f for i, f in enumerate(originals)}
    rows = {i: {"lpips": None, "psnr": 10.0 + i, "ssim": 0.5, "ms_ssim": 0.5, "bytes": 100.0, "gen_ms": 2.0}
            for i in range(4)}
    with pytest.raises(PromptlabError, match="run the lab first"):
        comparison(originals, {}, rows, {}, {}, s, 30.0, 0, "tiny", 8)
    comp = comparison(originals, recon, rows, {}, {}, s, 30.0, 10, "tiny", 8)
    files = export_all(tmp_path, comp, 2)
    assert [p.name for p in files] == list(EXPORT_FILES) and all(p.exists() for p in files)
    table = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert len(table) == 4 and float(table[3]["promptlab_psnr"]) == 13.0
    with av.open(str(tmp_path / "comparison.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 4
    with pytest.raises(PromptlabError, match="--force|exists"):
        export_all(tmp_path, comp, 2)  # nothing is overwritten unless asked
    export_all(tmp_path, comp, 2, force=True)


def test_lpips_map_uses_the_loaded_model_with_spatial_on():
    import torch

    from promptlab.gui.jobs import _lpips_map

    class Stand:  # stands in for a loaded lpips.LPIPS: returns |a-b| per pixel when spatial
        spatial = False

        def __call__(self, a, b):
            d = (a - b).abs().mean(1, keepdim=True) / 2
            return d if self.spatial else d.mean((2, 3), keepdim=True)

    class M:
        lpips_model = Stand()

    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[:, 4:] = 255
    m = _lpips_map(M(), a, b)
    assert m.shape == (8, 8) and m[:, :4].max() == 0 and m[:, 4:].min() == 255
    assert M.lpips_model.spatial is False and torch is not None
    assert _lpips_map(object(), a, b) is None


def test_job_module_imports_without_qt():
    """The worker process imports promptlab.gui.jobs; it must not need Qt."""
    import subprocess

    code = ("import sys\nclass B:\n    def find_spec(self, n, p=None, t=None):\n"
            "        if n.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6'):\n"
            "            raise ImportError(n)\nsys.meta_path.insert(0, B())\n"
            "import promptlab.gui.jobs, promptlab.gui.results, promptlab.gui.session, promptlab.gui.report\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=TESTS.parent, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
