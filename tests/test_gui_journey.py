"""A user's first hour, in one window, with the real engine: the window never breaks.

The journey runs in its own process (this file run as a script) so that the test can read
its stderr (a Qt slot that raises prints a traceback there and nothing else) and kill it
outright at the end, as a crash would: ≥ 20 runs with changing settings (new encodes, cached
results, a new cache policy, the H.265 baseline), every view mode in turn with the baseline
pane on and off, 60 s of Play (the play timer's ticks at the clip's rate, the window painted
offscreen every 2 s of it), export after a cached result, a .plab opened without its
original, and another clip opened mid-run. Through all of it the viewer's scale stays put and
the reference counts of None and True stay flat. Then the journey starts a job and is killed
with SIGKILL: the job process must go with it.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import process_alive

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SKY = REPO / "promptlab" / "assets" / "sky.mp4"
RUNS = 20
PLAY_SECONDS = 60




@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.skipif(not SKY.is_file(), reason="the bundled sample clip is missing")
def test_a_users_first_hour_never_breaks_the_window(tmp_path):
    pytest.importorskip("PySide6")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PROMPTLAB_CACHE_DIR=str(tmp_path / "cache"),
               PROMPTLAB_CONFIG_DIR=str(tmp_path / "config"),
               PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    err = tmp_path / "stderr.txt"
    report = tmp_path / "journey.json"
    with err.open("w") as err_f:
        proc = subprocess.Popen([sys.executable, __file__, str(tmp_path)], env=env, stderr=err_f,
                                stdout=subprocess.DEVNULL)
    child = None
    try:
        deadline = time.monotonic() + 900
        while not report.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        stderr = err.read_text()
        assert report.exists(), f"the journey ended early (exit {proc.poll()}):\n{stderr[-3000:]}"
        r = json.loads(report.read_text())
        child = r["orphan_candidate"]
        assert "Traceback" not in stderr and "Fatal Python error" not in stderr, stderr[-3000:]
        assert r["errors"] == [], r["errors"]
        assert r["runs"] >= RUNS and r["outcomes"].count("cached") >= 10 and r["outcomes"].count("finished") >= 6
        assert set(r["modes_seen"]) == {"side", "split", "diff"} and r["played_frames"] >= PLAY_SECONDS * 30
        assert r["exported"] and r["stream_title_says_no_original"] and r["mid_run_open"] == "cancelled"
        assert abs(r["scale_after"] / r["scale_before"] - 1) < 0.01, r  # the viewer's scale is unchanged
        assert all(abs(d) < 100 for d in r["refcount_drift"]), r["refcount_drift"]  # None, True flat
        assert process_alive(child), "the journey's last job should still be running"
        proc.send_signal(signal.SIGKILL)  # the window dies without any cleanup
        proc.wait(10)
        end = time.monotonic() + 10
        while process_alive(child) and time.monotonic() < end:
            time.sleep(0.1)
        assert not process_alive(child), "the job process outlived its killed window"
        print(f"journey: {r['runs']} runs {r['outcomes']}, {r['seconds']:.0f} s {r['phases']}, drift {r['refcount_drift']}")
    finally:
        proc.kill()
        if child:
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass


# --------------------------------------------------------------------------- the journey itself


def journey(tmp: Path) -> None:
    """Everything a user does in the first hour, then leave a job running and report."""
    from conftest import ramp_frames, write_clip
    from PySide6.QtWidgets import QApplication, QFileDialog

    from promptlab.gui.session import Session
    from promptlab.gui.window import MainWindow
    from promptlab.settings import Settings

    errors: list[str] = []
    sys.excepthook = lambda t, v, tb: errors.append(f"{t.__name__}: {v}")  # a slot that raised
    app = QApplication(["journey"])
    t0 = time.monotonic()
    settings = Settings(model="tiny", size=64, rank=4, interval=3, iters=1, first_iters=2, patience=5,
                        first_patience=5, perceptual="none", threads=1)
    win = MainWindow(Session(settings=settings))
    win.resize(1300, 850)
    win.show()
    done: list[str] = []
    win.jobDone.connect(done.append)

    def wait(cond, timeout: float = 300.0) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise TimeoutError("the window did not get there in time")
            app.processEvents()
            time.sleep(0.003)

    def settle() -> None:
        for _ in range(5):
            app.processEvents()

    def run() -> str:
        n = len(done)
        win.run()
        wait(lambda: len(done) > n)
        return done[-1]

    def refs() -> tuple[int, int]:
        gc.collect()
        return sys.getrefcount(None), sys.getrefcount(True)

    modes_seen: set[str] = set()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - t0 - sum(phases.values()), 1)

    def cycle_views() -> None:
        for mode in ("split", "diff", "side"):
            win.set_mode(mode)
            modes_seen.add(mode)
            settle()
        win.controls.baseline.toggle()
        settle()
        win.controls.baseline.toggle()
        settle()

    def scale() -> float:
        win.set_mode("side")
        settle()
        return win.viewer.image_scale()

    assert win.open(str(SKY), frames="0:6")
    wait(lambda: len(win.viewer.originals) == 6)
    c = win.controls
    # 20 runs with changing settings: five encodes, a new cache policy (decoded again), the
    # H.265 baseline, and returns to earlier settings (served from the cache, as a user's are)
    a, b, cc = dict(rank=4, interval=3, bits=8), dict(rank=2, interval=3, bits=8), dict(rank=4, interval=5, bits=8)
    d, e = dict(rank=4, interval=3, bits=6), dict(rank=3, interval=3, bits=8, baseline=True)
    plan = [a, b, a, cc, b, d, a, cc, d, b, e, dict(a, baseline=False), d, cc,
            dict(cc, cache="lossless"), dict(d, cache="none"), a, b, e, dict(a, baseline=False)]
    widgets = {"rank": c.rank, "interval": c.interval, "bits": c.bits}
    outcomes: list[str] = []
    baseline_refs = scale_before = None
    for step in plan:
        for k, v in step.items():
            if k == "cache":
                c.cache.setCurrentText(v)
            elif k == "baseline":
                c.baseline.setChecked(v)
            else:
                widgets[k].setValue(v)
        outcomes.append(run())
        if scale_before is None:
            scale_before = scale()
        cycle_views()
        win.grab()
        if len(outcomes) == 3:
            baseline_refs = refs()  # after the first runs filled every first-use cache
    drift = [now - then for now, then in zip(refs(), baseline_refs, strict=True)]  # 17 runs, views, paints
    assert win.is_stale() is False
    phase("20 runs")
    # 60 s of Play: the play timer's ticks at the clip's rate, painted every second
    played = 0
    win.seek(0)
    win.transport.toggle_play()
    fps = int(round(win.transport.fps))
    while played < PLAY_SECONDS * fps:
        if not win.transport.playing():
            win.transport.toggle_play()  # at the end it stops; the user presses Play again
        win.transport._tick()
        played += 1
        if played % (2 * fps) == 0:
            win.grab()
            app.processEvents()
    if win.transport.playing():
        win.transport.toggle_play()
    phase("play")
    # export after a cached result (Ctrl+E, the folder dialog answered)
    out = tmp / "export"
    out.mkdir()
    QFileDialog.getExistingDirectory = staticmethod(lambda *a, **k: str(out))
    outcomes.append(run())  # the current settings were just run: cached
    win.export_dialog()
    wait(lambda: "exported" in c.status.text() or "failed" in c.status.text(), 300)
    exported = "exported" in c.status.text() and len(list(out.iterdir())) == 6
    scale_after = scale()  # after 20 runs, all the view switching and the play
    phase("export")
    # a .plab opened without its original: decoded, and the plot says why there is no quality
    stream = win.cache.path(win.state.shown_key) / "stream.plab"
    assert win.open(str(stream))
    outcomes.append(run())
    title = win.plots.q.titleLabel.text
    stream_ok = "no original" in title and "fetch-weights" not in title
    phase("plab")
    # another clip opened while a job runs: the job stops, nothing of it meets the new original
    assert win.open(str(SKY), frames="0:6")
    wait(lambda: len(win.viewer.originals) == 6)
    c.first_iters.setValue(100_000)
    n = len(done)
    win.run()
    wait(lambda: "iteration" in c.status.text())
    other = write_clip(tmp / "other.mkv", ramp_frames(4, 64, 64))
    assert win.open(str(other))
    wait(lambda: len(done) > n)
    mid_run = done[-1]
    settle()
    if win.viewer.recon or win.state.rows:
        errors.append("the stopped job's frames reached the new clip")
    outcomes.append(mid_run)
    wait(lambda: len(win.viewer.originals) == 4)
    phase("mid-run open")
    # leave a job running, as a user would when the window dies
    win.pipeline = "test_gui_fakes:slow_pipeline"
    win.run()
    wait(lambda: len(win.viewer.recon) >= 1)
    report = {"runs": len(outcomes), "outcomes": outcomes, "modes_seen": sorted(modes_seen),
              "played_frames": played, "exported": exported, "stream_title_says_no_original": stream_ok,
              "mid_run_open": mid_run, "scale_before": scale_before, "scale_after": scale_after,
              "refcount_drift": drift, "errors": errors, "seconds": time.monotonic() - t0,
              "orphan_candidate": win.runner._proc.pid, "phases": phases}
    tmp_report = tmp / "journey.json.part"
    tmp_report.write_text(json.dumps(report))
    tmp_report.rename(tmp / "journey.json")
    while True:  # until killed
        app.processEvents()
        time.sleep(0.05)


if __name__ == "__main__":
    journey(Path(sys.argv[1]))
