"""Opening sources for the lab window: dialogs, drag-and-drop, videos, image folders, .plab streams.

A mixin of MainWindow (it uses the window's controls, viewer, transport and plots). The
originals are read in a thread: PyAV and OpenCV release the GIL, and a timer hands them over.
"""

from __future__ import annotations

import queue
import threading

from PySide6.QtWidgets import QFileDialog

from promptlab.errors import PromptlabError


class OpeningMixin:
    """Everything between "the user named a file" and "its frames are in the viewer"."""

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a video or .plab stream", "",
                                              "Videos and streams (*.mp4 *.mkv *.mov *.avi *.webm *.plab);;All files (*)")
        if path:
            self.open(path, frames="")  # a frame range belongs to its clip: another starts on all its frames

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a folder of numbered images")
        if path:
            self.open(path, frames="")

    def dragEnterEvent(self, ev) -> None:  # noqa: N802 - Qt API
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:  # noqa: N802 - Qt API
        urls = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open(urls[0], frames="")

    def open(self, path: str, frames: str | None = None) -> bool:
        """Open a video, image folder or .plab; errors go to the banner, never up the stack."""
        try:
            if frames is not None:
                self.controls.frames.setText(frames)
            if str(path).endswith(".plab"):
                self._open_stream(path)
            else:
                self._open_source(path)
        except PromptlabError as exc:
            self.show_error(str(exc))
            return False
        self.state.last_error = ""
        self.banner.setVisible(False)
        return True

    def _open_source(self, path: str) -> None:
        from promptlab.io.video import count_frames, parse_frames, probe

        info = probe(path)
        frames = parse_frames(self.controls.frames.text() or None)
        n = count_frames(path, frames)
        self.state.source, self.state.stream, self.state.frames = str(path), None, frames
        self.state.fitted_stream = None
        self.tuner.stop()
        self.controls.set_settings(self.controls.settings().replace(fps=info.fps))
        self.controls.set_n_frames(n)
        self.source_label.setText(f"{path}  ({info.kind}, {info.width}×{info.height}, {info.fps:g} fps, {n} frames)")
        self.transport.set_count(n, (frames or (0, None))[0], info.fps)
        self.plots.set_fps(info.fps)
        self._reset_results()
        self._start_loader()

    def _open_stream(self, path: str) -> None:
        """A stream opened alone; a frame range seeks: the decode reads from the GOP holding its start."""
        from promptlab.codec.container import read_header
        from promptlab.io.video import parse_frames

        h = read_header(path)
        frames = parse_frames(self.controls.frames.text() or None)
        a, b = frames or (0, None)
        b = h.n_frames if b is None else min(b, h.n_frames)
        if a >= b:
            raise PromptlabError(f"frames {self.controls.frames.text()} are outside the stream's 0:{h.n_frames}")
        s = h.to_settings(self.controls.settings())
        self.state.source, self.state.stream = None, str(path)
        self.state.frames = frames  # as typed, like a video's: a change of the field reopens
        self.state.fitted_stream = str(path)  # a stream opened alone previews from itself
        self.tuner.stop()
        self.controls.set_settings(s)
        self.controls.set_n_frames(b - a)
        gops = f"GOPs of {h.gop}" if h.gop else "one GOP"
        self.source_label.setText(f"{path}  (.plab, {h.model}, {h.width}×{h.height}, {h.n_frames} frames, {gops}"
                                  f"{'' if frames is None else f'; showing {a}:{b}'})")
        self.transport.set_count(b - a, a, h.fps)
        self.plots.set_fps(h.fps)
        self._reset_results()
        self.viewer.set_originals([])

    def _reset_results(self) -> None:
        """Clear the results shown; a job still computing them is stopped and its records dropped."""
        if self.runner.busy():
            self.abandon_job()
        self.state.clear_results()
        self.viewer.clear_results()
        self.plots.clear()
        self._update_marks()

    def _reload_if_needed(self) -> None:
        """A new frame range, size or crop changes the originals: read them again."""
        from promptlab.io.video import parse_frames

        try:
            frames = parse_frames(self.controls.frames.text() or None)
        except PromptlabError as exc:
            self.show_error(str(exc))
            return
        s = self.controls.settings()
        if frames != self.state.frames:
            self.open(self.state.source or self.state.stream)
        elif self.state.source and (s.size, s.crop) != self._loaded_for:
            self._start_loader()

    def _start_loader(self) -> None:
        """Read the originals in a thread (PyAV and OpenCV release the GIL) and hand them over."""
        from promptlab.io.video import read_frames

        self._load_token += 1
        token, src, frames = self._load_token, self.state.source, self.state.frames
        s = self.controls.settings()
        self._loaded_for = (s.size, s.crop)

        def work() -> None:
            try:
                self._load_q.put((token, list(read_frames(src, frames=frames, size=s.size, crop=s.crop)), None))
            except Exception as exc:  # noqa: BLE001 - shown in the window
                self._load_q.put((token, None, str(exc)))

        threading.Thread(target=work, daemon=True).start()
        self._load_timer.start()

    def _poll_loader(self) -> None:
        try:
            token, frames, err = self._load_q.get_nowait()
        except queue.Empty:
            return
        if token != self._load_token:
            return
        self._load_timer.stop()
        if err:
            self.show_error(err)
        else:
            self.viewer.set_originals(frames)
            self.transport.set_count(len(frames), self.transport.offset, self.transport.fps)
            self.seek(self.transport.index())

