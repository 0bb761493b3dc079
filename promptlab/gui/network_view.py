"""The network view: a clip streamed over a trace, prompts and H.265 side by side (issue #27).

Pick a trace (and a scale, 0 = auto), Run: the streaming engine (`stream.engine.run_stream`,
the very path of `promptlab stream`) runs in the window's kind of job process (gui/worker.py),
so the UI never waits on it; its ladders come from the results cache once measured. Every
ABR rule is simulated for the trace at once, so switching the rule only redraws. Plots, on
one wall-clock axis: the trace's capacity and each codec's chosen rate, each client's buffer
with its stalls marked, and the LPIPS of the frame each viewer saw. Play runs the clock: the
two panes show what each viewer sees at that moment (a stall freezes the last frame).
"""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from promptlab.gui.jobs import STREAM_PIPELINE, Job, JobEnded
from promptlab.gui.worker import JobRunner
from promptlab.runs.lab import RunSpec
from promptlab.settings import SEVERE_LPIPS
from promptlab.stream.abr import RULES
from promptlab.stream.engine import Network, StreamSpec
from promptlab.stream.ladder import LadderSpec, recon_path
from promptlab.stream.records import Ladder, LaddersReady, SessionDone, TraceMapped, playout_times

COLORS = {"promptlab": "#4aa3ff", "h265": "#ff9f40", "h264": "#ff9f40"}
CAPACITY = "#aaaaaa"
STALL = "#ff5555"
PLAY_MS = 100          # the play clock's tick
CLOCK_STEP_S = 0.1     # one slider step


class Playback:
    """What one viewer sees over wall-clock time: Qt-free arithmetic over a session's records."""

    def __init__(self, session: SessionDone, ladder: Ladder) -> None:
        self.session, self.ladder = session, ladder
        self.times = playout_times(session.delivery, ladder.seg_s, ladder.seg_frames)
        self.stall_spans: list[tuple[float, float]] = []   # [from, to) of every stall
        for s in session.delivery.segments:
            if s.stall_s > 0:
                resume = self.times[s.index * ladder.seg_frames]
                self.stall_spans.append((resume - s.stall_s, resume))

    @property
    def end_s(self) -> float:
        return self.times[-1] + self.ladder.seg_s / self.ladder.seg_frames if self.times else 0.0

    def at(self, t: float) -> tuple[int | None, bool]:
        """(index into the shown frames, stalled) at wall-clock second t; None before playback starts."""
        k = bisect.bisect_right(self.times, t) - 1
        if k < 0:
            return None, False
        stalled = any(a <= t < b for a, b in self.stall_spans)
        return k, stalled


def _pixmap(img: np.ndarray, scale: int = 2) -> QPixmap:
    h, w = img.shape[:2]
    q = QImage(np.ascontiguousarray(img).data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(q).scaled(w * scale, h * scale, Qt.AspectRatioMode.KeepAspectRatio,
                                       Qt.TransformationMode.FastTransformation)


class NetworkView(QWidget):
    """Trace, ABR rule, Run; capacity/rate, buffer/stalls and LPIPS shown over time; play both viewers."""

    sessionsReady = Signal()      # a job's sessions are in (the views are drawn)
    jobDone = Signal(str)         # the job's outcome

    def __init__(self, ladder: LadderSpec, traces: list[str] | None = None, network: Network | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("promptlab — network view")
        self.ladder_spec = ladder
        self.network = network or Network()
        self.runner = JobRunner(self)
        self.ladders: LaddersReady | None = None
        self.traces: dict[str, TraceMapped] = {}
        self.sessions: dict[tuple[str, str, str], SessionDone] = {}   # (trace, codec, rule)
        self.recon: dict[str, np.ndarray] = {}                         # rung key + codec -> frames
        self.playback: dict[str, Playback] = {}
        self.clock = 0.0
        self.last_error = ""
        self._build()
        for t in traces or []:
            self.add_trace(t)
        self.runner.record.connect(self.on_record)
        self.runner.progress.connect(lambda f, text, eta: self.status.setText(f"{f:.0%} {text}"))
        self.runner.failed.connect(self._failed)
        self.runner.finished.connect(self._finished)
        self.timer = QTimer(self)
        self.timer.setInterval(PLAY_MS)
        self.timer.timeout.connect(self._tick)
        self.resize(1200, 900)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.trace_box = QComboBox()
        self.trace_box.setMinimumWidth(240)
        open_btn = QPushButton("Open trace…")
        open_btn.clicked.connect(self._open_trace)
        self.scale = QDoubleSpinBox()
        self.scale.setDecimals(6)
        self.scale.setRange(0.0, 1e6)
        self.scale.setSpecialValueText("auto")
        self.scale.setToolTip("trace capacity × K; auto: mean capacity = the top prompt rung's rate")
        self.rule_box = QComboBox()
        self.rule_box.addItems(list(RULES))
        self.rule_box.currentTextChanged.connect(lambda _: self.redraw())
        self.run_btn = QPushButton("Run")
        self.run_btn.clicked.connect(self.run)
        self.play_btn = QPushButton("Play")
        self.play_btn.setCheckable(True)
        self.play_btn.toggled.connect(self.play)
        top = QHBoxLayout()
        for w in (QLabel("Trace"), self.trace_box, open_btn, QLabel("Scale"), self.scale, QLabel("ABR"),
                  self.rule_box, self.run_btn, self.play_btn):
            top.addWidget(w)
        top.addStretch(1)
        self.panes: dict[str, QLabel] = {}
        self.captions: dict[str, QLabel] = {}
        views = QHBoxLayout()
        for codec in ("promptlab", "baseline"):   # the second pane: the classical codec's viewer
            box = QVBoxLayout()
            cap = QLabel(codec)
            pane = QLabel()
            pane.setMinimumSize(256, 256)
            pane.setAlignment(Qt.AlignmentFlag.AlignCenter)
            pane.setStyleSheet("background:#111")
            box.addWidget(cap)
            box.addWidget(pane, 1)
            self.panes[codec], self.captions[codec] = pane, cap
            views.addLayout(box)
        self.glw = pg.GraphicsLayoutWidget()
        self.p_rate = self.glw.addPlot(row=0, col=0, title="Capacity and chosen rate (kbps)")
        self.p_buf = self.glw.addPlot(row=1, col=0, title="Client buffer (s), stalls in red")
        self.p_lp = self.glw.addPlot(row=2, col=0, title="LPIPS of the frame shown — lower is better")
        for p in (self.p_buf, self.p_lp):
            p.setXLink(self.p_rate)
        for p in (self.p_rate, self.p_buf, self.p_lp):
            p.addLegend(offset=(-10, 10))
            p.showGrid(x=True, y=True, alpha=0.2)
        self.p_lp.setLabel("bottom", "time (s)")
        self.cursors = [p.addLine(x=0, pen=pg.mkPen("#ffcc00")) for p in (self.p_rate, self.p_buf, self.p_lp)]
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.valueChanged.connect(lambda v: self.seek(v * CLOCK_STEP_S))
        self.status = QLabel("pick a trace and Run")
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        v = QVBoxLayout(self)
        v.addLayout(top)
        v.addLayout(views)
        v.addWidget(self.slider)
        v.addWidget(self.glw, 1)
        v.addWidget(self.summary)
        v.addWidget(self.status)

    # ------------------------------------------------------------------ actions
    def add_trace(self, path: str | Path) -> None:
        p = Path(path)
        if self.trace_box.findData(str(p)) < 0:
            self.trace_box.addItem(p.name, str(p))
        self.trace_box.setCurrentIndex(self.trace_box.findData(str(p)))

    def _open_trace(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a network trace", "",
                                              "Traces (*.down *.up *.log *.txt *.trace *.csv);;All files (*)")
        if path:
            self.add_trace(path)

    def current_trace(self) -> str | None:
        return self.trace_box.currentData()

    def spec(self) -> StreamSpec:
        scale = self.scale.value() or None
        net = Network(**{**vars(self.network), "scale": scale})
        return StreamSpec(ladder=self.ladder_spec, traces=[self.current_trace() or ""], rules=list(RULES), network=net)

    def run(self) -> bool:
        """Stream the clip over the chosen trace (every rule) in the job process; while one runs: cancel it."""
        if self.runner.busy():
            self.runner.cancel()
            self.status.setText("cancelling…")
            return False
        if not self.current_trace():
            self.status.setText("open a trace first")
            return False
        spec = self.spec()
        s = self.ladder_spec
        # the job's RunSpec only carries the settings the job process runs with (threads); the work is the spec
        job = Job(run=RunSpec(settings=s.settings, source=s.source, frames=s.frames, key="network-view"),
                  pipeline=STREAM_PIPELINE, extra={"stream": spec})
        self.last_error = ""
        self.run_btn.setText("Cancel")
        return self.runner.start(job)

    def on_record(self, rec: object) -> None:
        if isinstance(rec, LaddersReady):
            self.ladders = rec
            self._load_recon(rec)
        elif isinstance(rec, TraceMapped):
            self.traces[rec.name] = rec
        elif isinstance(rec, SessionDone):
            self.sessions[(rec.trace, rec.codec, rec.rule)] = rec
        elif isinstance(rec, JobEnded) and rec.outcome == "finished":
            self.redraw()
            self.sessionsReady.emit()

    def _load_recon(self, ladders: LaddersReady) -> None:
        for lad in (ladders.prompt, ladders.baseline):
            for r in lad.rungs if lad else []:
                name = f"{r.key}:{r.codec}"
                if name not in self.recon:
                    p = recon_path(self.ladder_spec.cache_root, r)
                    with np.load(p) as z:
                        self.recon[name] = z["frames"]

    def _failed(self, message: str) -> None:
        self.last_error = message
        self.status.setText(f"error: {message}")

    def _finished(self, outcome: str) -> None:
        self.run_btn.setText("Run")
        if outcome == "finished":
            self.status.setText("done: switch the rule, or Play")
        elif outcome == "cancelled":
            self.status.setText("cancelled")
        self.jobDone.emit(outcome)

    # ------------------------------------------------------------------ drawing
    def _trace_name(self) -> str | None:
        cur = self.current_trace()
        return Path(cur).name if cur else None

    def redraw(self) -> None:
        """Draw the chosen trace and rule from the sessions already simulated (no job)."""
        name, rule = self._trace_name(), self.rule_box.currentText()
        if self.ladders is None or name not in self.traces:
            return
        for p in (self.p_rate, self.p_buf, self.p_lp):
            for item in list(p.listDataItems()):
                p.removeItem(item)
        tr = self.traces[name]
        self.playback = {}
        end = 0.0
        lines = []
        for lad in (self.ladders.prompt, self.ladders.baseline):
            s = self.sessions.get((name, lad.codec, rule)) if lad else None
            if s is None:
                continue
            pb = Playback(s, lad)
            self.playback["promptlab" if lad.codec == "promptlab" else "baseline"] = pb
            end = max(end, pb.end_s)
            color = COLORS.get(lad.codec, "#ffffff")
            segs = s.delivery.segments
            xs = [g.request_s for g in segs] + [segs[-1].arrival_s]
            kb = [g.bytes * 8 / lad.seg_s / 1000 for g in segs]
            self.p_rate.plot(xs, kb, stepMode="center", pen=pg.mkPen(color, width=1.5), name=f"{lad.codec} rate")
            bx = [v for g in segs for v in (g.request_s, g.arrival_s, g.arrival_s)]
            by = [v for g in segs for v in (g.buffer_before_s, max(g.buffer_before_s - g.download_s, 0.0),
                                            g.buffer_after_s)]
            self.p_buf.plot(bx, by, pen=pg.mkPen(color, width=1.5), name=f"{lad.codec} buffer")
            if pb.stall_spans:
                sx = [v for a, b in pb.stall_spans for v in (a, b)]
                self.p_buf.plot(sx, [0.0] * len(sx), connect="pairs", pen=pg.mkPen(STALL, width=6),
                                name=f"{lad.codec} stalls")
            self.p_lp.plot(pb.times, [f.lpips for f in s.frames], pen=pg.mkPen(color, width=1), name=lad.codec)
            m = s.summary
            lines.append(f"{lad.codec}: LPIPS shown {m['mean_lpips_shown']:.4f}, severe {m['severe_ratio']:.1%}, "
                         f"rebuffer {m['rebuffer_s']:.2f} s ({m['rebuffer_count']}), switches {m['switches']}, "
                         f"QoE {m['qoe_perceptual']:.1f} (1−LPIPS) / {m['qoe_pensieve']:.2f} (Pensieve)")
        steps = int(np.ceil(end / tr.step_s)) + 1
        cap = np.resize(np.asarray(tr.rate_kbps), steps)
        self.p_rate.plot(np.arange(steps + 1) * tr.step_s, cap, stepMode="center", pen=pg.mkPen(CAPACITY),
                         name="capacity")
        top = max(r.kbps for lad in (self.ladders.prompt, self.ladders.baseline) if lad for r in lad.rungs)
        self.p_rate.setYRange(0, 3 * top)  # the rungs' range; the trace's bursts go off the top
        self.p_lp.plot([0, end], [SEVERE_LPIPS, SEVERE_LPIPS], pen=pg.mkPen(STALL, style=Qt.PenStyle.DashLine),
                       name="severe")
        mp = tr.mapping
        self.summary.setText(f"{name}: scale {mp['scale']:.4g}{' (auto)' if self.spec().network.scale is None else ''}"
                             f", mean {mp['mean_kbps']:.2f} kbps, RTT {self.network.rtt_s:g} s — " + " | ".join(lines))
        self.slider.blockSignals(True)
        self.slider.setRange(0, int(end / CLOCK_STEP_S))
        self.slider.blockSignals(False)
        self.seek(min(self.clock, end))

    def seek(self, t: float) -> None:
        """Show what each viewer sees at wall-clock second t."""
        self.clock = t
        for c in self.cursors:
            c.setValue(t)
        for role, pane in self.panes.items():
            pb = self.playback.get(role)
            if pb is None:
                pane.clear()
                self.captions[role].setText(role)
                continue
            codec = pb.ladder.codec
            k, stalled = pb.at(t)
            if k is None:
                pane.setText("buffering…")
                self.captions[role].setText(f"{codec}: start-up")
                continue
            f = pb.session.frames[k]
            seg = pb.session.delivery.segments[f.segment]
            rung = pb.ladder.rungs[seg.rung]
            frames = self.recon.get(f"{rung.key}:{rung.codec}")
            if frames is not None:
                pane.setPixmap(_pixmap(frames[f.clip_frame]))
            state = "STALLED" if stalled else ("repeat" if f.repeated else "")
            self.captions[role].setText(f"{codec} {rung.label}: frame {f.clip_frame}, LPIPS {f.lpips:.3f}"
                                         f"{' (severe)' if f.severe else ''} {state}")
        if not self.slider.isSliderDown():
            self.slider.blockSignals(True)
            self.slider.setValue(int(round(t / CLOCK_STEP_S)))
            self.slider.blockSignals(False)

    def play(self, on: bool) -> None:
        if on:
            self.timer.start()
        else:
            self.timer.stop()

    def _tick(self) -> None:
        end = max((pb.end_s for pb in self.playback.values()), default=0.0)
        t = self.clock + PLAY_MS / 1000
        self.seek(0.0 if t > end else t)

    def screenshot(self, path: str | Path) -> Path:
        """The view as a PNG, written atomically (docs/streaming.md's picture is one)."""
        from promptlab.io.atomic import atomic_path

        p = Path(path)
        with atomic_path(p) as tmp:
            self.grab().save(str(tmp), "PNG")
        return p

    def closeEvent(self, ev) -> None:  # noqa: N802 - Qt API
        self.timer.stop()
        self.runner.close()
        super().closeEvent(ev)


def ladder_for(source: str, settings, frames_text: str = "") -> LadderSpec:
    """The ladder the network view measures for the lab's clip and settings: segments of one
    closed GOP (the settings' GOP, else one keyframe interval), the range cut to whole segments."""
    from promptlab.errors import PromptlabError
    from promptlab.io.video import checked_count, parse_frames

    frames = parse_frames(frames_text or None)
    n, _ = checked_count(source, frames)
    gop = settings.gop or settings.interval
    start = frames[0] if frames else 0
    whole = n // gop * gop
    if whole == 0:
        raise PromptlabError(f"the clip's {n} frames are fewer than one {gop}-frame segment")
    return LadderSpec(settings=settings.replace(gop=gop), source=source, frames=(start, start + whole))
