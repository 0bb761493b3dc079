"""Start the lab: build the window from the saved session and the command line, optionally automate.

`--run --screenshot OUT.png --exit` runs encode, decode and metrics, saves a picture of the
window and quits: the path docs/img/gui.png is made by, and the way CI checks the window.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from promptlab.errors import PromptlabError
from promptlab.settings import Settings, load_preset

SAMPLE_CLIP = Path(__file__).resolve().parents[2] / "assets" / "sky.mp4"
SAMPLE_FRAMES = Path(__file__).resolve().parents[3] / "shared" / "data" / "promptus-sky" / "frames"


@dataclass
class GuiOptions:
    """The command line, parsed (see promptlab/cli/gui.py)."""

    source: str | None = None
    frames: str | None = None
    size: int | None = None
    model: str | None = None
    rank: int | None = None
    interval: int | None = None
    iters: int | None = None
    first_iters: int | None = None
    preset: str | None = None
    baseline: bool = False
    run: bool = False
    screenshot: str | None = None
    exit: bool = False
    mode: str | None = None
    seek: int | None = None


def default_source() -> str | None:
    """The sample clip shipped with promptlab, else the shared sky frames, else nothing."""
    for p in (SAMPLE_CLIP, SAMPLE_FRAMES):
        if p.exists():
            return str(p)
    return None


def build_settings(base: Settings, o: GuiOptions) -> Settings:
    s = load_preset(o.preset, base) if o.preset else base
    changes = {k: getattr(o, k) for k in ("size", "model", "rank", "interval", "iters", "first_iters")
               if getattr(o, k) is not None}
    return s.replace(**changes)


def run_gui(o: GuiOptions) -> int:
    """Open the window; with o.exit, return 0 only if the automated run finished and was saved."""
    if o.screenshot:
        shot = Path(o.screenshot)
        if not shot.parent.exists():
            raise PromptlabError(f"output folder {shot.parent} does not exist")
    if o.exit and not os.environ.get("QT_QPA_PLATFORM") and not os.environ.get("DISPLAY") \
            and sys.platform.startswith("linux") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from promptlab.gui.session import load_session
    from promptlab.gui.window import MainWindow

    session = load_session()
    session.settings = build_settings(session.settings, o)
    session.baseline = o.baseline or session.baseline if not o.exit else o.baseline
    if o.frames is not None:
        session.frames = o.frames
    app = QApplication.instance() or QApplication(["promptlab"])
    win = MainWindow(session)
    source = o.source or (session.source if not o.exit else None) or default_source()
    if o.source is None and source is None:
        win.show_error("no sample clip found: open a video, an image folder or a .plab")
    win.show()
    outcome = {"value": "none"}
    if source and not win.open(source, frames=o.frames):
        if o.exit:
            win.close()
            raise PromptlabError(win.last_error)
    if o.mode:
        win.set_mode(o.mode)

    def finish(result: str) -> None:
        outcome["value"] = result
        if o.seek is not None:
            win.seek(o.seek)
        if o.screenshot:
            QTimer.singleShot(300, lambda: (win.screenshot(o.screenshot), _quit(win, app, o)))
        else:
            _quit(win, app, o)

    if o.run:
        win.jobDone.connect(finish)
        QTimer.singleShot(800, win.run)
    elif o.screenshot:
        QTimer.singleShot(800, lambda: (win.screenshot(o.screenshot), _quit(win, app, o)))
    app.exec()
    if o.exit and o.run and outcome["value"] not in ("finished", "cached"):
        raise PromptlabError(f"the run did not finish ({outcome['value']}): {win.last_error or 'see above'}")
    return 0


def _quit(win, app, o: GuiOptions) -> None:
    if o.exit:
        win.close()
        app.quit()
