"""Slider preview latency in the lab window (docs/gui.md, "Measured preview latency").

Run from the repository root: `QT_QPA_PLATFORM=offscreen python docs/bench/gui-slider-latency.py`.
It fits the sample clip (built-in model, random weights, 128 px, 41 frames), then times, from a
rank key press to the preview's first and last frame shown: a move with the spare process
warm; the second move of a drag made 1 s after the first; a second move made once the next
spare is ready; and a move with no spare (cold). Twice each; the load average is printed.
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PROMPTLAB_TINY", "random")
_TMP = tempfile.mkdtemp(prefix="promptlab-latency-")
os.environ["PROMPTLAB_CACHE_DIR"] = os.path.join(_TMP, "cache")
os.environ["PROMPTLAB_CONFIG_DIR"] = os.path.join(_TMP, "config")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

SETTINGS = dict(model="tiny", size=128, rank=8, interval=5, iters=5, first_iters=10, patience=5,
                first_patience=5, perceptual="none", threads=1)


def main() -> None:
    app = QApplication([])
    from promptlab.gui.session import Session
    from promptlab.gui.window import MainWindow
    from promptlab.runs.records import FrameResult
    from promptlab.settings import Settings

    w = MainWindow(Session(settings=Settings(**SETTINGS)))
    w.resize(1366, 768)
    w.show()

    def wait(cond, limit: float = 600.0) -> None:  # noqa: ANN001
        t0 = time.monotonic()
        while not cond():
            app.processEvents()
            time.sleep(0.005)
            if time.monotonic() - t0 > limit:
                raise SystemExit("timed out")

    w.open("promptlab/assets/sky.mp4", frames="0:41")
    wait(lambda: len(w.viewer.originals) == 41)
    done: list[str] = []
    w.jobDone.connect(done.append)
    w.run()
    wait(lambda: done)
    print("fit", done, flush=True)
    w.tuner.set_delays(60, 3_600_000)  # previews only
    ev: dict[str, float] = {}
    started = [0]

    def on_start(_kind: str) -> None:
        started[0] += 1
        ev["armed"] = 1.0  # frames count from the preview this tuner started after the move

    def on_record(rec: object) -> None:
        if isinstance(rec, FrameResult) and rec.stage == "preview" and "armed" in ev:
            ev.setdefault("first", time.monotonic())
            ev["last"] = time.monotonic()

    w.tuner.started.connect(on_start)
    w.runner.record.connect(on_record)
    keys = [Qt.Key.Key_Left, Qt.Key.Key_Right]

    def move() -> float:
        ev.clear()
        w.controls.rank.slider.setFocus()
        QTest.keyClick(w.controls.rank.slider, keys[0])
        keys.reverse()
        return time.monotonic()

    def timed(label: str) -> None:
        n = started[0]
        t = move()
        wait(lambda: started[0] > n and "first" in ev and not w.runner.busy())
        print(f"{label}: first {ev['first'] - t:.2f} s, all {ev['last'] - t:.2f} s, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)

    for k in (1, 2):
        wait(w.runner.spare_ready)
        timed(f"warm #{k}")
        wait(w.runner.spare_ready)
        move()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            app.processEvents()
            time.sleep(0.005)
        timed(f"drag: second move 1 s after the first #{k}")
        wait(w.runner.spare_ready)
        n = started[0]
        move()
        wait(lambda n=n: started[0] > n and "first" in ev)
        wait(w.runner.spare_ready)
        timed(f"drag: second move once the next spare is ready #{k}")
        w.runner.keep_spare(None)
        spare, w.runner._spare = w.runner._spare, None
        w.runner._stop_spare(spare)
        timed(f"cold (no spare) #{k}")
        w._keep_warm()
    w.close()


if __name__ == "__main__":
    main()
