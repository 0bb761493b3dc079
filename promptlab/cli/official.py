"""`import-official` / `export-official`: convert between .plab and the reference Promptus files."""

from __future__ import annotations

import argparse

from promptlab.codec.container import read_stream, write_stream
from promptlab.codec.official import REFERENCE_MODEL, export_dir, import_dir
from promptlab.io.atomic import check_target


def import_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="promptlab import-official",
                                description="Read frame_NNNNN.prompt + init.pth (tensors only) into a .plab stream.")
    p.add_argument("folder")
    p.add_argument("-o", "--output", required=True, help="output .plab")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the source clip (default 30)")
    p.add_argument("--model", default=REFERENCE_MODEL, help="model identity to record (default sd-turbo)")
    p.add_argument("--force", action="store_true", help="overwrite the output")
    a = p.parse_args(argv)
    check_target(a.output, a.force)
    header, init, records = import_dir(a.folder, fps=a.fps, model=a.model)
    n = write_stream(a.output, header, init, records)
    print(f"wrote {a.output}: {len(records)} keyframes, rank {header.rank}, interval {header.interval}, {n} bytes")
    return 0


def export_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="promptlab export-official",
                                description="Write a .plab stream as reference frame_NNNNN.prompt + init.pth files.")
    p.add_argument("stream")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    a = p.parse_args(argv)
    files = export_dir(read_stream(a.stream), a.output, force=a.force)
    print(f"wrote {len(files)} files to {a.output}")
    return 0


def main_for(command: str, argv: list[str]) -> int:
    return import_main(argv) if command == "import-official" else export_main(argv)
