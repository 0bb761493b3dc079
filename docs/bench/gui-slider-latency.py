"""Slider preview latency in the lab window (docs/gui.md, "Measured preview latency").

Run from the repository root: `QT_QPA_PLATFORM=offscreen python docs/bench/gui-slider-latency.py`.
It fits the sample clip (built-in model, random weights, 128 px, 41 frames), then times, from a
rank key press to the preview's first and last frame shown: a move with the spare process
warm; the second move of a drag made 1 s after the first; a second move made once the next
spare is ready; and a move with no spare (cold). Twice each; the load average is printed.
"""
import os, sys, time, tempfile
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen"); os.environ.setdefault("PROMPTLAB_TINY", "random")
tmp = tempfile.mkdtemp(); os.environ["PROMPTLAB_CACHE_DIR"] = tmp + "/cache"; os.environ["PROMPTLAB_CONFIG_DIR"] = tmp + "/cfg"
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
app = QApplication([])
from promptlab.gui.window import MainWindow
from promptlab.gui.session import Session
from promptlab.runs.records import FrameResult
from promptlab.settings import Settings
S = Settings(model="tiny", size=128, rank=8, interval=5, iters=5, first_iters=10, patience=5, first_patience=5, perceptual="none", threads=1)
w = MainWindow(Session(settings=S)); w.resize(1366, 768); w.show()
def wait(cond, t=600):
    t0 = time.time()
    while not cond():
        app.processEvents(); time.sleep(0.005)
        if time.time() - t0 > t: raise SystemExit("timeout")
w.open("promptlab/assets/sky.mp4", frames="0:41"); wait(lambda: len(w.viewer.originals) == 41)
done = []; w.jobDone.connect(done.append); w.run(); wait(lambda: done); print("fit", done, flush=True)
w.tuner.set_delays(60, 3_600_000)
ev = {}
started = [0]
w.tuner.started.connect(lambda kind: (started.__setitem__(0, started[0] + 1), ev.__setitem__("armed", 1)))
def rec(r):
    if isinstance(r, FrameResult) and r.stage == "preview" and "armed" in ev:
        ev.setdefault("first", time.monotonic()); ev["last"] = time.monotonic()
w.runner.record.connect(rec)
key = [Qt.Key.Key_Left]
def move():
    ev.clear(); w.controls.rank.slider.setFocus()
    from PySide6.QtTest import QTest
    QTest.keyClick(w.controls.rank.slider, key[0]); key[0] = Qt.Key.Key_Right if key[0] == Qt.Key.Key_Left else Qt.Key.Key_Left
    return time.monotonic()
def one(label):
    n = started[0]; t = move(); wait(lambda: started[0] > n and "first" in ev and not w.runner.busy())
    print(f"{label}: first {ev['first'] - t:.2f} s, all {ev['last'] - t:.2f} s, load {os.getloadavg()[0]:.1f}", flush=True)
for k in range(2):
    wait(w.runner.spare_ready); one(f"warm #{k+1}")
    wait(w.runner.spare_ready)
    move(); time.sleep(0); t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0: app.processEvents(); time.sleep(0.005)
    one(f"drag: second move 1 s after the first #{k+1}")
    wait(w.runner.spare_ready)
    n = started[0]; move(); wait(lambda: started[0] > n and "first" in ev); wait(w.runner.spare_ready); one(f"drag: second move once the next spare is ready #{k+1}")
    sp = w.runner._spare; w.runner._spare = None; w.runner.keep_spare(None); w.runner._stop_spare(sp)
    one(f"cold (no spare) #{k+1}"); w._keep_warm()
w.close()
