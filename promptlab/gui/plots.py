"""Per-frame plots that grow while the engines run: quality, bandwidth, generation time.

One curve item per series, updated with setData by a throttling QTimer (never a rebuilt plot
per frame). Clicking a point (or anywhere on a plot) asks the viewer to seek to that frame.
A list of the worst frames sits beside the plots.

The three plots share one frame axis: equal left and right axis widths, so a frame sits at the
same x on every plot and the last one is never cut by the bandwidth plot's kbps axis. Frame 0
carries the init latent (often 20x a keyframe); the bandwidth plot's y range is set by the other
frames and the title gives frame 0's bytes when it goes off the top.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from promptlab.gui.marks import MarkLabel
from promptlab.settings import SEVERE_LPIPS

THROTTLE_MS = 200
BW_TITLE = "Bandwidth per frame — lower is better"
LEFT_AXIS_PX, RIGHT_AXIS_PX = 64, 52  # the same on every plot, so their frame axes line up
BLUE, ORANGE, GREY, RED = "#4aa3ff", "#ff9f40", "#aaaaaa", "#ff5555"


TITLE_SIZE = "9pt"


def _title(plot: pg.PlotItem, text: str) -> None:
    """A plot's title, small and never wider than the plot: a long title would widen the plots'
    scene past the panel and cut off their right side (the kbps axis)."""
    plot.setTitle(text, size=TITLE_SIZE)
    plot.titleLabel.setMinimumWidth(0)
    plot.titleLabel.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)


class FrameAxis(pg.AxisItem):
    """A frame-number axis: ticks only at whole frames (a 1-frame plot reads "0", never 0.2, 0.4…)."""

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list:  # noqa: N802 - pyqtgraph API
        levels = super().tickValues(minVal, maxVal, size)
        out = []
        for spacing, values in levels:
            if spacing < 1:
                continue
            out.append((spacing, [v for v in values if float(v).is_integer()]))
        if not out:  # zoomed in past one frame: every whole frame in view
            lo, hi = math.ceil(minVal), math.floor(maxVal)
            out = [(1.0, [float(v) for v in range(lo, hi + 1)])]
        return out


class Series:
    """One per-frame series: values by frame index, drawn by one PlotDataItem."""

    MARKS = {"o": "●", "t": "▼", None: "━"}

    def __init__(self, plot: pg.PlotItem, name: str, color: str, symbol: str | None = "o") -> None:
        self.values: dict[int, float] = {}
        self.name, self.color, self.mark = name, color, self.MARKS.get(symbol, "●")
        self.item = plot.plot([], [], pen=pg.mkPen(color, width=1.5), symbol=symbol,
                              symbolSize=6, symbolBrush=color, symbolPen=None)

    def set(self, index: int, value: float | None) -> None:
        if value is not None and math.isfinite(value):
            self.values[index] = float(value)

    def clear(self) -> None:
        self.values.clear()
        self.item.setData([], [])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        xs = np.array(sorted(self.values), dtype=float)
        return xs, np.array([self.values[int(x)] for x in xs], dtype=float)

    def redraw(self) -> None:
        x, y = self.arrays()
        self.item.setData(x, y)


class PlotPanel(QWidget):
    """Three linked per-frame plots and the worst-frames list; `frameClicked` carries an index."""

    frameClicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.fps = 30.0
        self.quality_is_lpips = True
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground("#1c1c1c")
        plots = [self.glw.addPlot(row=row, col=0, axisItems={"bottom": FrameAxis("bottom")}) for row in range(3)]
        self.q, self.bw, self.t = plots
        for p in plots:
            p.showGrid(x=False, y=True, alpha=0.25)  # the x grid doubles the paint cost
            p.setMouseEnabled(x=True, y=False)
            p.showAxis("right")
            for ax in ("left", "bottom", "right"):
                p.getAxis(ax).enableAutoSIPrefix(False)
            p.getAxis("left").setWidth(LEFT_AXIS_PX)
            p.getAxis("right").setWidth(RIGHT_AXIS_PX)
            p.getAxis("left").setStyle(maxTextLevel=0)   # major labels only, sparse: no overlap on a short plot
            p.getAxis("left").setTickDensity(0.6)
        self.t.setLabel("bottom", "frame")
        for p in (self.q, self.t):
            p.getAxis("right").setStyle(showValues=False)
        self.bw.enableAutoRange(y=False)
        self.bw.setXLink(self.q)
        self.t.setXLink(self.q)
        self.quality = Series(self.q, "promptlab", BLUE)
        self.quality_base = Series(self.q, "H.265 same kbps", ORANGE, "t")
        self.quality_mean = Series(self.q, "running mean", GREY, None)
        self.severe = pg.InfiniteLine(pos=SEVERE_LPIPS, angle=0, pen=pg.mkPen(RED, style=Qt.PenStyle.DashLine),
                                      label=f"severe > {SEVERE_LPIPS}", labelOpts={"color": RED, "position": 0.12})
        self.q.addItem(self.severe)
        self.bytes = Series(self.bw, "promptlab B/frame", BLUE)
        self.bytes_base = Series(self.bw, "H.265 B/frame", ORANGE, "t")
        self.running = Series(self.bw, "mean, no init (right: kbps)", GREY, None)
        self.gen = Series(self.t, "generation ms", BLUE)
        self.all = [self.quality, self.quality_base, self.quality_mean, self.bytes, self.bytes_base, self.running, self.gen]
        self.cursors = []
        for p in (self.q, self.bw, self.t):
            c = pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen("#ffcc00", width=1))
            p.addItem(c, ignoreBounds=True)
            self.cursors.append(c)
            p.scene().sigMouseClicked.connect(self._scene_clicked)
        for s in self.all:
            s.item.sigPointsClicked.connect(self._points_clicked)
        # the legend is a label beside the plots, never drawn over the points
        self.key = QLabel("")
        self.key.setWordWrap(True)
        self.kbps_label = QLabel("")
        self.frame0_note = QLabel("")
        self.frame0_note.setWordWrap(True)
        self.worst = QListWidget()
        self.worst.setMaximumWidth(230)
        self.worst.itemClicked.connect(lambda it: self.frameClicked.emit(int(it.data(Qt.ItemDataRole.UserRole))))
        self.mark_label = MarkLabel()
        side = QVBoxLayout()
        self.worst_title = QLabel("Worst frames (LPIPS, click to view)")
        side.addWidget(self.mark_label)
        side.addWidget(self.key)
        side.addWidget(self.worst_title)
        side.addWidget(self.worst, 1)
        side.addWidget(self.frame0_note)
        side.addWidget(self.kbps_label)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.glw, 1)
        lay.addLayout(side)
        self.init_bytes = 0
        self.header_bytes = 0
        self._dirty = False
        self.timer = QTimer(self)
        self.timer.setInterval(THROTTLE_MS)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()
        self.set_quality_metric(True)
        self.set_cache_label("")
        self.set_baseline_visible(False)

    # ------------------------------------------------------------------ labels

    def set_quality_metric(self, lpips: bool, note: str = "", measured: bool = True) -> None:
        """LPIPS when its weights exist, else PSNR, and the plot says which and why (`note`, the
        job's own reason); nothing when there is no original to measure against."""
        self.quality_is_lpips = lpips
        self.glw.setToolTip(note)
        if lpips:
            _title(self.q, "LPIPS per frame — lower is better")
            self.q.setLabel("left", "LPIPS")
            self.worst_title.setText("Worst frames (highest LPIPS)")
        elif not measured:
            _title(self.q, f"Quality per frame — {note or 'not measured: no original to compare with'}")
            self.q.setLabel("left", "quality")
            self.worst_title.setText("Worst frames (quality not measured)")
        else:
            _title(self.q, "PSNR per frame (dB) — higher is better — "
                            f"{note or 'LPIPS unavailable: run promptlab fetch-weights lpips'}")
            self.q.setLabel("left", "PSNR", units="dB")
            self.worst_title.setText("Worst frames (lowest PSNR)")
        self.severe.setVisible(lpips)
        _title(self.bw, BW_TITLE)
        self.bw.setLabel("left", "bytes/frame")
        self.bw.getAxis("right").setScale(8 * self.fps / 1000)
        self.bw.setLabel("right", "kbps")
        self.t.setLabel("left", "ms/frame")

    # ------------------------------------------------------------------ data in
    def clear(self) -> None:
        for s in self.all:
            s.clear()
        self.worst.clear()
        self.kbps_label.setText("")
        self.frame0_note.setText("")
        self.init_bytes = self.header_bytes = 0
        self._dirty = False

    def set_cache_label(self, label: str) -> None:
        """Name the cache policy the generation times were measured with (they depend on it)."""
        self.cache_label = label
        cache = f" with cache {label}" if label else ""
        _title(self.t, f"Generation time per frame{cache} — lower is better")

    def set_fps(self, fps: float) -> None:
        self.fps = fps
        self.bw.getAxis("right").setScale(8 * fps / 1000)

    def set_init(self, init_bytes: int, header_bytes: int) -> None:
        self.init_bytes, self.header_bytes = init_bytes, header_bytes
        self._dirty = True

    def add_frame(self, row: dict) -> None:
        i = int(row["index"])
        q = row.get("lpips") if self.quality_is_lpips else row.get("psnr")
        self.quality.set(i, q)
        if q is not None:
            qx, qy = self.quality.arrays()
            qmean = np.cumsum(qy) / np.arange(1, len(qy) + 1)
            self.quality_mean.values = {int(x): float(v) for x, v in zip(qx, qmean, strict=True)}
        self.bytes.set(i, row.get("bytes"))
        self.gen.set(i, row.get("gen_ms"))
        xs, ys = self.bytes.arrays()
        if len(xs):
            # the line leaves frame 0's one-off bytes (init latent, header) aside, or it starts far off the
            # top and stays above every point; the label beside the plots gives the rate with them
            steady = ys.astype(float).copy()
            if xs[0] == 0:
                steady[0] = max(0.0, steady[0] - self.init_bytes - self.header_bytes)
            mean = np.cumsum(steady) / np.arange(1, len(ys) + 1)
            self.running.values = {int(x): float(v) for x, v in zip(xs, mean, strict=True)}
            self.kbps_label.setText(f"running {ys.sum() * 8 * self.fps / len(ys) / 1000:.1f} kbps\n"
                                    f"({len(ys)} frames, {ys.sum():.0f} B incl. init)")
        self._dirty = True

    def add_keyframe_bytes(self, frames: list[int], record_bytes: int) -> None:
        """During encoding, spread a keyframe record over its frames (replaced by the decoder's numbers)."""
        for f in frames:
            self.bytes.set(int(f), record_bytes / max(1, len(frames)))
        self._dirty = True

    def add_baseline(self, row: dict) -> None:
        i = int(row["index"])
        self.quality_base.set(i, row.get("lpips") if self.quality_is_lpips else row.get("psnr"))
        self.bytes_base.set(i, row.get("bytes"))
        self._dirty = True

    def set_baseline_visible(self, on: bool) -> None:
        """H.265 curves (and their legend entries) only when the baseline is asked for."""
        for s in (self.quality_base, self.bytes_base):
            s.item.setVisible(on)
        self._legend()

    def _legend(self) -> None:
        groups = ((self.q, "quality", (self.quality, self.quality_base, self.quality_mean)),
                  (self.bw, "bandwidth", (self.bytes, self.bytes_base, self.running)),
                  (self.t, "time", (self.gen,)))
        lines = []
        for _plot, title, series in groups:
            keys = [f"<span style='color:{s.color}'>{s.mark}</span>&nbsp;{s.name}"
                    for s in series if s.item.isVisible()]
            lines.append(f"<b>{title}</b>: " + " &nbsp;".join(keys))
        self.key.setText("<br>".join(lines))

    def set_cursor(self, index: int) -> None:
        for c in self.cursors:
            c.setValue(index)

    def point_count(self) -> int:
        return len(self.quality.values)

    # ------------------------------------------------------------------ drawing
    def redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        for s in self.all:
            s.redraw()
        self._bandwidth_range()
        self._update_worst()

    def _bandwidth_range(self) -> None:
        """Y range from the frames after 0 (frame 0 holds the init latent); label frame 0 if it is off the top."""
        later = [v for s in (self.bytes, self.bytes_base) for i, v in s.values.items() if i > 0]
        first = self.bytes.values.get(0)
        top = max(later, default=0.0) * 1.25 or (first or 0.0) * 1.1 or 1.0
        self.bw.setYRange(0.0, top, padding=0)
        text = f"init {self.init_bytes} + header {self.header_bytes} B" if self.init_bytes else ""
        if first is not None and first > top:
            text = f"frame 0: {first:.0f} B off the top" + (f" ({text})" if text else "")
        elif text:
            text = f"frame 0 holds {text}"
        # beside the plots, never over the points (a label inside the plot covered the first frames)
        self.frame0_note.setText(f"bandwidth plot: {text}" if text else "")

    def _update_worst(self, n: int = 10) -> None:
        vals = self.quality.values
        order = sorted(vals, key=lambda i: vals[i], reverse=self.quality_is_lpips)[:n]
        self.worst.clear()
        for i in order:
            unit = "" if self.quality_is_lpips else " dB"
            it = QListWidgetItem(f"frame {i:4d}   {vals[i]:.4f}{unit}")
            it.setData(Qt.ItemDataRole.UserRole, i)
            self.worst.addItem(it)

    # ------------------------------------------------------------------ clicks
    def _points_clicked(self, item, points, *args) -> None:
        if len(points):
            self.frameClicked.emit(int(round(points[0].pos().x())))

    def _scene_clicked(self, ev) -> None:
        if ev.isAccepted():
            return
        for p in (self.q, self.bw, self.t):
            if p.vb.sceneBoundingRect().contains(ev.scenePos()):
                x = p.vb.mapSceneToView(ev.scenePos()).x()
                known = sorted(set(self.quality.values) | set(self.bytes.values))
                if known:
                    self.frameClicked.emit(int(min(known, key=lambda k: abs(k - x))))
                return
