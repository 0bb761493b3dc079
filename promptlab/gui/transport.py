"""Frame slider, play/pause (loop, speed 0.25×–2×) and ±1 frame stepping: the one place that owns the current frame."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QWidget,
)

SPEEDS = (0.25, 0.5, 1.0, 1.5, 2.0)  # playback rate as a multiple of the clip's fps


class Transport(QWidget):
    """Emits `indexChanged` whenever the current frame changes, by any means."""

    indexChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.offset = 0                 # absolute number of frame 0 (the --frames start)
        self.fps = 30.0
        self.prev_btn = QPushButton("◀ −1")
        self.prev_btn.setToolTip("previous frame (Left)")
        self.play_btn = QPushButton("Play")
        self.play_btn.setToolTip("play / pause (Space)")
        self.next_btn = QPushButton("+1 ▶")
        self.next_btn.setToolTip("next frame (Right)")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setMinimumWidth(120)  # a narrow window squeezes the buttons' gaps, not the slider
        self.loop = QCheckBox("Loop")
        self.loop.setToolTip("play from the first frame again at the end")
        self.speed_box = QComboBox()
        self.speed_box.addItems([f"{v:g}×" for v in SPEEDS])
        self.speed_box.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_box.setToolTip("playback speed, a multiple of the clip's frame rate")
        self.speed_box.currentIndexChanged.connect(lambda _: self._restart_timer())
        self.label = QLabel("frame 0 / 0")
        self.label.setMinimumWidth(150)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.prev_btn, self.play_btn, self.next_btn, self.loop, self.speed_box):
            lay.addWidget(w)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.label)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._tick)
        self.prev_btn.clicked.connect(lambda: self.step(-1))
        self.next_btn.clicked.connect(lambda: self.step(1))
        self.play_btn.clicked.connect(self.toggle_play)
        self.slider.valueChanged.connect(self._changed)

    def set_count(self, n: int, offset: int = 0, fps: float = 30.0) -> None:
        self.offset, self.fps = offset, fps
        self.slider.setRange(0, max(0, n - 1))
        self._label()

    def index(self) -> int:
        return self.slider.value()

    def seek(self, i: int) -> None:
        self.slider.setValue(max(0, min(int(i), self.slider.maximum())))

    def step(self, delta: int) -> None:
        self.seek(self.index() + delta)

    def playing(self) -> bool:
        return self.timer.isActive()

    def toggle_play(self) -> None:
        if self.playing():
            self.timer.stop()
            self.play_btn.setText("Play")
        else:
            if self.index() >= self.slider.maximum():
                self.seek(0)
            self.timer.start(self.interval_ms())
            self.play_btn.setText("Pause")

    def speed(self) -> float:
        return SPEEDS[self.speed_box.currentIndex()]

    def set_speed(self, speed: float) -> None:
        self.speed_box.setCurrentIndex(SPEEDS.index(speed))

    def interval_ms(self) -> int:
        """Milliseconds between frames at the chosen speed."""
        return max(5, round(1000 / (max(1.0, self.fps) * self.speed())))

    def _restart_timer(self) -> None:
        if self.playing():
            self.timer.start(self.interval_ms())

    def _tick(self) -> None:
        if self.index() < self.slider.maximum():
            self.step(1)
        elif self.loop.isChecked():
            self.seek(0)
        else:
            self.toggle_play()

    def _changed(self, i: int) -> None:
        self._label()
        self.indexChanged.emit(i)

    def _label(self) -> None:
        i, n = self.index(), self.slider.maximum() + 1
        self.label.setText(f"frame {i} / {n - 1}  (source frame {self.offset + i})")
