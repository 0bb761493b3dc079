"""The viewer as researchers use it: integer zoom synced across panes, pixel-true drawing, the
magnifier's readout, A/B flicker, one difference measure for both codecs, and the RD view's
click-to-load."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from promptlab.gui.viewer import Viewer  # noqa: E402


@pytest.fixture(autouse=True)
def _dirs(lab_dirs):
    return lab_dirs


@pytest.fixture
def frames():
    rng = np.random.default_rng(7)
    orig = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(3)]
    recon = [255 - f for f in orig]
    base = [f // 2 for f in orig]
    return orig, recon, base


@pytest.fixture
def viewer(qtbot, frames):
    orig, recon, base = frames
    v = Viewer()
    qtbot.addWidget(v)
    v.resize(1000, 560)
    v.show()
    v.set_originals(orig)
    for i in range(3):
        v.set_recon(i, recon[i])
        v.set_baseline(i, base[i])
    v.set_show_baseline(True)
    settle()
    return v


def settle() -> None:
    for _ in range(6):
        QApplication.processEvents()


def screen_pixel(v: Viewer, pane: int, x: float, y: float) -> QPoint:
    """Where image point (x, y) of a pane is on the viewer's GraphicsLayoutWidget."""
    scene = v.boxes[pane].mapViewToScene(QPointF(x, y))
    return v.glw.mapFromScene(scene)


def grab(widget) -> np.ndarray:
    img = widget.grab().toImage().convertToFormat(widget.grab().toImage().Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    return np.frombuffer(img.constBits(), np.uint8).reshape(h, bpl)[:, : 3 * w].reshape(h, w, 3).copy()


def test_integer_zoom_nearest_neighbour_synced_across_panes(viewer, frames):
    v = viewer
    orig, recon, base = frames
    assert v.view is None and v.scale() == pytest.approx(v.image_scale())        # fit by default
    v.zoom_step(1)
    settle()
    assert v.view[0] in (1, 2, 4, 8) and v.image_scale() == pytest.approx(v.view[0])
    v.set_zoom(8)
    v.zoom_step(1)                                                                # 8× is the most
    settle()
    assert v.view[0] == 8 and v.image_scale() == pytest.approx(8.0)
    # a drag in the H.265 pane pans every pane by as much, at the same scale
    box = v.boxes[2]
    box.translateBy(x=5.0, y=-3.0)
    box.sigRangeChangedManually.emit(box.state["mouseEnabled"])
    settle()
    centres = [(b.viewRect().center().x(), b.viewRect().center().y()) for b in v.boxes]
    assert all(c == pytest.approx(centres[2]) for c in centres)
    assert centres[2] == pytest.approx((24 + 5.0, 16 - 3.0), abs=0.01)
    assert v.image_scale() == pytest.approx(8.0)
    # nearest neighbour: each image pixel is an 8×8 block of exactly its colour, in every pane
    shot = grab(v.glw)
    for pane, img in ((0, orig[0]), (1, recon[0]), (2, base[0])):
        for x, y in ((26, 14), (30, 10), (22, 18)):
            for dx, dy in ((0.15, 0.15), (0.5, 0.5), (0.85, 0.85)):
                p = screen_pixel(v, pane, x + dx, y + dy)
                assert tuple(shot[p.y(), p.x()]) == tuple(img[y, x]), (pane, x, y, dx)
    # the wheel steps too, about the cursor: the image point under it stays put
    v.zoom_step(-1, anchor=(30.0, 10.0))
    settle()
    assert v.view[0] == 4
    before = screen_pixel(v, 0, 30.0, 10.0)
    v.zoom_step(-1, anchor=(30.0, 10.0))
    settle()
    assert v.view[0] == 2 and screen_pixel(v, 0, 30.0, 10.0) == before
    v.zoom_step(-1)
    v.zoom_step(-1)
    assert v.view is None                                                         # below 1×: fit


def test_magnifier_reads_every_pane_at_the_cursor(qtbot, viewer, frames):
    v = viewer
    orig, recon, base = frames
    v.seek(1)
    v.set_zoom(4)
    settle()
    for x, y in ((0, 0), (47, 31), (13, 22)):
        qtbot.mouseMove(v.glw.viewport(), screen_pixel(v, 1, x + 0.5, y + 0.5))
        settle()
        assert v.cursor == (x, y)
        want = {"original": orig[1][y, x], "recon": recon[1][y, x], "H.265": base[1][y, x]}
        got = v.pixel_values(x, y)
        assert {k: tuple(c) for k, c in want.items()} == got
        for name, rgb in want.items():
            assert f"{name} ({rgb[0]}, {rgb[1]}, {rgb[2]})" in v.readout.text()
        # the magnifier's centre cell of each tile is that pixel, with a grid between cells
        pic = v.magnified()
        from promptlab.gui.viewer import MAG_CELL, MAG_RADIUS

        tile = (2 * MAG_RADIUS + 1) * MAG_CELL
        for t, rgb in enumerate(want.values()):
            cx = t * (tile + 6) + MAG_RADIUS * MAG_CELL + MAG_CELL // 2
            assert tuple(pic[MAG_RADIUS * MAG_CELL + MAG_CELL // 2, cx]) == tuple(rgb)
            assert tuple(pic[MAG_CELL, t * (tile + 6) + MAG_CELL // 2]) == (0, 0, 0)  # grid line
    assert v.pixel_values(48, 0) == {"original": None, "recon": None, "H.265": None}


def test_flicker_toggles_between_the_pair_on_f_and_at_its_rate(qtbot, viewer, frames):
    v = viewer
    orig, recon, base = frames
    v.set_flicker_rate(0)
    v.set_mode("flicker")
    settle()
    shown = lambda: v.items[0].image  # noqa: E731
    assert v._n_panes() == 1 and np.array_equal(shown(), orig[0]) and "ORIGINAL (A)" in v.titles[0].text
    qtbot.keyClick(v, Qt.Key.Key_F)
    assert np.array_equal(shown(), recon[0]) and "RECONSTRUCTION (B)" in v.titles[0].text
    v.flicker_toggle()
    assert np.array_equal(shown(), orig[0])
    v.next_flicker_pair()                                                   # reconstruction ↔ H.265
    assert np.array_equal(shown(), recon[0])
    v.flicker_toggle()
    assert np.array_equal(shown(), base[0]) and "H.265 (B)" in v.titles[0].text
    assert not v.flicker_timer.isActive()
    from promptlab.gui.viewer import FLICKER_RATES

    assert v.rate_box.isVisible() and v.rate_box.currentText() == "manual (F)"
    v.rate_box.setCurrentIndex(FLICKER_RATES.index(8.0))                   # the rate chosen in the viewer
    assert v.flicker_hz == 8.0 and v.flicker_timer.isActive() and v.flicker_timer.interval() == 125
    assert "8 Hz" in v.titles[0].text
    v.set_flicker_rate(20)                                                  # now it flips by itself, faster
    assert v.flicker_timer.isActive()
    seen = set()
    qtbot.waitUntil(lambda: seen.add(v.flicker_side) or seen == {0, 1}, timeout=5_000)
    v.set_mode("side")
    assert not v.flicker_timer.isActive()


def test_difference_uses_one_measure_for_both_codecs_with_a_legend(viewer, frames):
    v = viewer
    orig, recon, base = frames
    v.set_mode("diff")
    gray = np.full((32, 48), 128, np.uint8)
    v.set_lpips_map(0, gray)                               # promptlab has a map, H.265 not yet
    v.refresh()
    titles = [t for t, _ in v._images()]
    assert v.measure() == "abs" and "×4" in titles[1] and "×4" in titles[2]
    from promptlab.gui.viewer import abs_diff_heat, heat

    assert np.array_equal(v._images()[2][1], abs_diff_heat(orig[0], base[0], 4.0))
    v.set_lpips_map(0, gray // 2, baseline=True)           # both have one: LPIPS for both
    v.refresh()
    imgs = v._images()
    assert v.measure() == "lpips" and all("LPIPS" in t for t, _ in imgs[1:])
    assert np.array_equal(imgs[1][1], heat(gray / 255.0)) and np.array_equal(imgs[2][1], heat((gray // 2) / 255.0))
    assert v.legend.isVisible() and "every pane" in v.zoom_label.text()
    v.next_diff_measure()
    assert v.measure() == "abs" and all("×4" in t for t, _ in v._images()[1:])
    from promptlab.gui.viewer import DIFF_GAINS

    assert v.gain_box.isVisible() and not v.rate_box.isVisible()
    v.gain_box.setCurrentIndex(DIFF_GAINS.index(16))                       # one k for both codecs
    imgs = v._images()
    assert all("×16" in t for t, _ in imgs[1:]) and "≥16" in v.zoom_label.text()
    assert np.array_equal(imgs[1][1], abs_diff_heat(orig[0], recon[0], 16.0))
    assert np.array_equal(imgs[2][1], abs_diff_heat(orig[0], base[0], 16.0))
    v.set_mode("side")
    assert not v.legend.isVisible()


def test_frames_keep_their_size_through_modes_and_results(viewer, frames):
    v = viewer
    orig, recon, base = frames
    for zoom in (None, 4):
        if zoom:
            v.set_zoom(zoom)
        v.set_mode("side")
        settle()
        before = v.image_scale()
        for _ in range(2):
            for mode in ("split", "diff", "flicker", "rd", "side"):
                v.set_mode(mode)
                settle()
                if mode != "rd":
                    assert v.image_scale() == pytest.approx(before, rel=0.01), (zoom, mode)
        v.clear_results()
        v.set_recon(0, recon[1])
        settle()
        assert v.image_scale() == pytest.approx(before, rel=0.01)


@pytest.mark.slow
def test_clicking_a_run_in_the_rd_view_loads_it(qtbot):
    """Two stored runs of one clip are two points; a real click on one shows that run's settings
    and frames from the results cache, with no job started."""
    from pathlib import Path

    from promptlab.gui.session import Session
    from promptlab.gui.window import MainWindow
    from promptlab.runs.lab import RunSpec, run_lab
    from promptlab.runs.records import Saved
    from promptlab.runs.results import ResultsCache
    from promptlab.settings import Settings

    sky = Path(__file__).resolve().parents[1] / "promptlab" / "assets" / "sky.mp4"
    small = Settings(model="tiny", size=64, rank=4, interval=4, iters=2, first_iters=2, patience=2,
                     first_patience=2, perceptual="none", threads=1, fps=30.0)
    cache = ResultsCache()
    keys = {}
    for rank in (2, 6):  # rank 6 also with another iteration budget, which no stream header holds
        made = small.replace(rank=rank, iters=2 if rank == 2 else 3)
        recs = run_lab(RunSpec(settings=made, source=str(sky), frames=(0, 6),
                               cache_root=str(cache.root)))
        keys[rank] = next(r for r in recs if isinstance(r, Saved)).key
    stored = sorted(p.name for p in cache.root.iterdir())

    w = MainWindow(Session(settings=small))
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    assert w.open(str(sky), frames="0:6"), w.state.last_error
    qtbot.waitUntil(lambda: len(w.viewer.originals) == 6, timeout=30_000)
    w.set_mode("rd")
    rd = w.viewer.rd
    assert [p.key for p in rd.points] == [keys[2], keys[6]] and [p.label for p in rd.points] == ["r2 k4", "r6 k4"]
    qtbot.waitUntil(lambda: not rd.busy(), timeout=120_000)                # the H.265 ladder, in the background
    assert rd.rungs and "BD-rate" in rd.info.text()
    settle()

    point = rd.points[1]                                                  # rank 6: not the window's rank 4
    plot = rd.plots["psnr"]
    pos = rd.glw.mapFromScene(plot.vb.mapViewToScene(QPointF(point.kbps, point.psnr)))
    with qtbot.waitSignal(rd.runClicked, timeout=5_000) as clicked:
        qtbot.mouseClick(rd.glw.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert clicked.args == [keys[6]]
    settle()
    res = cache.load(keys[6])
    assert w.controls.settings().rank == 6 and w.controls.settings().iters == 3
    assert w.state.shown_key == keys[6] and not w.is_stale()
    assert sorted(w.viewer.recon) == list(range(6))
    assert all(np.array_equal(w.viewer.recon[i], res.recon[i]) for i in range(6))
    assert [w.state.rows[i].psnr for i in range(6)] == [row["psnr"] for row in res.frames]
    assert w.runner.jobs_started == 0                                     # nothing recomputed
    assert sorted(p.name for p in cache.root.iterdir() if p.name != "rd") == stored
    w.close()


def test_each_frame_reaches_the_plots_as_its_record_arrives(qtbot):
    """No batching in the window: when a FrameResult is handled, it is already a point of the plots
    and a frame of the viewer (the curves are redrawn at most every THROTTLE_MS)."""
    from pathlib import Path

    from promptlab.gui.window import MainWindow
    from promptlab.runs.records import FrameResult

    w = MainWindow()
    qtbot.addWidget(w)
    assert w.open(str(Path(__file__).resolve().parents[1] / "promptlab" / "assets" / "sky.mp4"), frames="0:3")
    seen: list[tuple[int, int, bool]] = []

    def check(rec) -> None:  # connected after the window's own handler, so it runs right after it
        if isinstance(rec, FrameResult):
            seen.append((rec.index, len(w.plots.bytes.values), rec.index in w.viewer.recon))

    w.runner.record.connect(check)
    w.pipeline = "test_gui_fakes:slow_pipeline"                # a frame every 50 ms
    w.run()
    qtbot.waitUntil(lambda: len(seen) >= 6, timeout=60_000)
    with qtbot.waitSignal(w.jobDone, timeout=30_000):
        w.cancel()
    assert seen[:6] == [(i, i + 1, True) for i in range(6)]
    w.close()


def test_the_rd_view_is_busy_until_the_ladder_is_shown(qtbot, monkeypatch, tmp_path):
    """The ladder's thread can end before its queued result reaches the UI thread: the view stays
    busy until the result is drawn, so whoever waits on busy() sees the rungs."""
    import numpy as np

    from promptlab.gui import rdview
    from promptlab.runs.rd import RdPoint
    from promptlab.runs.results import ResultsCache

    runs = [RdPoint("promptlab", 8.0, 0.3, 25.0, label="r4 k10", key="a"),
            RdPoint("promptlab", 16.0, 0.2, 27.0, label="r8 k10", key="b")]
    rungs = [RdPoint("h265", k, 0.5 - k / 100, 20 + k / 4, label=f"{k} kbps") for k in (6.0, 10.0, 20.0, 40.0)]
    monkeypatch.setattr(rdview, "cached_points", lambda cache, clip: list(runs))
    monkeypatch.setattr(rdview, "ladder", lambda *a, **k: list(rungs))
    view = rdview.RdView()
    qtbot.addWidget(view)
    view.provider = lambda: rdview.RdContext(ResultsCache(tmp_path), "clip", [np.zeros((8, 8, 3), np.uint8)], 30.0)
    view.refresh()
    view._thread.join(10)
    assert not view._thread.is_alive() and view.busy() and view.rungs == []   # done, not yet shown
    qtbot.waitUntil(lambda: not view.busy(), timeout=10_000)
    assert view.rungs == rungs and "BD-rate" in view.info.text()
    view.provider = lambda: None
    view.refresh()
    assert not view.busy()                                                     # nothing to compute
