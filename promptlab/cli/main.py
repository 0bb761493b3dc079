"""`promptlab COMMAND ...`: dispatch to one module per command, and turn user errors into one line.

Each command module exposes `main(argv) -> int` and a one-line docstring, so tests call commands
directly and the dispatcher stays free of per-command logic.
"""

from __future__ import annotations

import importlib
import re
import sys

from promptlab import __version__
from promptlab.errors import PromptlabError

COMMANDS: dict[str, tuple[str, str]] = {
    "encode": ("promptlab.cli.encode", "fit prompts to a video and write a .plab stream"),
    "decode": ("promptlab.cli.decode", "regenerate frames from a .plab stream"),
    "run": ("promptlab.cli.run", "the lab's run headless: encode, decode, score, baseline (--json)"),
    "info": ("promptlab.cli.info", "describe a .plab stream and count its bytes"),
    "transcode": ("promptlab.cli.transcode", "a lower rank or fewer bits from a .plab stream, no re-fit"),
    "import-official": ("promptlab.cli.official", "convert reference Promptus prompts to .plab"),
    "export-official": ("promptlab.cli.official", "write a .plab stream in the reference format"),
    "eval": ("promptlab.cli.eval", "per-frame LPIPS/PSNR/SSIM/MS-SSIM of two aligned clips"),
    "baseline": ("promptlab.cli.baseline", "H.265/H.264 at a target bitrate on the same frames"),
    "sweep": ("promptlab.cli.sweep", "rate-distortion sweep against H.265, with BD-rate"),
    "stream": ("promptlab.cli.stream", "prompts and H.265 over network traces with ABR: stalls, LPIPS shown, QoE"),
    "export": ("promptlab.cli.export", "comparison clips, frames, sheets, metrics and a report"),
    "fetch-weights": ("promptlab.cli.fetch_weights", "provision metric weights (LPIPS) offline or online"),
    "doctor": ("promptlab.cli.doctor", "list models, weights, codecs and devices, and what is missing"),
    "bench": ("promptlab.cli.bench", "generation/inversion speed against the diffusers pipeline"),
    "train-tiny": ("promptlab.cli.train_tiny", "train the built-in model from offline data"),
    "gui": ("promptlab.cli.gui", "open the desktop lab"),
}


def usage() -> str:
    lines = [f"promptlab {__version__}: prompt-based generative video compression lab", "",
             "usage: promptlab COMMAND [options]   (promptlab COMMAND --help for details)", "", "commands:"]
    for name, (_, help_) in COMMANDS.items():
        lines.append(f"  {name:<16} {help_}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(__version__)
        return 0
    name, rest = argv[0], _attach_range_values(argv[1:])
    if name not in COMMANDS:
        print(f"promptlab: error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        if hasattr(module, "main_for"):
            return int(module.main_for(name, rest) or 0)
        return int(module.main(rest) or 0)
    except PromptlabError as exc:
        print(f"promptlab {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"promptlab {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


RANGE_FLAGS = ("--frames", "--recon-frames")


def _attach_range_values(argv: list[str]) -> list[str]:
    """`--frames -5:10` as `--frames=-5:10`: argparse takes a value starting with '-' for a flag
    and answers with a usage dump; attached, the range check gives its one-line reason."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in RANGE_FLAGS and i + 1 < len(argv) and re.fullmatch(r"-[-\d\s:.]*:[-\d\s:.]*", argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def entry() -> None:
    sys.exit(main())
