"""The lab window: controls on the left, viewer above the live plots, one job at a time.

It owns the flow: open a source, run (or reuse a cached result), render the run service's
records (one handler per record type; a cached result is its stored records replayed through
the same handlers), mark results stale when a setting changes, show engine errors in the window.
What it remembers lives in a Qt-free LabState (gui/state.py).
Every failure a user can cause (export with nothing to export, a bad preset, an impossible
target bitrate) ends as a message in the window, never as an exception out of a Qt slot.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from promptlab.engine.records import Started
from promptlab.errors import PromptlabError
from promptlab.gui.controls import Controls
from promptlab.gui.elide import ElidedLabel
from promptlab.gui.jobs import DEFAULT_PIPELINE, PREVIEW_PIPELINE, Job
from promptlab.gui.opening import OpeningMixin
from promptlab.gui.plots import PlotPanel
from promptlab.gui.rdview import RdContext
from promptlab.gui.report import (
    EXPORT_FILES,
    FITTED,
    LOADED,
    PREVIEWED,
    REUSED,
    comparison,
    export_all,
    summary_text,
)
from promptlab.gui.session import Session, save_session
from promptlab.gui.state import LabState
from promptlab.gui.transport import Transport
from promptlab.gui.tuning import Tuner
from promptlab.gui.viewer import MODE_LABELS, MODES, Viewer
from promptlab.gui.worker import JobRunner
from promptlab.runs.lab import RunSpec, cache_label, replay, reusable
from promptlab.runs.records import FrameResult, KeyframeFitted, Record, Scoring, Summary
from promptlab.runs.results import Result, ResultsCache
from promptlab.settings import Settings

PLOTS_MIN_PX = 300     # three plots a person can read, even on a 720-pixel screen
CONTROLS_MAX_PX = 480  # the settings column: wide enough for every label, narrow enough for a laptop


class MainWindow(OpeningMixin, QMainWindow):
    """`jobDone(outcome)` fires when a run ends: "finished", "cached", "cancelled" or "error"."""

    exportProgress = Signal(str)  # emitted from the export thread; shown in the status line

    jobDone = Signal(str)

    def __init__(self, session: Session | None = None, cache: ResultsCache | None = None) -> None:
        super().__init__()
        self.session = session or Session()
        self.cache = cache or ResultsCache()
        self.pipeline = DEFAULT_PIPELINE
        self.state = LabState(settings=self.session.settings)
        self._load_q: queue.Queue = queue.Queue()
        self._load_token = 0
        self._loaded_for: tuple[int, str] | None = None
        self.setWindowTitle("promptlab lab")
        self.setAcceptDrops(True)
        self.runner = JobRunner(self)
        self.tuner = Tuner(self, self)
        self._held: list[Record] | None = None  # a background fit's records, shown when it finishes
        self._fitted_for: tuple | None = None     # the clip, frames, size, crop and model of state.fitted_stream
        self.controls = Controls(self.session.settings)
        self.viewer = Viewer()
        self.transport = Transport()
        self.plots = PlotPanel()
        self._show = {Scoring: self._show_scoring, Started: self._show_started, KeyframeFitted: self._show_keyframe,
                      FrameResult: self._show_frame, Summary: self._show_summary}
        self.banner = QLabel("")
        self.banner.setWordWrap(True)
        self.banner.setVisible(False)
        self.source_label = ElidedLabel("no source")
        self._build()
        self._wire()
        self.controls.baseline.setChecked(self.session.baseline)
        self.controls.frames.setText(self.session.frames)
        self.set_mode(self.session.view_mode if self.session.view_mode in MODES else "side")
        self._load_timer = QTimer(self)
        self._load_timer.setInterval(50)
        self._load_timer.timeout.connect(self._poll_loader)
        self.resize(1400, 900)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        open_btn = QPushButton("Open video… (Ctrl+O)")
        open_btn.clicked.connect(self.open_dialog)
        folder_btn = QPushButton("Open folder…")
        folder_btn.clicked.connect(self.open_folder_dialog)
        top = QHBoxLayout()
        top.addWidget(open_btn)
        top.addWidget(folder_btn)
        top.addWidget(self.source_label, 1)   # elided in the middle: a long path never widens the window
        modes = QHBoxLayout()
        modes.addWidget(QLabel("View:"))
        self.mode_group = QButtonGroup(self)
        for k, mode in enumerate(MODES):
            b = QPushButton(f"{MODE_LABELS[mode]} ({k + 1})")
            b.setCheckable(True)
            self.mode_group.addButton(b, k)
            modes.addWidget(b)
        modes.addStretch(1)
        self.mode_group.idClicked.connect(lambda k: self.set_mode(MODES[k]))
        center = QWidget()
        v = QVBoxLayout(center)
        v.addLayout(top)
        v.addLayout(modes)
        v.addWidget(self.banner)
        split = QSplitter(Qt.Orientation.Vertical)
        viewer_box = QWidget()
        vb = QVBoxLayout(viewer_box)
        vb.setContentsMargins(0, 0, 0, 0)
        vb.addWidget(self.viewer, 1)
        vb.addWidget(self.transport)
        split.addWidget(viewer_box)
        split.addWidget(self.plots)
        self.plots.setMinimumHeight(PLOTS_MIN_PX)
        split.setSizes([400, 500])
        v.addWidget(split, 1)
        # the controls scroll vertically inside a fixed-width column, so a short screen keeps every knob
        scroll = QScrollArea()
        scroll.setWidget(self.controls)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setMinimumWidth(self.controls.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        scroll.setMaximumWidth(CONTROLS_MAX_PX)
        self.controls_scroll = scroll
        outer = QSplitter(Qt.Orientation.Horizontal)
        outer.addWidget(scroll)
        outer.addWidget(center)
        outer.setStretchFactor(1, 1)
        outer.setSizes([CONTROLS_MAX_PX, 1000])
        self.setCentralWidget(outer)

    def _wire(self) -> None:
        self.transport.indexChanged.connect(self._seeked)
        self.plots.frameClicked.connect(self.seek)
        self.viewer.rd.provider = self._rd_context
        self.viewer.rd.runClicked.connect(self.load_run)
        self.controls.changed.connect(self._settings_changed)
        self.controls.tuned.connect(self.tuner.moved)
        self.controls.runRequested.connect(self.run)
        self.controls.cancelRequested.connect(self.cancel)
        self.controls.error.connect(self.show_error)
        self.controls.baseline.toggled.connect(self.viewer.set_show_baseline)
        self.controls.baseline.toggled.connect(self.plots.set_baseline_visible)
        self.runner.record.connect(self.show_record)
        self.controls.cacheChanged.connect(self.runner.set_cache)
        self.exportProgress.connect(self.controls.status.setText)
        self.runner.progress.connect(self._on_progress)
        self.runner.failed.connect(self.show_error)
        self.runner.finished.connect(self._on_finished)
        keys = {
            "Left": lambda: self.transport.step(-1), "Right": lambda: self.transport.step(1),
            "Space": self.transport.toggle_play, "Home": lambda: self.seek(0),
            "End": lambda: self.seek(self.viewer.count() - 1), "Ctrl+O": self.open_dialog,
            "Ctrl+Shift+O": self.open_folder_dialog, "Ctrl+R": self.run, "Escape": self.cancel,
            "B": lambda: self.controls.baseline.toggle(),
            "+": lambda: self.viewer.zoom_step(1), "-": lambda: self.viewer.zoom_step(-1),
            "0": self.viewer.fit, "Ctrl+E": self.export_dialog, "Ctrl+Shift+N": self.open_network_view,
            **{str(k + 1): (lambda m=m: self.set_mode(m)) for k, m in enumerate(MODES)},
        }
        for seq, fn in keys.items():
            QShortcut(QKeySequence(seq), self, activated=fn)

    # ------------------------------------------------------------------ running
    def current_key(self) -> str | None:
        self.state.settings = self.controls.settings()
        return self.state.current_key()

    def run(self, hold: bool = False) -> bool:
        """Reuse a finished result for these settings if one exists; otherwise start one job (True).

        `hold`: a background fit behind a preview: its records are held back and replace what is
        shown only when it finishes."""
        st = self.state
        if self.runner.busy():
            if st.abandoned:
                self.controls.status.setText("still stopping the previous job; run again in a moment")
            return False
        if not st.source and not st.stream:
            self.show_error("open a video, an image folder or a .plab stream first")
            return False
        if self.controls.problem:
            self.show_error(f"cannot run these settings: {self.controls.problem}")
            return False
        s = self.controls.settings()
        want_base = self.controls.baseline.isChecked()
        key = self.current_key()
        note = ""
        if key and self.cache.has(key, baseline=want_base):
            res = self.cache.load(key)
            if res is not None and reusable(res, s):
                self.show_result(res)
                self.controls.progress.setValue(1000)
                self.controls.status.setText(summary_text(st.summary, st.baseline, REUSED))
                self.jobDone.emit("cached")
                return False
            timed = (res.summary.get("extra") or {}).get("cache") if res is not None else None
            if timed and timed != cache_label(s.cache, s.cache_threshold):
                note = (f"the stored result was timed with cache {timed}: "
                        f"decoding its stream again with cache {cache_label(s.cache, s.cache_threshold)}")
        spec = RunSpec(settings=s, source=st.source, frames=st.run_frames(), stream=st.stream, key=key,
                       baseline="h265" if want_base else None, maps=True, cache_root=str(self.cache.root))
        if hold:
            self._held = []
        else:
            self._reset_results()
            self.plots.set_cache_label(cache_label(s.cache, s.cache_threshold))
            st.last_error = ""
            self.banner.setVisible(False)
        st.running_key = key
        self.controls.set_running(True)
        self.runner.start(Job(spec, pipeline=self.pipeline))
        if note:
            self.controls.status.setText(note)
        return True

    # ------------------------------------------------------------------ sliders: preview, then refine
    def _fitted_context(self) -> tuple:
        s = self.controls.settings()
        return self.state.source, self.state.run_frames(), s.size, s.crop, s.model

    def can_preview(self) -> bool:
        """A fitted stream of this clip is shown (or was opened): sliders can preview from it."""
        st = self.state
        return st.fitted_stream is not None and (st.stream is not None or self._fitted_for == self._fitted_context())

    def job_busy(self) -> bool:
        return self.runner.busy()

    def cancel_job(self) -> None:
        self.runner.cancel()

    def start_preview(self) -> bool:
        """Decode the fitted stream transcoded to the sliders' settings (runs/preview.py): no fit."""
        from promptlab.runs.preview import PreviewSpec

        st = self.state
        if st.fitted_stream is None or self.runner.busy():
            return False
        s = self.controls.settings()
        kbps = float(self.controls.target.value()) if self.controls.use_target.isChecked() else None
        spec = PreviewSpec(st.fitted_stream, s, kbps, st.source, st.run_frames())
        self._reset_results()
        st.previewing, st.running_key, st.last_error = True, None, ""
        self.banner.setStyleSheet("background:#1d4f7a;color:white;padding:4px")
        self.banner.setText("PREVIEW: the fitted stream transcoded to these settings and decoded, no fit; "
                            "a fit at these settings follows when the sliders rest")
        self.banner.setVisible(True)
        self.controls.set_running(True)
        self._update_marks()
        return self.runner.start(Job(RunSpec(s, source=st.source, frames=st.run_frames()),
                                     pipeline=PREVIEW_PIPELINE, extra={"preview": spec}))

    def _warm(self) -> tuple[str, str, str, int]:
        """The model a preview will load, for the spare job process to load first."""
        s = self.controls.settings()
        return s.model, s.device, s.dtype, s.threads

    def start_refine(self) -> bool:
        return self.run(hold=True)

    def _remember_fitted(self, key: str | None) -> None:
        res = self.cache.load(key) if key else None
        if res is not None and res.stream.is_file():
            self.state.fitted_stream = str(res.stream)
            self._fitted_for = self._fitted_context()

    def cancel(self) -> None:
        if self.runner.busy():
            self.controls.status.setText("cancelling…")
            self.runner.cancel()

    def abandon_job(self) -> None:
        """The results view was reset under a running job (another source was opened): stop the
        job and drop whatever it still sends, so no old reconstruction meets a new original."""
        self.state.abandoned = True
        self.runner.cancel()
        self.controls.status.setText("stopping the running job: another source was opened")

    def _on_progress(self, frac: float, text: str, eta: str) -> None:
        if self.state.abandoned:
            return
        self.controls.progress.setValue(int(frac * 1000))
        self.controls.status.setText(f"{text}  {eta}" if eta else text)

    def show_record(self, rec: Record) -> None:
        """Remember a record of the run (LabState) and render it by its type; others only advance the run."""
        if self.state.abandoned:
            return
        if self._held is not None:
            self._held.append(rec)
            return
        self.state.apply(rec)
        show = self._show.get(type(rec))
        if show is not None:
            show(rec)

    def _show_scoring(self, rec: Scoring) -> None:
        self.plots.set_quality_metric(rec.lpips_available, rec.message, rec.measured)

    def _show_started(self, rec: Started) -> None:
        self.plots.set_init(rec.init_bytes, rec.header_bytes)

    def _show_keyframe(self, rec: KeyframeFitted) -> None:
        self.plots.add_keyframe_bytes(rec.frames, rec.record_bytes)

    def _show_frame(self, rec: FrameResult) -> None:
        if rec.stage == "baseline":
            self.viewer.set_baseline(rec.index, rec.image)
            if rec.lpips_map is not None:
                self.viewer.set_lpips_map(rec.index, rec.lpips_map, baseline=True)
            self.plots.add_baseline(rec.row())
            return
        if rec.lpips_map is not None:
            self.viewer.set_lpips_map(rec.index, rec.lpips_map)
        self.viewer.set_recon(rec.index, rec.image)
        self.plots.add_frame(rec.row())

    def _show_summary(self, rec: Summary) -> None:
        if not rec.ours:
            return
        if self.state.cache_label():
            self.plots.set_cache_label(self.state.cache_label())
        if self.state.init_bytes is not None:
            self.plots.set_init(self.state.init_bytes, self.state.header_bytes)

    def _on_finished(self, outcome: str) -> None:
        self.controls.set_running(False)
        st = self.state
        held, self._held = self._held, None
        self.tuner.job_ended(outcome)
        if st.abandoned:
            st.abandoned = False
            self.controls.progress.setValue(0)
            self.controls.status.setText("the previous job was stopped: another source was opened")
            self.jobDone.emit("cancelled")
            return
        if held is not None and outcome == "finished":  # the background fit replaces the preview
            self._reset_results()
            s = self.controls.settings()
            self.plots.set_cache_label(cache_label(s.cache, s.cache_threshold))
            self.banner.setVisible(False)
            for rec in held:
                self.show_record(rec)
            self.viewer.refresh()
        self.plots.redraw()
        if outcome == "finished" and st.previewing:
            self.controls.progress.setValue(1000)
            self.controls.status.setText(summary_text(st.summary, st.baseline, PREVIEWED))
        elif outcome == "finished":
            st.shown_key = st.running_key
            self._remember_fitted(st.running_key)
            if self.viewer.mode == "rd":
                self.viewer.rd.refresh()  # the new run is a point of it
            self.controls.progress.setValue(1000)
            self.controls.status.setText(summary_text(st.summary, st.baseline, FITTED))
        elif outcome == "cancelled":
            self.controls.progress.setValue(0)
            self.controls.status.setText(self._cancelled_text(background=held is not None))
        else:
            self.controls.progress.setValue(0)
        self._update_marks()
        self._keep_warm()
        self.jobDone.emit(outcome)

    def _keep_warm(self) -> None:
        """While the sliders can preview, a warm job process always waits (worker.keep_spare): a
        slider move's preview never pays for a process start or a model load, not even the second
        move of a drag, whose first preview (or the fit after a rest) took the last spare."""
        self.runner.keep_spare(self._warm() if self.can_preview() else None)

    def _cancelled_text(self, background: bool) -> str:
        """What a cancel left on screen: the preview (its fit stopped), a run's first frames, or nothing."""
        st = self.state
        n = len(st.rows)
        if background and st.previewing:
            return summary_text(st.summary, st.baseline, PREVIEWED) + " — the fit at these settings was cancelled"
        if st.previewing:
            return f"preview cancelled: {n} frames of the transcode shown, nothing saved"
        if n:
            st.partial = True
            return f"cancelled: the {n} frames shown are partial and not saved; Run (Ctrl+R) starts again"
        return "cancelled before any frame: nothing shown, nothing saved; Run (Ctrl+R) starts again"

    def show_result(self, res: Result) -> None:
        """Display a stored result exactly as a live run would have: its records, replayed."""
        self._reset_results()
        for rec in replay(res):
            self.show_record(rec)
        self.plots.redraw()
        self.viewer.refresh()
        self.state.shown_key = res.key
        self._remember_fitted(res.key)
        if not self.runner.busy():
            self._keep_warm()
        self.banner.setVisible(False)
        self._settings_changed()

    def load_run(self, key: str) -> None:
        """Show a stored run (the RD view's click) with the settings it was made with: those its summary
        records (every encode setting, so the result is not STALE), else those its stream's header holds."""
        res = self.cache.load(key)
        if res is None:
            self.show_error(f"the run {key} is no longer in the results cache")
            return
        made = (res.summary.get("extra") or {}).get("encode")
        if isinstance(made, dict):
            self.controls.set_settings(Settings.from_dict(made, base=self.controls.settings()))
        elif res.stream.is_file():
            from promptlab.codec.container import read_header

            self.controls.set_settings(read_header(res.stream).to_settings(self.controls.settings()))
        self.show_result(res)
        self.controls.status.setText(summary_text(self.state.summary, self.state.baseline, f"{LOADED} {key}"))

    def _rd_context(self) -> RdContext | None:
        """The RD view's clip: this source, frame range and settings' size, crop and fps."""
        from promptlab.runs.rd import clip_id

        st = self.state
        if not st.source or not self.viewer.originals:
            return None
        s = self.controls.settings()
        return RdContext(self.cache, clip_id(st.source, s, st.run_frames()), self.viewer.originals, s.fps)

    # ------------------------------------------------------------------ view
    def seek(self, index: int) -> None:
        self.transport.seek(index)
        self._seeked(self.transport.index())

    def _seeked(self, i: int) -> None:
        self.state.index = i
        self.viewer.seek(i)
        self.plots.set_cursor(i)

    def set_mode(self, mode: str) -> None:
        self.viewer.set_mode(mode)
        self.state.view_mode = mode
        self.mode_group.button(MODES.index(mode)).setChecked(True)

    def is_stale(self) -> bool:
        self.state.settings = self.controls.settings()
        return self.state.is_stale()

    def _settings_changed(self) -> None:
        self.state.settings = self.controls.settings()
        if (self.state.source or self.state.stream) and not self.runner.busy():
            self._reload_if_needed()
        if self.is_stale():
            self.banner.setStyleSheet("background:#664400;color:white;padding:4px")
            self.banner.setText("Results shown are STALE: settings changed since they were computed. Run (Ctrl+R) to update.")
            self.banner.setVisible(True)
        elif not self.state.last_error and not self.state.previewing:
            self.banner.setVisible(False)
        self._update_marks()

    def _update_marks(self) -> None:
        """PREVIEW / STALE on the viewer and on the plots: what they show is not a fit of these settings."""
        mark = self.state.mark()
        self.viewer.mark_label.set_mark(mark)
        self.plots.mark_label.set_mark(mark)

    def show_error(self, message: str) -> None:
        if self.state.abandoned and self.runner.busy():
            return  # the abandoned job's own failure is not news
        self.state.last_error = message
        self.banner.setStyleSheet("background:#802020;color:white;padding:4px")
        self.banner.setText(f"Error: {message}")
        self.banner.setVisible(True)
        self.controls.status.setText("error (see the message above the viewer)")

    def export_dialog(self) -> None:
        try:
            self._comparison()
        except PromptlabError as exc:
            self.show_error(f"cannot export: {exc}")
            return
        folder = QFileDialog.getExistingDirectory(
            self, "Export comparison clip, current frame, worst frames, metrics and report")
        if not folder:
            return
        existing = [n for n in EXPORT_FILES if (Path(folder) / n).exists()]
        force = False
        if existing:
            answer = QMessageBox.question(self, "Overwrite?", f"{folder} already holds {', '.join(existing)}. Overwrite?")
            if answer != QMessageBox.StandardButton.Yes:
                return
            force = True
        try:
            self.export(folder, force=force, background=True)
        except PromptlabError as exc:
            self.show_error(f"cannot export: {exc}")

    def _comparison(self):
        """The results shown, as an export Comparison (PromptlabError when there is nothing to export)."""
        v, st = self.viewer, self.state
        s = self.controls.settings()
        return comparison(v.originals, v.recon, st.rows, v.baseline, st.base_rows, st.summary, st.baseline,
                          self.transport.fps or s.fps, self.transport.offset, st.model_label or s.model, s.rank)

    def export(self, folder: str | Path, force: bool = False, background: bool = False) -> list[Path]:
        """The export CLI's outputs from this run, off the UI thread when `background` (progress shown)."""
        comp = self._comparison()
        index = self.viewer.index

        def progress(stage: str, done: int, total: int) -> None:
            self.exportProgress.emit(f"exporting: {stage} {done}/{total}")

        def work() -> list[Path]:
            try:
                files = export_all(folder, comp, index, force=force, progress=progress)
            except PromptlabError as exc:
                self.exportProgress.emit(f"export failed: {exc}")
                raise
            self.exportProgress.emit(f"exported {len(files)} files to {folder}")
            return files

        if not background:
            return work()

        def in_background() -> None:
            try:
                work()
            except PromptlabError:
                pass  # already shown through exportProgress
            except Exception as exc:  # noqa: BLE001 - the window must see every failure
                self.exportProgress.emit(f"export failed: internal error: {type(exc).__name__}: {exc}")

        threading.Thread(target=in_background, daemon=True, name="promptlab-export").start()
        return []

    def open_network_view(self) -> None:
        """The network view (gui/network_view.py): the open clip, at these settings, over a trace."""
        from promptlab.gui.network_view import NetworkView, ladder_for

        if not self.state.source:
            self.show_error("open a clip first: the network view streams the open clip")
            return
        try:
            spec = ladder_for(self.state.source, self.controls.settings(), self.controls.frames.text())
        except PromptlabError as exc:
            self.show_error(str(exc))
            return
        self.network_view = NetworkView(spec)
        self.network_view.show()

    def screenshot(self, path: str | Path) -> Path:
        from promptlab.io.atomic import atomic_path

        p = Path(path)
        with atomic_path(p) as tmp:
            if not self.grab().save(str(tmp), "PNG"):
                raise PromptlabError(f"could not write screenshot {p}")
        return p

    def closeEvent(self, ev) -> None:  # noqa: N802 - Qt API
        self.runner.close()
        try:
            self.session.settings = self.controls.settings()
            self.session.source = self.state.source or self.state.stream
            self.session.frames = self.controls.frames.text()
            self.session.view_mode = self.state.view_mode
            self.session.baseline = self.controls.baseline.isChecked()
            save_session(self.session)
        except (OSError, PromptlabError):
            pass
        super().closeEvent(ev)

    def frame_count(self) -> int:
        return self.viewer.count()

    def recon_array(self) -> np.ndarray | None:
        return np.stack([self.viewer.recon[i] for i in sorted(self.viewer.recon)]) if self.viewer.recon else None

