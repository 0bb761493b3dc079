"""`promptlab export SRC STREAM.plab -o OUT [-o OUT ...]`: comparison clips, frames, sheets, metrics, a report.

The output kind follows each -o extension: .mp4/.webm/.gif comparison clip, .png one comparison
frame (--frame), .csv/.json per-frame metrics, .html self-contained report, .plab a copy of the
stream; --sheet OUT.png writes the worst-frames sheet. The stream is decoded once for all of them.
Every file is written atomically; existing files need --force.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from promptlab.errors import PromptlabError
from promptlab.export.clip import CLIP_FORMATS, export_clip, export_frame, write_file
from promptlab.export.comparison import parse_overlay
from promptlab.export.compose import LAYOUTS
from promptlab.export.load import BASELINES, is_stream, load_comparison
from promptlab.export.report import export_report
from promptlab.export.sheet import export_sheet
from promptlab.export.tables import export_metrics
from promptlab.io.atomic import check_target
from promptlab.io.video import FrameRange, checked_count, count_frames, parse_frames, probe

KINDS = {**{e: "clip" for e in CLIP_FORMATS}, ".png": "frame", ".csv": "metrics", ".json": "metrics",
         ".html": "report", ".htm": "report", ".plab": "stream"}
NEEDS_METRICS = {"metrics", "report"}


class Bar:
    """A tqdm bar on stderr per stage; silent when disabled or tqdm is missing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.stage: str | None = None
        self.bar = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self.stage:
            self.close()
            try:
                from tqdm import tqdm
            except ImportError:
                self.enabled = False
                return
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, unit="frame", file=sys.stderr, leave=False)
        if self.bar is not None:
            self.bar.total = total
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="promptlab export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="source clip: video file, folder of numbered images, or one image")
    p.add_argument("recon", help="a .plab stream (decoded here) or an already decoded clip of the same frames")
    p.add_argument("-o", "--output", action="append", default=[], metavar="OUT",
                   help="output file, repeatable: " + ", ".join(KINDS))
    p.add_argument("--sheet", metavar="OUT.png", help="write the worst-frames sheet here")
    p.add_argument("--worst", type=int, default=6, metavar="N", help="frames on the worst-frames sheet (default 6)")
    p.add_argument("--layout", choices=LAYOUTS, default="side-by-side")
    p.add_argument("--baseline", choices=[*BASELINES, "none"], default="none",
                   help="add a classical codec at the same bitrate (default none)")
    p.add_argument("--labels", action=argparse.BooleanOptionalAction, default=False,
                   help="label strips above the panes: method and kbps")
    p.add_argument("--overlay", default="", metavar="LIST", help="per-frame notes: comma list of lpips,psnr,ssim,kbps")
    p.add_argument("--frames", metavar="A:B", help="source frames the stream encodes (as given to encode)")
    p.add_argument("--frame", type=int, default=0, metavar="N", help="frame for .png outputs (0 = first exported)")
    p.add_argument("--size", type=int, metavar="PX", help="pane size in the export (display resize only)")
    p.add_argument("--kbps", type=float, help="rate of a decoded clip given as RECON (for labels and the baseline)")
    p.add_argument("--label", help="method label for RECON (default: from the stream)")
    p.add_argument("--fps", type=float, help="frame rate of image-folder inputs")
    p.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex")
    p.add_argument("--vmaf", action="store_true",
                   help='also VMAF v0.6.1 in metrics and the report (pip install "promptlab[vmaf]")')
    p.add_argument("--device", default="auto", help="device for decoding and LPIPS (auto, cpu, cuda, mps)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars on stderr")
    return p


def _plan(a: argparse.Namespace) -> list[tuple[str, Path]]:
    """Check every output before any work: kind, folder, overwrite."""
    outs: list[tuple[str, Path]] = []
    for o in a.output:
        kind = KINDS.get(Path(o).suffix.lower())
        if kind is None:
            raise PromptlabError(f"cannot tell what to write from {o!r}: use one of {', '.join(KINDS)}")
        if kind == "stream" and not is_stream(a.recon):
            raise PromptlabError(f"{o}: copying a stream needs a .plab as RECON")
        outs.append((kind, check_target(o, a.force)))
    if a.sheet:
        if Path(a.sheet).suffix.lower() != ".png":
            raise PromptlabError(f"--sheet {a.sheet}: the sheet is written as .png")
        outs.append(("sheet", check_target(a.sheet, a.force)))
    if not outs:
        raise PromptlabError("nothing to export: give -o OUT (and/or --sheet OUT.png)")
    paths = [str(p.resolve()) for _, p in outs]
    if len(set(paths)) != len(paths):
        raise PromptlabError("two outputs name the same file")
    if a.size is not None and not 8 <= a.size <= 8192:
        raise PromptlabError(f"--size must be between 8 and 8192, got {a.size}")
    if a.worst < 1:
        raise PromptlabError(f"--worst must be at least 1, got {a.worst}")
    if a.kbps is not None and not (math.isfinite(a.kbps) and a.kbps > 0):
        raise PromptlabError(f"--kbps must be a positive bitrate, got {a.kbps:g}")
    return outs


def _check_inputs(a: argparse.Namespace, frames: FrameRange | None) -> list[str]:
    """Frame ranges and frame rates, checked from headers and counts before anything is decoded.

    Returns notes for what was chosen without being asked (the user sees them on stderr).
    """
    _, notes = checked_count(a.src, frames)
    start, stop = frames if frames is not None else (0, None)
    if is_stream(a.recon):
        from promptlab.codec.container import read_stream

        held = read_stream(a.recon).header.n_frames
    else:
        held = count_frames(a.recon)
    if stop is not None and stop - start > held:
        raise PromptlabError(f"--frames {start}:{stop} asks for {stop - start} frames but {a.recon} holds {held}")
    n = held if stop is None else stop - start
    if count_frames(a.src, (start, start + n)) < n:
        raise PromptlabError(f"{a.src} gives {count_frames(a.src, (start, None))} frames from frame {start} "
                             f"but {a.recon} holds {n}; check --frames")
    if a.fps is None and not is_stream(a.recon) and probe(a.recon).kind == "images":
        src = probe(a.src)
        a.fps = src.fps
        where = "the source's rate" if src.kind == "video" else "image folders carry no rate"
        notes.append(f"{a.recon} is an image folder: writing {a.fps:g} fps ({where}; --fps sets it)")
    return notes


def main(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    outs = _plan(a)
    overlay = parse_overlay(a.overlay)
    frames = parse_frames(a.frames)
    for note in _check_inputs(a, frames):
        print(f"promptlab export: note: {note}", file=sys.stderr)
    bar = Bar(a.progress)
    try:
        comp = load_comparison(a.src, a.recon, frames=frames, baseline=None if a.baseline == "none" else a.baseline,
                               kbps=a.kbps, label=a.label, fps=a.fps, device=a.device, progress=bar)
        kinds = {k for k, _ in outs}
        if kinds & (NEEDS_METRICS | {"sheet"}) or set(overlay) & {"lpips", "psnr", "ssim"}:
            from promptlab.metrics import FrameMetrics

            fm = FrameMetrics(a.lpips_net, device="cpu" if a.device == "auto" else a.device, vmaf=a.vmaf)
            comp.compute_metrics(fm, progress=bar)
            if "lpips" in overlay and not comp.has_lpips:
                print("promptlab export: note: LPIPS weights absent, the overlay shows PSNR instead "
                      "(promptlab fetch-weights lpips)", file=sys.stderr)
                overlay = tuple(dict.fromkeys("psnr" if k == "lpips" else k for k in overlay))
        for kind, out in outs:
            _write(kind, out, a, comp, overlay, bar)
    finally:
        bar.close()
    for _, out in outs:
        print(out)
    return 0


def _write(kind: str, out: Path, a: argparse.Namespace, comp, overlay, bar: Bar) -> None:
    common = {"layout": a.layout, "labels": a.labels, "overlay": overlay, "size": a.size, "force": a.force}
    if kind == "clip":
        export_clip(out, comp, progress=bar, **common)
    elif kind == "frame":
        export_frame(out, comp, a.frame, **common)
    elif kind == "sheet":
        export_sheet(out, comp, a.worst, size=a.size, force=a.force, progress=bar)
    elif kind == "metrics":
        export_metrics(out, comp, force=a.force)
    elif kind == "report":
        export_report(out, comp, force=a.force, sheet_n=a.worst, size=a.size, progress=bar)
    elif kind == "stream":
        write_file(out, Path(a.recon).read_bytes())
