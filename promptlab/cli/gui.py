"""open the desktop lab"""

from __future__ import annotations

import argparse

from promptlab.errors import PromptlabError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="promptlab gui", description="Open the desktop lab (PySide6).")
    p.add_argument("source", nargs="?", help="video, image folder or .plab stream (default: the sample sky clip)")
    p.add_argument("--frames", help="frame range A:B (A inclusive, B exclusive)")
    p.add_argument("--size", type=int, help="frame side in pixels (multiple of 8)")
    p.add_argument("--model", help="generator model (default: the saved choice, else tiny)")
    p.add_argument("--rank", type=int, help="prompt rank r")
    p.add_argument("--interval", type=int, help="keyframe interval k")
    p.add_argument("--iters", type=int, help="iterations for later keyframes")
    p.add_argument("--first-iters", type=int, dest="first_iters", help="iterations for keyframe 0")
    p.add_argument("--preset", help="preset name from presets/ or a JSON path")
    p.add_argument("--baseline", action="store_true", help="also H.265 at the same bitrate (third pane)")
    p.add_argument("--mode", choices=("side", "split", "diff"), help="viewer mode")
    p.add_argument("--seek", type=int, help="show this frame after the run")
    p.add_argument("--run", action="store_true", help="run encode, decode and metrics at start")
    p.add_argument("--screenshot", metavar="OUT.png", help="save a picture of the window (after --run)")
    p.add_argument("--exit", action="store_true", help="quit when done (exit 0 only if the run finished)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        import pyqtgraph  # noqa: F401
        import PySide6  # noqa: F401
    except ImportError as exc:
        raise PromptlabError(f"the GUI needs PySide6 and pyqtgraph ({exc}); pip install PySide6-Essentials pyqtgraph") from None
    if args.model is not None:  # a model that cannot load is refused before any window opens
        from promptlab.models.registry import check_model

        check_model(args.model)
    from promptlab.gui.app import GuiOptions, run_gui

    return run_gui(GuiOptions(**vars(args)))
