"""Original, reconstruction and (optionally) H.265 side by side, as a wipe, or as a difference.

All panes are pyqtgraph ViewBoxes that show the same region, so zoom (wheel, at the cursor) and
pan (drag) stay in sync. The viewer owns one view state: "fit" (each pane shows the whole frame)
until the user zooms or pans, then a scale in screen pixels per image pixel and a centre. Mode
switches, the baseline pane and new results re-lay the panes; the state is re-applied to every
pane whenever it is resized, so the frame's on-screen size never drifts (pyqtgraph's own axis
links, with locked aspect and panes leaving and re-entering the layout, shrank it at every switch).
Moving the mouse reads out the pixel under it in every image.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

MODES = ("side", "split", "diff")
MODE_LABELS = {"side": "Side by side", "split": "Split (wipe)", "diff": "Difference"}
pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)


def abs_diff_heat(a: np.ndarray, b: np.ndarray, gain: float = 4.0) -> np.ndarray:
    """|a - b| averaged over channels, amplified and mapped to a heat colour (black→red→yellow)."""
    d = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=2) * gain / 255.0
    d = np.clip(d, 0.0, 1.0)
    return _heat(d)


def _heat(d: np.ndarray) -> np.ndarray:
    r = np.clip(d * 2.0, 0, 1)
    g = np.clip(d * 2.0 - 1.0, 0, 1)
    b = np.clip(d * 4.0 - 3.0, 0, 1)
    return (np.stack([r, g, b], axis=2) * 255).astype(np.uint8)


class Viewer(QWidget):
    """Shows frame `index` of the loaded images in the current mode; emits nothing it does not own."""

    pixelRead = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = "side"
        self.show_baseline = False
        self.lpips_maps: dict[int, np.ndarray] = {}
        self.originals: list[np.ndarray] = []
        self.recon: dict[int, np.ndarray] = {}
        self.baseline: dict[int, np.ndarray] = {}
        self.index = 0
        self.split = 0.5
        self.gain = 4.0
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground("#202020")
        self.readout = QLabel("move the mouse over an image to read pixels")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.glw, 1)
        lay.addWidget(self.readout)
        self.boxes: list[pg.ViewBox] = []
        self.items: list[pg.ImageItem] = []
        self.titles: list[pg.LabelItem] = []
        self.view: tuple[float, float, float] | None = None  # None: fit; else (px per image px, cx, cy)
        for k in range(3):
            title = pg.LabelItem("", color="#dddddd")
            vb = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
            item = pg.ImageItem()
            vb.addItem(item)
            vb.sigRangeChangedManually.connect(lambda *_, k=k: self._user_moved(k))
            vb.sigResized.connect(self._apply_view)
            self.boxes.append(vb)
            self.items.append(item)
            self.titles.append(title)
        self.divider = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("#ffcc00", width=2))
        self.divider.sigPositionChanged.connect(self._divider_moved)
        self.boxes[0].addItem(self.divider, ignoreBounds=True)
        self.glw.scene().sigMouseMoved.connect(self._mouse_moved)
        self._layout_panes()

    # ------------------------------------------------------------------ data
    def set_originals(self, frames: list[np.ndarray]) -> None:
        self.originals = list(frames)
        self.refresh(fit=True)

    def clear_results(self) -> None:
        self.recon.clear()
        self.baseline.clear()
        self.lpips_maps.clear()
        self.refresh()

    def set_recon(self, index: int, image: np.ndarray) -> None:
        self.recon[index] = image
        if index == self.index:
            self.refresh()

    def set_lpips_map(self, index: int, gray: np.ndarray) -> None:
        """A spatial LPIPS map (uint8, 255 = distance 1.0) shown in difference mode instead of |a−b|."""
        self.lpips_maps[index] = _heat(gray.astype(np.float32) / 255.0)

    def set_baseline(self, index: int, image: np.ndarray) -> None:
        self.baseline[index] = image
        if index == self.index and self.show_baseline:
            self.refresh()

    def count(self) -> int:
        return max(len(self.originals), max(self.recon, default=-1) + 1)

    # ------------------------------------------------------------------ view state
    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(mode)
        self.mode = mode
        self._layout_panes()
        self.refresh()

    def set_show_baseline(self, on: bool) -> None:
        self.show_baseline = on
        self._layout_panes()
        self.refresh()

    def seek(self, index: int) -> None:
        self.index = max(0, min(int(index), max(0, self.count() - 1)))
        self.refresh()

    def _layout_panes(self) -> None:
        self.glw.clear()
        n = self._n_panes()
        for i in range(n):
            self.glw.addItem(self.titles[i], row=0, col=i)
            self.glw.addItem(self.boxes[i], row=1, col=i)
        self.divider.setVisible(self.mode == "split")
        self._apply_view()

    def _n_panes(self) -> int:
        return (1 if self.mode == "split" else 2) + (1 if self.show_baseline else 0)

    # ------------------------------------------------------------------ drawing
    def _images(self) -> list[tuple[str, np.ndarray | None]]:
        i = self.index
        orig = self.originals[i] if i < len(self.originals) else None
        rec = self.recon.get(i)
        base = self.baseline.get(i)
        if self.mode == "side":
            panes = [("original", orig), ("promptlab reconstruction", rec)]
        elif self.mode == "split":
            panes = [("original | reconstruction (drag the yellow line)", self._wipe(orig, rec))]
        else:
            if i in self.lpips_maps:
                panes = [("original", orig), ("LPIPS spatial map (brighter = worse)", self.lpips_maps[i])]
            else:
                panes = [("original", orig), (f"|original − reconstruction| ×{self.gain:g}", self._diff(orig, rec))]
        if self.show_baseline:
            if self.mode == "diff":
                panes.append((f"|original − H.265| ×{self.gain:g}", self._diff(orig, base)))
            else:
                panes.append(("H.265 at the same bitrate", base))
        return panes

    def _wipe(self, a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
        if a is None or b is None or a.shape != b.shape:
            return a if b is None else b
        x = int(round(self.split * a.shape[1]))
        out = a.copy()
        out[:, x:] = b[:, x:]
        return out

    def _diff(self, a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
        if a is None or b is None or a.shape != b.shape:
            return None
        return abs_diff_heat(a, b, self.gain)

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
        w = self._width()
        if w and self.mode == "split":
            self.divider.blockSignals(True)
            self.divider.setValue(self.split * w)
            self.divider.blockSignals(False)

    def _width(self) -> int:
        if self.originals:
            return self.originals[0].shape[1]
        return next(iter(self.recon.values())).shape[1] if self.recon else 0

    def _divider_moved(self) -> None:
        w = self._width()
        if w:
            self.split = float(np.clip(self.divider.value() / w, 0.0, 1.0))
            self.refresh()

    def set_split(self, fraction: float) -> None:
        self.split = float(np.clip(fraction, 0.0, 1.0))
        self.refresh()

    def fit(self) -> None:
        """Show whole images again (fit lasts until the user zooms or pans)."""
        self.view = None
        self._apply_view()

    def zoom(self, factor: float) -> None:
        """Zoom all panes about their centre (factor < 1 zooms in)."""
        self.boxes[0].scaleBy((factor, factor))
        self._user_moved(0)

    def image_scale(self) -> float:
        """Screen pixels per image pixel in the first pane (what must not drift)."""
        it = self.items[0]
        r = it.mapRectToScene(it.boundingRect())
        return r.width() / max(1.0, it.boundingRect().width())

    def _user_moved(self, k: int) -> None:
        """A zoom or pan in pane k: remember it as scale and centre, show it in every pane."""
        vb = self.boxes[k]
        r = vb.viewRect()
        if r.width() <= 0 or vb.width() <= 0:
            return
        self.view = (vb.width() / r.width(), r.center().x(), r.center().y())
        self._apply_view(skip=k)

    def _apply_view(self, *_: object, skip: int = -1) -> None:
        for k, vb in enumerate(self.boxes):
            if k == skip:
                continue
            if self.view is None:
                vb.enableAutoRange()
                continue
            scale, cx, cy = self.view
            w, h = vb.width() / scale, vb.height() / scale
            if w > 0 and h > 0:
                vb.setRange(QRectF(cx - w / 2, cy - h / 2, w, h), padding=0)

    # ------------------------------------------------------------------ pixel readout
    def _mouse_moved(self, pos) -> None:
        for k in range(self._n_panes()):
            vb = self.boxes[k]
            if vb.sceneBoundingRect().contains(pos):
                p = vb.mapSceneToView(pos)
                self.pixelRead.emit(self.read_pixel(int(p.x()), int(p.y())))
                self.readout.setText(self.read_pixel(int(p.x()), int(p.y())))
                return

    def read_pixel(self, x: int, y: int) -> str:
        """RGB values at (x, y) in the original, reconstruction and baseline of the current frame."""
        i = self.index
        parts = [f"x={x} y={y}"]
        for name, img in (("original", self.originals[i] if i < len(self.originals) else None),
                          ("recon", self.recon.get(i)), ("H.265", self.baseline.get(i))):
            if img is not None and 0 <= y < img.shape[0] and 0 <= x < img.shape[1]:
                r, g, b = (int(v) for v in img[y, x, :3])
                parts.append(f"{name} ({r}, {g}, {b})")
        return "   ".join(parts)
