"""Start the lab: build the window from the saved session and the command line, optionally automate.

`--run --screenshot OUT.png --exit` runs encode, decode and metrics, saves a picture of the
window and quits: the path docs/img/gui.png is made by, and the way CI checks the window.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptlab.errors import PromptlabError
from promptlab.gui.session import Session, load_session
from promptlab.paths import sample_clip
from promptlab.settings import Settings, load_preset


@dataclass
class GuiOptions:
    """The command line, parsed (see promptlab/cli/gui.py)."""

    source: str | None = None
    frames: str | None = None
    preset: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)   # settings flags given, by Settings field
    kbps: float | None = None                               # target bitrate: the window solves the rank
    baseline: bool = False
    run: bool = False
    screenshot: str | None = None
    exit: bool = False
    view: str | None = None                                 # one of gui.views.MODES
    zoom: int | None = None                                 # one of gui.views.ZOOMS; 0 fits
    seek: int | None = None
    window: tuple[int, int] | None = None                   # the window's size (WxH px)


def default_source() -> str | None:
    """The sample clip shipped inside the package, or None when the install lacks it."""
    clip = sample_clip()
    return str(clip) if clip else None


def build_settings(base: Settings, o: GuiOptions) -> Settings:
    """The settings a start runs with: the saved ones, or a --preset's, then every flag given.

    A preset on the command line gives what the preset implies (defaults plus the preset),
    not the preset on top of whatever the last session left; only the machine-side choices
    (model, device, dtype, threads) carry over from the session, and a preset that names a model
    sets it (the preview's rate and quality are its model's: `--preset preview` must run tiny2).
    """
    if o.preset:
        keep = {k: getattr(base, k) for k in ("model", "device", "dtype", "threads")}
        base = load_preset(o.preset, Settings().replace(**keep))
    return base.replace(**o.changes) if o.changes else base


def start_session(session: Session, o: GuiOptions, source: str | None) -> Session:
    """Apply the command line to the saved session: flags win, a new source resets per-clip state.

    The frame range belongs to the clip it was chosen for; another clip starts on all its frames.
    """
    session.settings = build_settings(session.settings, o)
    session.baseline = o.baseline or session.baseline if not o.exit else o.baseline
    if source is not None and not _same_path(source, session.source):
        session.frames = ""
        session.source = source
    if o.frames is not None:
        session.frames = o.frames
    return session


def _same_path(a: str, b: str | None) -> bool:
    if b is None:
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b


def check_display() -> None:
    """On Linux, say plainly that there is no display (Qt would abort with a misleading plugin message)."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise PromptlabError("no display found (DISPLAY and WAYLAND_DISPLAY are unset): run headless with "
                             "--run --screenshot OUT.png --exit, or set QT_QPA_PLATFORM=offscreen, or use xvfb-run")
    if not os.environ.get("WAYLAND_DISPLAY"):
        import ctypes

        try:
            ctypes.CDLL("libxcb-cursor.so.0")  # Qt >= 6.5 needs it for X11 and aborts without it
        except OSError:
            raise PromptlabError("Qt's X11 (xcb) platform needs the libxcb-cursor0 library: install it "
                                 "(e.g. apt install libxcb-cursor0), or set QT_QPA_PLATFORM=offscreen") from None


def run_gui(o: GuiOptions) -> int:
    """Open the window; with o.exit, return 0 only if the automated run finished and was saved.

    Errors raised in Qt callbacks of an --exit run end the app and come back as one line;
    Ctrl+C closes the window (saving the session) and quits.
    """
    from promptlab.io.atomic import check_target

    if o.screenshot:
        check_target(o.screenshot, force=True)
    if o.exit and not os.environ.get("QT_QPA_PLATFORM") and not os.environ.get("DISPLAY") \
            and sys.platform.startswith("linux") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    check_display()
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from promptlab.gui.window import MainWindow

    session = load_session()
    source = o.source or (session.source if not o.exit else None) or default_source()
    if source is None and o.exit:  # nothing to open, so nothing would ever end the run
        raise PromptlabError("no source given and no bundled sample clip: pass a video, an image folder or a .plab")
    start_session(session, o, source)
    app = QApplication.instance() or QApplication(["promptlab"])
    win = MainWindow(session)
    fit_to_screen(win, o.window)
    if o.source is None and source is None:
        win.show_error("no sample clip found: open a video, an image folder or a .plab")
    win.show()
    outcome = {"value": "none"}
    failure: dict[str, BaseException] = {}

    def stop(exc: BaseException) -> None:
        failure.setdefault("error", exc)
        win.close()
        app.quit()

    def guarded(fn):
        def call(*args):
            try:
                return fn(*args)
            except Exception as exc:  # noqa: BLE001 - a Qt callback must not swallow it: end the run
                if not o.exit:
                    win.show_error(str(exc))
                    return None
                stop(exc)
                return None
        return call

    if source:
        _say(f"opening {source}")
        if not win.open(source, frames=o.frames):
            if o.exit:
                win.close()
                raise PromptlabError(win.state.last_error)
            _say(f"error: {win.state.last_error}")
    if o.kbps is not None:
        win.controls.use_target.setChecked(True)
        win.controls.target.setValue(o.kbps)
    if o.view:
        win.set_mode(o.view)
    if o.zoom:
        _when(lambda: win.viewer.count() > 0, lambda: win.viewer.set_zoom(o.zoom))  # loading the frames fits them
    _echo_progress(win)

    def finish(result: str) -> None:
        outcome["value"] = result
        _say(f"run {result}" + (f": {win.state.last_error}" if result == "error" and win.state.last_error else ""))
        if o.seek is not None:
            win.seek(o.seek)
        rd = win.viewer.rd
        if o.view == "rd" and not rd.busy():
            rd.refresh()  # a reused result is a point of it too
        if o.screenshot:  # the RD view's H.265 ladder first: it is computed in the background
            _when(lambda: not rd.busy(), guarded(lambda: (_shoot(win, o.screenshot), _quit(win, app, o))), 300)
        else:
            _quit(win, app, o)

    if o.run:
        win.jobDone.connect(guarded(finish))
        QTimer.singleShot(800, guarded(win.run))
    elif o.screenshot:
        QTimer.singleShot(800, guarded(lambda: (_shoot(win, o.screenshot), _quit(win, app, o))))
    with _quit_on_sigint(lambda: stop(KeyboardInterrupt())), _stop_on_callback_error(stop if o.exit else None):
        app.exec()
    err = failure.get("error")
    if isinstance(err, KeyboardInterrupt):
        raise KeyboardInterrupt
    if isinstance(err, PromptlabError):
        raise err
    if err is not None:
        raise PromptlabError(f"the lab stopped: {type(err).__name__}: {err}")
    if o.exit and o.run and outcome["value"] not in ("finished", "cached"):
        raise PromptlabError(f"the run did not finish ({outcome['value']}): {win.state.last_error or 'see above'}")
    return 0


def fit_to_screen(win, size: tuple[int, int] | None) -> None:
    """The asked size, else the default one shrunk to the screen's available area (a laptop's)."""
    if size is not None:
        win.resize(*size)
        return
    screen = win.screen()
    if screen is not None:
        avail = screen.availableGeometry()
        win.resize(min(win.width(), avail.width()), min(win.height(), avail.height()))


def _say(text: str) -> None:
    """The lab's progress on the terminal too, so a command line that started it is never silent."""
    print(f"promptlab gui: {text}", file=sys.stderr, flush=True)


def _echo_progress(win) -> None:
    """Echo the job's progress to stderr: each new phase, and at most one line per 5 s within one."""
    last = {"phase": None, "t": 0.0}

    def echo(frac: float, text: str, eta: str) -> None:
        phase = text.split(" iteration")[0] if text.startswith("keyframe") else text.split(" ")[0]
        now = time.monotonic()
        if phase != last["phase"] or now - last["t"] >= 5.0:
            last.update(phase=phase, t=now)
            _say(f"{100 * frac:3.0f}% {text}" + (f" ({eta})" if eta else ""))

    win.runner.progress.connect(echo)


def _when(ready, then, delay_ms: int = 0) -> None:
    """Call `then` once `ready()` holds (checked every 100 ms on the UI thread), `delay_ms` later."""
    from PySide6.QtCore import QTimer

    def check() -> None:
        if ready():
            QTimer.singleShot(delay_ms, then)
        else:
            QTimer.singleShot(100, check)

    check()


def _shoot(win, path: str) -> None:
    _say(f"saved {win.screenshot(path)}")


@contextlib.contextmanager
def _quit_on_sigint(quit_app) -> Iterator[None]:
    """Ctrl+C quits the lab cleanly: Python runs signal handlers only between bytecodes, so a
    timer hands the interpreter control a few times a second while Qt's loop runs."""
    from PySide6.QtCore import QTimer

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: quit_app())
    tick = QTimer()
    tick.timeout.connect(lambda: None)
    tick.start(200)
    try:
        yield
    finally:
        tick.stop()
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _stop_on_callback_error(stop) -> Iterator[None]:
    """In --exit runs an exception in any Qt callback (Qt reports it through sys.excepthook and
    carries on) ends the app, so an automated run never hangs on a window nobody closes."""
    if stop is None:
        yield
        return
    previous = sys.excepthook
    sys.excepthook = lambda kind, exc, tb: stop(exc)
    try:
        yield
    finally:
        sys.excepthook = previous


def _quit(win, app, o: GuiOptions) -> None:
    if o.exit:
        win.close()
        app.quit()
