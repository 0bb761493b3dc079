"""Original, reconstruction and (optionally) H.265: side by side, wipe, difference, A/B flicker, RD.

All panes are pyqtgraph ViewBoxes that show the same region. The viewer owns one view state:
"fit" (the frame as large as fits a pane of the side-by-side layout, so switching to a
one-pane view never changes its size) or an integer zoom (1×, 2×, 4×, 8× screen pixels per
image pixel, nearest neighbour) with a centre. The wheel and + / − step through the zooms
about the cursor, a drag pans, and the state is re-applied to every pane whenever one is
resized or re-laid, so the frame's on-screen size never drifts through mode switches, the
H.265 pane or new results. A magnifier shows the pixels around the cursor of every image
with a pixel grid, and the readout their RGB values.

The difference view shows one measure for both codecs (|Δ|×k, or LPIPS's spatial map when it
exists for every pane shown) with its colour scale. A/B flicker alternates one pane between
original and reconstruction (or reconstruction and H.265) on F and at a chosen rate. The RD
view (rdview.py) takes the viewer's place in the "rd" mode.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QStackedWidget, QVBoxLayout, QWidget

from promptlab.gui.marks import MarkLabel
from promptlab.gui.rdview import RdView
from promptlab.gui.views import MODE_LABELS, MODES, ZOOMS

__all__ = ["MODES", "MODE_LABELS", "ZOOMS", "Viewer", "abs_diff_heat", "heat"]

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

FLICKER_PAIRS = {"orig-recon": ("original", "reconstruction"), "recon-h265": ("reconstruction", "H.265")}
MAG_RADIUS, MAG_CELL = 5, 11  # the magnifier shows 11×11 image pixels at 11 screen pixels each
SIDE_PX = (2 * MAG_RADIUS + 1) * MAG_CELL + 100  # the readout column beside the panes
FLICKER_RATES = (0.0, 1.0, 2.0, 4.0, 8.0)  # side changes per second offered; 0: only on F
DIFF_GAINS = (1, 2, 4, 8, 16)              # the k of |Δ|×k offered


def heat(d: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as a heat colour: black → red → yellow → white."""
    d = np.clip(d, 0.0, 1.0)
    r = np.clip(d * 2.0, 0, 1)
    g = np.clip(d * 2.0 - 1.0, 0, 1)
    b = np.clip(d * 4.0 - 3.0, 0, 1)
    return np.rint(np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)  # rounded: float32 and 64 agree


def abs_diff_heat(a: np.ndarray, b: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """|a − b| averaged over channels, amplified by `gain` and mapped to the heat colours."""
    return heat(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=2) * gain / 255.0)


class PaneBox(pg.ViewBox):
    """A pane whose wheel asks the viewer for the next zoom step instead of scaling freely."""

    wheelStep = Signal(int, object)  # +1 in / −1 out, the scene position under the cursor

    def wheelEvent(self, ev, axis=None) -> None:  # noqa: N802 - Qt API
        ev.accept()
        self.wheelStep.emit(1 if ev.delta() > 0 else -1, ev.scenePos())


class PaneTitle(pg.LabelItem):
    """A pane's title that never asks for width: a long title must not widen its column, so the
    panes stay equal and the fit scale holds for every one of them."""

    def updateMin(self) -> None:  # noqa: N802 - pyqtgraph API
        super().updateMin()
        self.setMinimumWidth(0)

    def sizeHint(self, hint, constraint):  # noqa: N802 - Qt API
        size = super().sizeHint(hint, constraint)
        if hint != Qt.SizeHint.MaximumSize:
            size.setWidth(0)
        return size


class Viewer(QWidget):
    """Shows frame `index` of the loaded images in the current mode."""

    pixelRead = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = "side"
        self.show_baseline = False
        self.lpips_maps: dict[int, np.ndarray] = {}       # uint8 H×W, 255 = LPIPS distance 1
        self.baseline_maps: dict[int, np.ndarray] = {}
        self.originals: list[np.ndarray] = []
        self.recon: dict[int, np.ndarray] = {}
        self.baseline: dict[int, np.ndarray] = {}
        self.index = 0
        self.split = 0.5
        self.gain = 4.0
        self.diff_measure = "lpips"          # "lpips" (when maps exist for every pane shown) or "abs"
        self.flicker_pair = "orig-recon"
        self.flicker_side = 0
        self.flicker_hz = 2.0                # side changes per second; 0 = only on F
        self.cursor: tuple[int, int] | None = None
        self.view: tuple[float, float, float] | None = None  # None: fit; else (zoom, cx, cy)
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground("#202020")
        self.rd = RdView()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.glw)
        self.stack.addWidget(self.rd)
        self.readout = QLabel("move the mouse over an image to read pixels")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.readout.setWordWrap(True)
        self.magnifier = QLabel()
        self.legend = QLabel()
        self.zoom_label = QLabel()
        self.zoom_label.setWordWrap(True)  # long text wraps: it must never widen the viewer (and its panes)
        self.rate_box = QComboBox()
        self.rate_box.addItems([f"{hz:g} Hz" if hz else "manual (F)" for hz in FLICKER_RATES])
        self.rate_box.setToolTip("A/B flicker: side changes per second")
        self.rate_box.setCurrentIndex(FLICKER_RATES.index(self.flicker_hz))
        self.rate_box.setVisible(False)  # shown in its mode only
        self.rate_box.currentIndexChanged.connect(lambda i: self.set_flicker_rate(FLICKER_RATES[i]))
        self.gain_box = QComboBox()
        self.gain_box.addItems([f"|Δ| ×{k}" for k in DIFF_GAINS])
        self.gain_box.setToolTip("Difference: |original − reconstruction| is multiplied by this before colouring")
        self.gain_box.setCurrentIndex(DIFF_GAINS.index(self.gain))
        self.gain_box.setVisible(False)
        self.gain_box.currentIndexChanged.connect(lambda i: self.set_gain(DIFF_GAINS[i]))
        choices = QHBoxLayout()
        choices.addWidget(self.rate_box)
        choices.addWidget(self.gain_box)
        choices.addStretch(1)
        # the readouts and the magnifier sit in a column beside the panes: a laptop's height goes to images
        self.mark_label = MarkLabel()
        side = QVBoxLayout()
        side.setContentsMargins(4, 2, 4, 2)
        side.addWidget(self.mark_label)
        side.addLayout(choices)
        side.addWidget(self.zoom_label)
        side.addWidget(self.readout)
        side.addWidget(self.legend)
        side.addStretch(1)
        side.addWidget(self.magnifier)
        self.bottom = QWidget()
        self.bottom.setLayout(side)
        self.bottom.setFixedWidth(SIDE_PX)  # never re-sizes the panes
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.stack, 1)
        lay.addWidget(self.bottom)
        self.boxes: list[PaneBox] = []
        self.items: list[pg.ImageItem] = []
        self.titles: list[pg.LabelItem] = []
        for k in range(3):
            title = PaneTitle("", color="#dddddd")
            vb = PaneBox(lockAspect=True, invertY=True, enableMenu=False)
            vb.disableAutoRange()
            item = pg.ImageItem()
            vb.addItem(item)
            vb.sigRangeChangedManually.connect(lambda *_, k=k: self._user_panned(k))
            vb.sigResized.connect(self._apply_view)
            vb.wheelStep.connect(self._wheel)
            self.boxes.append(vb)
            self.items.append(item)
            self.titles.append(title)
        self.divider = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("#ffcc00", width=2))
        self.divider.sigPositionChanged.connect(self._divider_moved)
        self.boxes[0].addItem(self.divider, ignoreBounds=True)
        self.glw.viewport().installEventFilter(self)  # every move: the scene's signal drops fast ones
        self.flicker_timer = QTimer(self)
        self.flicker_timer.timeout.connect(self.flicker_toggle)
        for seq, fn in {"F": self.flicker_toggle, "Shift+F": self.next_flicker_pair,
                        "D": self.next_diff_measure}.items():
            QShortcut(QKeySequence(seq), self, activated=fn)
        self._layout_panes()

    # ------------------------------------------------------------------ data

    def set_originals(self, frames: list[np.ndarray]) -> None:
        self.originals = list(frames)
        self.refresh(fit=True)

    def clear_results(self) -> None:
        self.recon.clear()
        self.baseline.clear()
        self.lpips_maps.clear()
        self.baseline_maps.clear()
        self.refresh()

    def set_recon(self, index: int, image: np.ndarray) -> None:
        self.recon[index] = image
        if index == self.index:
            self.refresh()

    def set_lpips_map(self, index: int, gray: np.ndarray, baseline: bool = False) -> None:
        """LPIPS's spatial map of a frame (uint8, 255 = distance 1.0), of promptlab's or the baseline's."""
        (self.baseline_maps if baseline else self.lpips_maps)[index] = gray

    def set_baseline(self, index: int, image: np.ndarray) -> None:
        self.baseline[index] = image
        if index == self.index and self.show_baseline:
            self.refresh()

    def count(self) -> int:
        return max(len(self.originals), max(self.recon, default=-1) + 1)

    # ------------------------------------------------------------------ modes
    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(mode)
        self.mode = mode
        self.stack.setCurrentWidget(self.rd if mode == "rd" else self.glw)
        self.bottom.setVisible(mode != "rd")
        self.rate_box.setVisible(mode == "flicker")
        self.gain_box.setVisible(mode == "diff")
        if mode == "flicker" and self.flicker_hz > 0:
            self.flicker_timer.start(int(1000 / self.flicker_hz))
        else:
            self.flicker_timer.stop()
        if mode == "rd":
            self.rd.refresh()
        self._layout_panes()
        self.refresh()

    def set_show_baseline(self, on: bool) -> None:
        self.show_baseline = on
        self._layout_panes()
        self.refresh()

    def seek(self, index: int) -> None:
        self.index = max(0, min(int(index), max(0, self.count() - 1)))
        self.refresh()

    def flicker_toggle(self) -> None:
        """Show the other side of the flicker pair (F; the timer calls it at the chosen rate)."""
        self.flicker_side = 1 - self.flicker_side
        if self.mode == "flicker":
            self.refresh()

    def next_flicker_pair(self) -> None:
        """original ↔ reconstruction, then reconstruction ↔ H.265 (Shift+F)."""
        names = list(FLICKER_PAIRS)
        self.flicker_pair = names[(names.index(self.flicker_pair) + 1) % len(names)]
        self.refresh()

    def set_flicker_rate(self, hz: float) -> None:
        """Side changes per second while flickering; 0 flips only on F."""
        self.flicker_hz = max(0.0, float(hz))
        if self.flicker_hz in FLICKER_RATES:
            self.rate_box.blockSignals(True)
            self.rate_box.setCurrentIndex(FLICKER_RATES.index(self.flicker_hz))
            self.rate_box.blockSignals(False)
        self.set_mode(self.mode)

    def set_gain(self, k: float) -> None:
        """The k of |Δ|×k: small differences made visible, the same k for every pane."""
        self.gain = float(k)
        if k in DIFF_GAINS:
            self.gain_box.blockSignals(True)
            self.gain_box.setCurrentIndex(DIFF_GAINS.index(k))
            self.gain_box.blockSignals(False)
        self.refresh()

    def next_diff_measure(self) -> None:
        """LPIPS map ↔ |Δ|×k, for every pane at once (D)."""
        self.diff_measure = "abs" if self.diff_measure == "lpips" else "lpips"
        self.refresh()

    def _layout_panes(self) -> None:
        self.glw.clear()
        for i in range(self._n_panes()):
            self.glw.addItem(self.titles[i], row=0, col=i)
            self.glw.addItem(self.boxes[i], row=1, col=i)
        self.divider.setVisible(self.mode == "split")
        self._apply_view()

    def _n_panes(self) -> int:
        if self.mode == "flicker":
            return 1
        return (1 if self.mode == "split" else 2) + (1 if self.show_baseline else 0)

    # ------------------------------------------------------------------ drawing
    def _frames(self) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        i = self.index
        return (self.originals[i] if i < len(self.originals) else None, self.recon.get(i), self.baseline.get(i))

    def measure(self) -> str:
        """The difference measure in use: "lpips" only when every pane shown has a map."""
        i = self.index
        have = i in self.lpips_maps and (not self.show_baseline or i in self.baseline_maps)
        return "lpips" if self.diff_measure == "lpips" and have else "abs"

    def _images(self) -> list[tuple[str, np.ndarray | None]]:
        orig, rec, base = self._frames()
        if self.mode == "side":
            panes = [("original", orig), ("promptlab", rec)]
        elif self.mode == "split":
            panes = [("original | reconstruction (drag the yellow line)", self._wipe(orig, rec))]
        elif self.mode == "flicker":
            a, b = FLICKER_PAIRS[self.flicker_pair]
            shown = (a, b)[self.flicker_side]
            img = {"original": orig, "reconstruction": rec, "H.265": base}[shown]
            rate = f"{self.flicker_hz:g} Hz" if self.flicker_hz else "manual"
            return [(f"A/B flicker: {shown.upper()} ({'AB'[self.flicker_side]}) · {a} ↔ {b} · F flips, "
                     f"Shift+F pair · {rate}", img)]
        else:
            panes = [("original", orig), *self._diffs(orig, [("promptlab", rec, self.lpips_maps)])]
        if self.show_baseline:
            if self.mode == "diff":
                panes += self._diffs(orig, [("H.265", base, self.baseline_maps)])
            else:
                panes.append(("H.265 same kbps", base))
        return panes

    def _diffs(self, orig, named) -> list[tuple[str, np.ndarray | None]]:
        out = []
        for name, img, maps in named:
            if self.measure() == "lpips":
                m = maps.get(self.index)
                out.append((f"{name}: LPIPS spatial map", None if m is None else heat(m.astype(np.float32) / 255.0)))
            else:
                ok = orig is not None and img is not None and orig.shape == img.shape
                out.append((f"{name}: |original − {name}| ×{self.gain:g}", abs_diff_heat(orig, img, self.gain)
                            if ok else None))
        return out

    def _wipe(self, a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
        if a is None or b is None or a.shape != b.shape:
            return a if b is None else b
        x = int(round(self.split * a.shape[1]))
        out = a.copy()
        out[:, x:] = b[:, x:]
        return out

    def refresh(self, fit: bool = False) -> None:
        frame = f"frame {self.index}"
        for k, (title, img) in enumerate(self._images()):
            self.titles[k].setText(f"{title} — {frame}" if img is not None else f"{title} — (not computed yet)")
            if img is None:
                self.items[k].clear()
            else:
                self.items[k].setImage(img, autoLevels=False, levels=(0, 255))
        if fit:
            self.fit()
        w = self._size()[0]
        if w and self.mode == "split":
            self.divider.blockSignals(True)
            self.divider.setValue(self.split * w)
            self.divider.blockSignals(False)
        self._update_legend()
        self._update_magnifier()

    def _size(self) -> tuple[int, int]:
        if self.originals:
            return self.originals[0].shape[1], self.originals[0].shape[0]
        img = next(iter(self.recon.values()), None)
        return (img.shape[1], img.shape[0]) if img is not None else (0, 0)

    def _divider_moved(self) -> None:
        w = self._size()[0]
        if w:
            self.split = float(np.clip(self.divider.value() / w, 0.0, 1.0))
            self.refresh()

    def set_split(self, fraction: float) -> None:
        self.split = float(np.clip(fraction, 0.0, 1.0))
        self.refresh()

    def _update_legend(self) -> None:
        if self.mode != "diff":
            self.legend.setVisible(False)
            return
        ramp = np.repeat(heat(np.linspace(0.0, 1.0, 256))[None], 12, axis=0)
        self.legend.setPixmap(QPixmap.fromImage(_qimage(ramp)))
        self.legend.setVisible(True)
        if self.measure() == "lpips":
            self.legend.setToolTip("LPIPS spatial distance: black 0 → white ≥ 1 (the same scale in every pane)")
            scale = "LPIPS distance 0 … ≥1"
        else:
            scale = f"|Δ| (mean over RGB) 0 … ≥{255 / self.gain:.0f}"
        self.zoom_label.setText(f"{self._zoom_text()}   ·   colour scale (every pane): {scale}   ·   D switches "
                                "LPIPS map / |Δ|")

    # ------------------------------------------------------------------ zoom and pan
    def fit(self) -> None:
        """Show the whole frame again, as large as a side-by-side pane allows."""
        self.view = None
        self._apply_view()

    def set_zoom(self, zoom: int) -> None:
        """An integer zoom from ZOOMS about the current centre; 0 fits."""
        if zoom == 0:
            self.fit()
            return
        if zoom not in ZOOMS:
            raise ValueError(f"zoom must be 0 (fit) or one of {ZOOMS}, got {zoom}")
        cx, cy = self._centre()
        self.view = (float(zoom), cx, cy)
        self._apply_view()

    def zoom_step(self, step: int, anchor: tuple[float, float] | None = None) -> None:
        """The next integer zoom in (+1) or out (−1; below 1× fits), keeping `anchor` (image x, y) in place."""
        cur = self.scale()
        if step > 0:
            new = next((z for z in ZOOMS if z > cur * 1.001), ZOOMS[-1])
        else:
            new = next((z for z in reversed(ZOOMS) if z < cur * 0.999), None)
        if new is None:
            self.fit()
            return
        cx, cy = self._centre()
        if anchor is not None:
            ax, ay = anchor
            cx, cy = ax + (cx - ax) * cur / new, ay + (cy - ay) * cur / new
        self.view = (float(new), cx, cy)
        self._apply_view()

    def scale(self) -> float:
        """Screen pixels per image pixel in every pane: the zoom, or the fit scale."""
        return self.view[0] if self.view is not None else self.fit_scale()

    def fit_scale(self) -> float:
        """The largest scale at which the frame fits a pane of the side-by-side layout."""
        w, h = self._size()
        if not w or not h:
            return 1.0
        n = 2 + (1 if self.show_baseline else 0)
        pane_w = (self.glw.width() - 12 * n) / n
        pane_h = self.boxes[0].height() if self.boxes[0].height() > 0 else self.glw.height() - 40
        return max(0.05, min(pane_w / w, pane_h / h))

    def image_scale(self) -> float:
        """Screen pixels per image pixel as drawn in the first pane (what must not drift)."""
        it = self.items[0]
        r = it.mapRectToScene(it.boundingRect())
        return r.width() / max(1.0, it.boundingRect().width())

    def _centre(self) -> tuple[float, float]:
        if self.view is not None:
            return self.view[1], self.view[2]
        w, h = self._size()
        return w / 2, h / 2

    def _wheel(self, step: int, scene_pos) -> None:
        box = next((b for b in self.boxes if b.sceneBoundingRect().contains(scene_pos)), self.boxes[0])
        p = box.mapSceneToView(scene_pos)
        self.zoom_step(step, (p.x(), p.y()))

    def _user_panned(self, k: int) -> None:
        """A drag in pane k: keep the scale, take the new centre, show it in every pane."""
        r = self.boxes[k].viewRect()
        if r.width() <= 0:
            return
        self.view = (self.scale(), r.center().x(), r.center().y())
        self._apply_view(skip=k)

    def _apply_view(self, *_: object, skip: int = -1) -> None:
        scale = self.scale()
        cx, cy = self._centre()
        for k, vb in enumerate(self.boxes):
            if k == skip:
                continue
            w, h = vb.width() / scale, vb.height() / scale
            if w > 0 and h > 0:
                vb.setRange(QRectF(cx - w / 2, cy - h / 2, w, h), padding=0)
        self.zoom_label.setText(self._zoom_text())
        if self.mode == "diff":
            self._update_legend()

    def _zoom_text(self) -> str:
        z = "fit" if self.view is None else f"{self.view[0]:g}×"
        return f"zoom {z} ({self.scale():.2f} screen px per image px) · wheel or + / − steps 1×, 2×, 4×, 8× · 0 fits"

    # ------------------------------------------------------------------ pixels
    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:  # noqa: N802 - Qt API
        """Follow every mouse move over the panes: pyqtgraph's sigMouseMoved is rate-limited and
        would leave the magnifier on a pixel the cursor has already left."""
        if ev.type() == QEvent.Type.MouseMove and obj == self.glw.viewport():
            self._mouse_moved(self.glw.mapToScene(ev.position().toPoint()))
        return super().eventFilter(obj, ev)

    def _mouse_moved(self, pos) -> None:
        for k in range(self._n_panes()):
            vb = self.boxes[k]
            if vb.sceneBoundingRect().contains(pos):
                p = vb.mapSceneToView(QPointF(pos))
                self.point_at(int(np.floor(p.x())), int(np.floor(p.y())))
                return

    def point_at(self, x: int, y: int) -> None:
        """Read out and magnify image pixel (x, y) of every image (the mouse calls it)."""
        self.cursor = (x, y)
        text = self.read_pixel(x, y)
        self.readout.setText(text)
        self.pixelRead.emit(text)
        self._update_magnifier()

    def pixel_values(self, x: int, y: int) -> dict[str, tuple[int, int, int] | None]:
        """RGB at (x, y) in the original, reconstruction and baseline of the current frame (None outside)."""
        out: dict[str, tuple[int, int, int] | None] = {}
        for name, img in zip(("original", "recon", "H.265"), self._frames(), strict=True):
            if img is None:
                continue
            inside = 0 <= y < img.shape[0] and 0 <= x < img.shape[1]
            out[name] = tuple(int(v) for v in img[y, x, :3]) if inside else None
        return out

    def read_pixel(self, x: int, y: int) -> str:
        parts = [f"x={x} y={y}"]
        for name, rgb in self.pixel_values(x, y).items():
            if rgb is not None:
                parts.append(f"{name} ({rgb[0]}, {rgb[1]}, {rgb[2]})")
        return "   ".join(parts)

    def magnified(self) -> np.ndarray | None:
        """The magnifier's picture: per image, 11×11 pixels around the cursor, enlarged, on a grid."""
        if self.cursor is None:
            return None
        x, y = self.cursor
        tiles = []
        for img in self._frames():
            if img is None:
                continue
            pad = np.full((2 * MAG_RADIUS + 1, 2 * MAG_RADIUS + 1, 3), 48, np.uint8)
            h, w = img.shape[:2]
            y0, x0 = y - MAG_RADIUS, x - MAG_RADIUS
            ys, xs = slice(max(0, y0), max(0, min(h, y + MAG_RADIUS + 1))), slice(max(0, x0), max(0, min(w, x + MAG_RADIUS + 1)))
            crop = img[ys, xs, :3]
            pad[ys.start - y0: ys.start - y0 + crop.shape[0], xs.start - x0: xs.start - x0 + crop.shape[1]] = crop
            big = np.repeat(np.repeat(pad, MAG_CELL, axis=0), MAG_CELL, axis=1)
            big[::MAG_CELL, :] = 0
            big[:, ::MAG_CELL] = 0
            c0, c1 = MAG_RADIUS * MAG_CELL, (MAG_RADIUS + 1) * MAG_CELL
            big[c0, c0:c1 + 1] = big[c1 - 1, c0:c1 + 1] = (255, 204, 0)
            big[c0:c1, c0] = big[c0:c1, c1 - 1] = (255, 204, 0)
            tiles += [big, np.full((big.shape[0], 6, 3), 32, np.uint8)]
        return np.concatenate(tiles[:-1], axis=1) if tiles else None

    def _update_magnifier(self) -> None:
        pic = self.magnified()
        if pic is None:
            self.magnifier.clear()
            return
        self.magnifier.setPixmap(QPixmap.fromImage(_qimage(pic)))
        if self.cursor is not None:
            self.readout.setText(self.read_pixel(*self.cursor))


def _qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
