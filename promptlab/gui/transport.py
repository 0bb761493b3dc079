"""Frame slider, play/pause and ±1 frame stepping: the one place that owns the current frame."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QWidget


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
        self.label = QLabel("frame 0 / 0")
        self.label.setMinimumWidth(150)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.prev_btn, self.play_btn, self.next_btn):
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
            self.timer.start(max(10, int(1000 / max(1.0, self.fps))))
            self.play_btn.setText("Pause")

    def _tick(self) -> None:
        if self.index() >= self.slider.maximum():
            self.toggle_play()
        else:
            self.step(1)

    def _changed(self, i: int) -> None:
        self._label()
        self.indexChanged.emit(i)

    def _label(self) -> None:
        i, n = self.index(), self.slider.maximum() + 1
        self.label.setText(f"frame {i} / {n - 1}  (source frame {self.offset + i})")
