"""A slider over a list of stops with its value shown: rank, target rate, interval, bits, cache policy.

Knobs whose useful values span decades (rank 1…1024, 1…100000 kbps) are dragged over stops
spaced for the eye (every value where steps matter, then coarser); a value set from elsewhere
(a preset, a stream's header, a solved rank) that is not a stop becomes one, so the control
never changes a setting by showing it. Arrow keys move one stop, Page Up/Down a tenth of the
range (QSlider's own keyboard handling, kept from the window's frame-stepping shortcuts while
the slider has focus). `userMoved` tells a user's move from a value set by the program. `valueChanged` fires while dragging, so the window
can preview before the mouse is released.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget

STEP_KEYS = (Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_PageUp,
             Qt.Key.Key_PageDown, Qt.Key.Key_Home, Qt.Key.Key_End)


def decade_stops(lo: float, hi: float, mantissas: Sequence[float] = (1, 1.5, 2, 3, 4, 5, 6, 8)) -> list[float]:
    """lo..hi as mantissa × 10^k stops (evenly spaced to the eye on a log scale), both ends included."""
    out = {float(lo), float(hi)}
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        out |= {m * 10.0 ** k for m in mantissas if lo <= m * 10.0 ** k <= hi}
    return sorted(out)


def int_stops(lo: int, dense_to: int, hi: int) -> list[int]:
    """Every integer up to `dense_to`, then decade stops to `hi`."""
    return sorted({*range(lo, dense_to + 1), *(int(v) for v in decade_stops(dense_to, hi) if v == int(v))})


class _Slider(QSlider):
    """A slider that keeps its keys while focused: the window's Left/Right/Home/End shortcuts
    (frame stepping) would otherwise take them."""

    def event(self, ev: QEvent) -> bool:
        if ev.type() == QEvent.Type.ShortcutOverride and ev.key() in STEP_KEYS:
            ev.accept()
            return True
        return super().event(ev)


class StopSlider(QWidget):
    """`value()` / `setValue(v)` like a spin box; `valueChanged(v)` on every move; text stops for choices."""

    valueChanged = Signal(object)
    userMoved = Signal()            # the user moved it (drag, keys, wheel, a click on the track): not setValue

    def __init__(self, stops: Sequence[float | int | str], fmt: Callable[[object], str] = str, tip: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._stops = list(stops)
        self._fmt = fmt
        self.slider = _Slider(Qt.Orientation.Horizontal)
        self.setToolTip(tip)
        self.slider.setToolTip(tip)
        self.slider.setSingleStep(1)
        self.slider.setTracking(True)
        self.label = QLabel()
        self.label.setMinimumWidth(72)
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.label)
        self.setFocusProxy(self.slider)
        self._update_range()
        self.slider.valueChanged.connect(self._moved)
        self.slider.actionTriggered.connect(lambda _action: self.userMoved.emit())
        self._moved(self.slider.value())

    def _update_range(self) -> None:
        self.slider.blockSignals(True)
        self.slider.setRange(0, len(self._stops) - 1)
        self.slider.setPageStep(max(1, len(self._stops) // 10))
        self.slider.blockSignals(False)

    def _moved(self, pos: int) -> None:
        self.label.setText(self._fmt(self._stops[pos]))
        self.valueChanged.emit(self._stops[pos])

    def stops(self) -> list:
        return list(self._stops)

    def value(self):  # noqa: ANN201 - a number or a choice's text
        return self._stops[self.slider.value()]

    def setValue(self, value) -> None:  # noqa: N802, ANN001 - the spin box API the window and tests use
        """Show `value`, adding it as a stop if it is not one (a choice must be one of the stops)."""
        if value not in self._stops:
            if isinstance(value, str):
                raise ValueError(f"{value!r} is not one of {self._stops}")
            self._stops.insert(bisect.bisect(self._stops, value), value)
            self._update_range()
        pos = self._stops.index(value)
        if pos == self.slider.value():
            self.label.setText(self._fmt(value))
        else:
            self.slider.setValue(pos)

    # the combo box API, for the cache policy's three stops
    def currentText(self) -> str:  # noqa: N802
        return str(self.value())

    def setCurrentText(self, text: str) -> None:  # noqa: N802
        self.setValue(text)

    def step(self, n: int) -> None:
        """Move `n` stops as the arrow keys do (clamped at the ends)."""
        self.slider.setValue(max(0, min(len(self._stops) - 1, self.slider.value() + n)))
