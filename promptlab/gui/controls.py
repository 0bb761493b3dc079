"""The method's knobs under their real names, bound to one Settings object.

Rank can be set directly or solved from a target bitrate (promptlab.codec.rate.solve_rank);
the estimate below always counts every byte, init latent included. Rank, target rate, keyframe
interval, quantiser bits and cache policy are sliders (gui/sliders.py): a drag of the first
four emits `tuned(knob)`, which the window turns into an instant preview and a background fit. Settings that cannot run (a
target bitrate below the smallest stream) disable Run and say why. A preset applies fully: what
it does not name returns to the default. Preset errors are reported through `error`, never raised.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from promptlab.errors import PromptlabError
from promptlab.gui.sliders import StopSlider, decade_stops, int_stops
from promptlab.settings import (
    CACHE_POLICIES,
    MAX_RANK,
    Settings,
    list_presets,
    load_preset,
    save_user_preset,
)

CACHE_NOTE = ("switches live while frames are generated: lossless reuses what a segment's frames share "
              "(equal to none up to float rounding); lossy also reuses deeper UNet features while the "
              "prompt moves less than the threshold")


MODEL_BOX_CHARS = 22


def _spin(lo: int, hi: int, step: int = 1, tip: str = "") -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setToolTip(tip)
    return s


class Controls(QWidget):
    """Emits `changed` on any edit; `settings()` is the Settings the widgets describe."""

    changed = Signal()
    tuned = Signal(str)                 # a slider moved by the user: "rank", "kbps", "interval" or "bits"
    cacheChanged = Signal(str, float)   # policy, threshold: applied live to a running decode
    runRequested = Signal()
    cancelRequested = Signal()
    error = Signal(str)                 # a preset that cannot be loaded or saved: shown by the window

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._base = settings
        self.n_frames = 1
        self.problem = ""               # why these settings cannot run ("" when they can)
        self._running = False
        self.manual_rank = settings.rank  # the user's own rank: back when the solver is switched off
        self.model = QComboBox()
        # the closed box shows the model's name and as much of its note as fits; the list shows all
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.setMinimumContentsLength(MODEL_BOX_CHARS)
        self._fill_models()
        self.model.currentIndexChanged.connect(self._model_tip)
        self._model_tip(self.model.currentIndex())
        self.model.view().setMinimumWidth(self.model.view().sizeHintForColumn(0) + 24)
        self.frames = QLineEdit()
        self.frames.setPlaceholderText("all frames (or A:B)")
        self.size = _spin(64, 1024, 64, "frame side in pixels (square, centre-cropped)")
        self.rank = StopSlider(int_stops(1, 16, MAX_RANK), tip="rank r of the prompt factors U (77×r) and V (r×d)")
        self.use_target = QCheckBox("solve rank for target bitrate")
        self.target = StopSlider(decade_stops(1.0, 100000.0), lambda v: f"{v:g} kbps",
                                 "target bitrate, every byte counted: the rank is solved for it")
        self.target.setValue(200.0)
        self.interval = StopSlider(int_stops(1, 30, 1000),
                                   tip="keyframe interval k: frames between keyframes (interpolation window)")
        self.bits = StopSlider(list(range(2, 9)), tip="quantisation bits per factor value")
        self.iters = _spin(0, 100000, 10, "Adam iterations per later keyframe (0: the prompt encoder's guess, unrefined)")
        self.first_iters = _spin(0, 100000, 10, "Adam iterations for keyframe 0 (0: the prompt encoder's guess, unrefined)")
        self.cache = StopSlider(CACHE_POLICIES, tip=CACHE_NOTE)
        self.cache_threshold = QDoubleSpinBox()
        self.cache_threshold.setRange(0.0, 1.0)
        self.cache_threshold.setSingleStep(0.01)
        self.cache_threshold.setToolTip(CACHE_NOTE)
        self.baseline = QCheckBox("H.265 at the same bitrate (third pane)")
        self.estimate = QLabel("")
        self.estimate.setWordWrap(True)
        self.presets = QComboBox()
        self.presets.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.presets.setMinimumContentsLength(8)
        self.presets.addItems(list_presets())
        self.load_btn = QPushButton("Load")
        self.save_btn = QPushButton("Save as…")
        self.run_btn = QPushButton("Run (Ctrl+R)")
        self.cancel_btn = QPushButton("Cancel (Esc)")
        self.cancel_btn.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("idle")
        self.status.setWordWrap(True)
        self._build()
        self.set_settings(settings)
        for w in (self.size, self.rank, self.interval, self.bits, self.iters, self.first_iters, self.target):
            w.valueChanged.connect(self._edited)
        for knob, w in (("rank", self.rank), ("kbps", self.target), ("interval", self.interval), ("bits", self.bits)):
            w.userMoved.connect(lambda knob=knob: self.tuned.emit(knob))  # a user's move, not setValue
        self.cache_threshold.valueChanged.connect(self._edited)
        self.cache_threshold.valueChanged.connect(self._cache_edited)
        self.cache.valueChanged.connect(self._cache_edited)
        self.use_target.toggled.connect(self._solver_toggled)
        self.use_target.toggled.connect(self._edited)
        self.model.currentIndexChanged.connect(self._edited)
        self.cache.valueChanged.connect(self._edited)
        self.frames.editingFinished.connect(self.changed.emit)
        self.baseline.toggled.connect(lambda _: self.changed.emit())
        self.load_btn.clicked.connect(lambda: self.apply_preset(self.presets.currentText()))
        self.save_btn.clicked.connect(self._save_preset_dialog)
        self.run_btn.clicked.connect(self.runRequested.emit)
        self.cancel_btn.clicked.connect(self.cancelRequested.emit)
        self.cache_threshold.setEnabled(self.cache.value() == "lossy")

    def _fill_models(self) -> None:
        try:
            from promptlab.models.registry import available_models

            models = available_models()
        except Exception as exc:  # noqa: BLE001 - the list is informative only
            models = [("tiny", True, f"built in (registry failed: {exc})")]
        for name, ok, reason in models:
            # the name alone, so the closed box shows it whole; why and which weights: its tooltip
            self.model.addItem(name if ok else f"{name} (unavailable)", name)
            idx = self.model.count() - 1
            self.model.setItemData(idx, f"{name}: {'available' if ok else 'unavailable'}: {reason}", 3)  # ToolTipRole
            if not ok:
                self.model.model().item(idx).setEnabled(False)

    def _model_tip(self, i: int) -> None:
        self.model.setToolTip(str(self.model.itemData(i, 3) or ""))

    def _build(self) -> None:
        form = QFormLayout()
        form.addRow("Model", self.model)
        form.addRow("Frames", self.frames)
        form.addRow("Size (px)", self.size)
        form.addRow("Rank", self.rank)
        form.addRow(self.use_target, self.target)
        form.addRow("Keyframe interval", self.interval)
        form.addRow("Quantisation bits", self.bits)
        form.addRow("Iterations (keyframe 0)", self.first_iters)
        form.addRow("Iterations (later keyframes)", self.iters)
        form.addRow("Cache policy", self.cache)
        form.addRow("Lossy cache threshold", self.cache_threshold)
        note = QLabel(f"<i>{CACHE_NOTE}</i>")
        note.setWordWrap(True)
        form.addRow(note)
        form.addRow(self.baseline)
        box = QGroupBox("Settings")
        box.setLayout(form)
        pre = QHBoxLayout()
        pre.addWidget(QLabel("Preset"))
        pre.addWidget(self.presets, 1)
        pre.addWidget(self.load_btn)
        pre.addWidget(self.save_btn)
        run = QHBoxLayout()
        run.addWidget(self.run_btn)
        run.addWidget(self.cancel_btn)
        lay = QVBoxLayout(self)
        lay.addWidget(box)
        lay.addLayout(pre)
        lay.addWidget(self.estimate)
        lay.addLayout(run)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch(1)

    # ------------------------------------------------------------------ settings <-> widgets
    def set_settings(self, s: Settings) -> None:
        self._base = s
        widgets = (self.size, self.rank, self.interval, self.bits, self.iters, self.first_iters,
                   self.model, self.cache, self.cache_threshold)
        for w in widgets:
            w.blockSignals(True)
        self.size.setValue(s.size)
        self.rank.setValue(s.rank)
        self.manual_rank = s.rank
        self.interval.setValue(s.interval)
        self.bits.setValue(s.bits)
        self.iters.setValue(s.iters)
        self.first_iters.setValue(s.first_iters)
        i = self.model.findData(s.model)
        if i < 0:  # a path or hub id (--model, a saved session): offered as it is, so it runs and is saved
            self.model.addItem(s.model, s.model)
            i = self.model.count() - 1
            self.model.setItemData(i, f"{s.model}: SD-Turbo weights given by path or hub id", 3)
        self.model.setCurrentIndex(i)
        self.cache.setValue(s.cache)
        self.cache_threshold.setValue(s.cache_threshold)
        for w in widgets:
            w.blockSignals(False)
        self._edited()

    def settings(self) -> Settings:
        return self._base.replace(
            model=self.model.currentData() or self._base.model, size=max(8, round(self.size.value() / 8) * 8),
            rank=self.rank.value(), interval=self.interval.value(), bits=self.bits.value(),
            iters=self.iters.value(), first_iters=self.first_iters.value(),
            cache=self.cache.value(), cache_threshold=self.cache_threshold.value())

    def _solver_toggled(self, on: bool) -> None:
        if on:
            self.manual_rank = self.rank.value()
        else:
            self.rank.blockSignals(True)
            self.rank.setValue(self.manual_rank)
            self.rank.blockSignals(False)

    def _cache_edited(self, *_: object) -> None:
        self.cache_threshold.setEnabled(self.cache.value() == "lossy")
        self.cacheChanged.emit(self.cache.value(), float(self.cache_threshold.value()))

    def set_n_frames(self, n: int) -> None:
        self.n_frames = max(1, n)
        self._edited()

    def _edited(self, *_: object) -> None:
        self.target.setEnabled(self.use_target.isChecked())
        self.rank.setEnabled(not self.use_target.isChecked())
        self.problem = ""
        try:
            from promptlab.codec import rate

            if self.use_target.isChecked():
                r = rate.solve_rank(self.target.value(), self.settings(), self.n_frames)
                self.rank.blockSignals(True)
                self.rank.setValue(r)
                self.rank.blockSignals(False)
            est = rate.estimate(self.settings(), self.n_frames)
            self.estimate.setText(
                f"at most <b>{est.kbps:.1f} kbps</b> for {self.n_frames} frames, every byte counted "
                f"({est.kbps_without_init:.1f} kbps without the {est.init_bytes} B init latent): a bound, "
                f"each of the {len(est.keyframe_bytes)} keyframes counted at the coder's worst case "
                f"({est.keyframe_bytes[0]} B); entropy coding makes the stream smaller")
        except PromptlabError as exc:
            self.problem = str(exc)
            self.estimate.setText(f"<span style='color:#ff6666'>{exc}</span>")
        except ImportError:
            self.estimate.setText("rate model unavailable")
        self.run_btn.setEnabled(not self._running and not self.problem)
        self.run_btn.setToolTip(self.problem)
        self.changed.emit()

    # ------------------------------------------------------------------ presets
    def apply_preset(self, name: str) -> bool:
        """Apply a preset fully: settings it does not name return to their defaults (a previous
        preset's `start` or `lr` must not linger); the clip's fps and the machine's device and threads
        stay, and so does the model unless the preset names one (its numbers are that model's).
        A preset that cannot be read is reported through `error`."""
        cur = self.settings()
        keep = {"model": cur.model, "fps": cur.fps, "device": cur.device, "threads": cur.threads}
        try:
            s = load_preset(name, Settings(**keep))
        except PromptlabError as exc:
            self.error.emit(f"preset {name!r} not loaded: {exc}")
            return False
        self.set_settings(s)
        return True

    def save_preset(self, name: str) -> str:
        try:
            save_user_preset(self.settings(), name, description="saved from promptlab gui")
        except OSError as exc:
            raise PromptlabError(f"could not save preset {name!r}: {exc.strerror or exc}") from None
        self.presets.clear()
        self.presets.addItems(list_presets())
        self.presets.setCurrentText(name)
        return name

    def _save_preset_dialog(self) -> None:
        name, ok = QInputDialog.getText(self, "Save preset", "Preset name:")
        if not ok:
            return
        try:
            self.save_preset(name.strip())
        except PromptlabError as exc:
            self.error.emit(str(exc))

    def set_running(self, running: bool) -> None:
        self._running = running
        self.run_btn.setEnabled(not running and not self.problem)
        self.cancel_btn.setEnabled(running)
