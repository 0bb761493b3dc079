"""open the desktop lab"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from promptlab.cli.common import add_settings_args, explicit_settings
from promptlab.errors import PromptlabError
from promptlab.gui.views import MODE_LABELS, MODES, ZOOMS

if TYPE_CHECKING:
    from promptlab.gui.app import GuiOptions


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="promptlab gui", description="Open the desktop lab (PySide6).")
    p.add_argument("source", nargs="?", help="video, image folder or .plab stream (default: the sample sky clip)")
    add_settings_args(p)  # the same settings flags, --preset, --kbps and --frames as every command
    p.add_argument("--baseline", action="store_true", help="also H.265 at the same bitrate (third pane)")
    p.add_argument("--view", choices=MODES, help="what the viewer shows (keys 1–5 in the window): "
                   + "; ".join(f"{m}: {MODE_LABELS[m]}" for m in MODES))
    p.add_argument("--zoom", type=int, choices=(0, *ZOOMS), metavar="N",
                   help=f"screen pixels per image pixel, one of {', '.join(map(str, ZOOMS))}; 0 fits (the default)")
    p.add_argument("--seek", type=int, help="show this frame after the run")
    p.add_argument("--run", action="store_true", help="run encode, decode and metrics at start")
    p.add_argument("--screenshot", metavar="OUT.png", help="save a picture of the window (after --run)")
    p.add_argument("--exit", action="store_true", help="quit when done (exit 0 only if the run finished)")
    p.add_argument("--window", type=window_size, metavar="WxH",
                   help="the window's size in pixels, e.g. 1366x768 (default 1400x900, or the screen if smaller)")
    return p


def window_size(text: str) -> tuple[int, int]:
    """WxH, both at least 200 px: the window size --window asks for."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels such as 1366x768, got {text!r}") from None
    if w < 200 or h < 200:
        raise argparse.ArgumentTypeError(f"a window of {w}x{h} px is too small (at least 200x200)")
    return w, h


def options(argv: list[str]) -> GuiOptions:
    """The command line as GuiOptions (settings flags by Settings field; a model that cannot load is refused)."""
    from promptlab.gui.app import GuiOptions

    a = parser().parse_args(argv)
    return GuiOptions(source=a.source, frames=a.frames, preset=a.preset, changes=explicit_settings(a), kbps=a.kbps,
                      baseline=a.baseline, run=a.run, screenshot=a.screenshot, exit=a.exit, view=a.view,
                      zoom=a.zoom, seek=a.seek, window=a.window)


def main(argv: list[str]) -> int:
    o = options(argv)  # --help, usage errors and a model that cannot load: before any import of Qt
    try:
        import pyqtgraph  # noqa: F401
        import PySide6  # noqa: F401
    except ImportError as exc:
        raise PromptlabError(f"the GUI needs PySide6 and pyqtgraph ({exc}); pip install PySide6-Essentials pyqtgraph") from None
    from promptlab.gui.app import run_gui

    return run_gui(o)
