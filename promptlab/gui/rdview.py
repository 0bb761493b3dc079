"""The RD view: kbps against LPIPS and PSNR for every run of this clip in the results cache.

Promptlab points are labelled by rank and keyframe interval; clicking one asks the window to
load that run (`runClicked(key)`). The H.265 ladder over the same rates (runs/rd.py) is
computed in a background thread, never on the UI thread, and stored, so it appears at once
the next time; the BD-rate is shown where the two curves overlap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from promptlab.runs.rd import RdPoint, bd_rates, cached_points, ladder, ladder_targets
from promptlab.runs.results import ResultsCache

BLUE, ORANGE = "#4aa3ff", "#ff9f40"


@dataclass
class RdContext:
    """What the view needs from the window: where results live, which clip, its frames and rate."""

    cache: ResultsCache
    clip: str
    originals: Sequence[np.ndarray]
    fps: float


class RdView(QWidget):
    runClicked = Signal(str)
    ladderDone = Signal(int, object)     # (request number, list of RdPoint or an error message)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.provider: Callable[[], RdContext | None] | None = None
        self.points: list[RdPoint] = []
        self.rungs: list[RdPoint] = []
        self.bd: dict[str, float | None] = {}
        self._request = 0
        self._shown = 0  # the request whose result (or lack of one) the view shows
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground("#1c1c1c")
        self.plots = {"lpips": self.glw.addPlot(row=0, col=0), "psnr": self.glw.addPlot(row=0, col=1)}
        for metric, p in self.plots.items():
            p.setLabel("bottom", "kbps (every byte counted)")
            p.setLabel("left", "LPIPS — lower is better" if metric == "lpips" else "PSNR (dB) — higher is better")
            p.showGrid(x=True, y=True, alpha=0.25)
            for ax in ("left", "bottom"):
                p.getAxis(ax).enableAutoSIPrefix(False)  # LPIPS 0.7, never "700 (x0.001)"
            # the legend in the corner the good points stay away from: LPIPS falls, PSNR rises with rate
            p.addLegend(offset=(-10, 5) if metric == "lpips" else (-10, -5), labelTextSize="8pt")
        self.info = QLabel("")
        self.info.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.glw, 1)
        lay.addWidget(self.info)
        self.ladderDone.connect(self._ladder_done)

    def busy(self) -> bool:
        """True until the latest ladder's result has been shown (the worker thread may end before its
        queued result reaches the UI thread, so the thread's liveness alone is not the answer)."""
        return self._shown != self._request

    def refresh(self) -> None:
        """Read this clip's runs from the cache and start the ladder for their rates (in the background)."""
        ctx = self.provider() if self.provider is not None else None
        self._request += 1
        self._shown = self._request
        self._cancel.set()
        self.points, self.rungs, self.bd = [], [], {}
        if ctx is None:
            self.info.setText("open a clip (with its frames loaded) to see the runs of it in the results cache")
            self._draw()
            return
        self.points = cached_points(ctx.cache, ctx.clip)
        targets = ladder_targets(self.points)
        if not targets:
            self.info.setText("no finished run of this clip in the results cache yet: Run to add a point")
            self._draw()
            return
        self.info.setText(f"{len(self.points)} run(s) of this clip; H.265 ladder at {len(targets)} rates: "
                          "computing in the background…")
        self._draw()
        self._cancel = threading.Event()
        self._shown = self._request - 1
        self._thread = threading.Thread(target=self._work, args=(self._request, ctx, targets, self._cancel),
                                        name="promptlab-rd-ladder", daemon=True)
        self._thread.start()

    def _work(self, request: int, ctx: RdContext, targets: list[float], cancel: threading.Event) -> None:
        result: Any
        try:
            result = ladder(list(ctx.originals), ctx.fps, targets, ctx.clip, ctx.cache, cancel=cancel)
        except Exception as exc:  # noqa: BLE001 - shown in the view, never a crash of the window
            result = f"the H.265 ladder failed: {exc}"
        try:
            self.ladderDone.emit(request, result)
        except RuntimeError:  # the view was closed meanwhile
            pass

    def _ladder_done(self, request: int, result: object) -> None:
        if request != self._request:
            return
        self._shown = request
        if isinstance(result, str):
            self.info.setText(result)
            return
        self.rungs = list(result)  # type: ignore[arg-type]
        self.bd = bd_rates(self.points, self.rungs)
        self._draw()
        parts = []
        for metric, name in (("lpips", "LPIPS"), ("psnr", "PSNR")):
            v = self.bd.get(metric)
            parts.append(f"BD-rate vs H.265 on {name}: " + ("curves do not overlap" if v is None else
                                                            f"{v:+.1f}% (negative: promptlab needs fewer bits)"))
        self.info.setText(f"{len(self.points)} run(s) of this clip (click one to load it); " + "; ".join(parts))

    def _draw(self) -> None:
        for metric, p in self.plots.items():
            p.clear()
            rungs = [q for q in self.rungs if getattr(q, metric) is not None]
            if rungs:
                p.plot([q.kbps for q in rungs], [getattr(q, metric) for q in rungs], name="H.265 ladder",
                       pen=pg.mkPen(ORANGE, width=1.5), symbol="t", symbolBrush=ORANGE, symbolPen=None, symbolSize=8)
            ours = [q for q in self.points if getattr(q, metric) is not None]
            if not ours:
                continue
            scatter = pg.ScatterPlotItem([q.kbps for q in ours], [getattr(q, metric) for q in ours],
                                         data=[q.key for q in ours], size=12, brush=BLUE, pen=pg.mkPen("w"),
                                         name="promptlab runs (click to load)")
            scatter.sigClicked.connect(self._clicked)
            p.addItem(scatter)
            for q in ours:
                label = pg.TextItem(q.label, color="#dddddd", anchor=(0, 1))
                label.setPos(q.kbps, getattr(q, metric))
                p.addItem(label)

    def _clicked(self, _item, spots, *_: object) -> None:
        if len(spots):
            self.runClicked.emit(str(spots[0].data()))
