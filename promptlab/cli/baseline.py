"""A comparison method (H.265, H.264, the VAE baseline, …: runs/methods.py) at a target bitrate on the same frames"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from promptlab.errors import PromptlabError
from promptlab.io.atomic import check_target, write_bytes_atomic
from promptlab.io.video import checked_count, parse_frames, probe, read_frames
from promptlab.runs import methods
from promptlab.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    default_size = Settings().size
    ap = argparse.ArgumentParser(prog="promptlab baseline", description=__doc__.strip() + ": rate-controlled "
                                 "so the bytes written land within --tolerance of --kbps.")
    ap.add_argument("codec", choices=methods.names())
    ap.add_argument("src", help="video, numbered image folder or image")
    ap.add_argument("--kbps", type=float, required=True, help="target bitrate (kbit/s over the clip's duration)")
    ap.add_argument("--size", type=int, default=default_size, help=f"square frame size (default {default_size})")
    ap.add_argument("--crop", default="center", choices=("center", "squash", "pad"))
    ap.add_argument("--frames", default=None, metavar="A:B", help="frames to encode (A inclusive, B exclusive)")
    ap.add_argument("--fps", type=float, default=None, help="frame rate (default: the source's; folders 30)")
    ap.add_argument("--preset", default="medium", help="x265/x264 preset (default medium)")
    ap.add_argument("--tolerance", type=float, default=None,
                    help="allowed relative bitrate error (default: the method's, "
                    + ", ".join(f"{n} {methods.get(n).tolerance:g}" for n in methods.names()) + ")")
    ap.add_argument("-o", "--output", type=Path, required=True,
                    help="stream file: .hevc/.h265 or .h264 (raw, = bytes counted) or .mp4/.mkv/.mov; "
                    "vae/thumbnail: .plva/.plth (the method's own stream, = bytes counted)")
    ap.add_argument("--recon", type=Path, default=None, help="write decoded frames (PNG folder or video)")
    ap.add_argument("--json", type=Path, default=None, help="write sizes, per-frame bytes and search trace")
    ap.add_argument("--metrics", action="store_true", help="also score the decoded frames (PSNR/SSIM/MS-SSIM/LPIPS)")
    ap.add_argument("--force", action="store_true", help="overwrite outputs")
    return ap


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from promptlab.baselines.output import check_output

    check_output(args.output, args.codec, args.force)
    for out in (args.recon, args.json):
        if out is not None:
            check_target(out, args.force)
    if len({p.resolve() for p in (args.output, args.recon, args.json) if p is not None}) != \
            sum(p is not None for p in (args.output, args.recon, args.json)):
        raise PromptlabError("-o, --recon and --json must be different paths")
    info = probe(args.src, fps=args.fps)
    frange = parse_frames(args.frames)
    for note in checked_count(args.src, frange)[1]:
        print(f"note: {note}", file=sys.stderr)
    frames = list(read_frames(args.src, frames=frange, size=args.size, crop=args.crop))
    result = methods.encode(args.codec, frames, info.fps, args.kbps, tolerance=args.tolerance,
                            options=methods.Options(preset=args.preset))
    doc, file_bytes = _write_outputs(args, result, frames, info.fps)
    if "keyframe_interval" in result.params:
        how = f"{result.params['level']}, keyframes every {result.params['keyframe_interval']}"
    else:
        how = f"{result.params['rate_control']} {result.params.get('crf', result.params.get('bitrate_kbps'))}"
    print(f"{args.codec}: target {args.kbps:g} kbps -> {result.kbps:.2f} kbps ({result.bytes} bytes, "
          f"{result.n_frames} frames {result.width}x{result.height} @ {result.fps:g} fps; "
          f"{how}, {result.params['encodes']} encodes)")
    if file_bytes != result.bytes:
        print(f"{args.output}: {file_bytes} bytes on disk ({file_bytes - result.bytes} of container overhead, "
              "not counted)")
    if "metrics" in doc:
        m = doc["metrics"]["mean"]
        lp = "n/a" if m["lpips"] is None else f"{m['lpips']:.4f}"
        print(f"mean LPIPS-alex {lp}, PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, MS-SSIM {m['ms_ssim']:.4f}")
    if not result.converged:
        print(f"warning: {result.note} (achieved {result.kbps:.2f} kbps)", file=sys.stderr)
    return 0


def _write_outputs(args: argparse.Namespace, result, frames, fps: float) -> tuple[dict, int]:
    """Write stream, recon and JSON; if one fails, remove the ones already written."""
    from promptlab.baselines.output import write_stream
    from promptlab.io.writer import write_frames

    written: list[Path] = []
    try:
        file_bytes = write_stream(result, args.output, force=args.force)
        written.append(args.output)
        if args.recon is not None:
            write_frames(args.recon, result.recon, fps, force=args.force)
            written.append(args.recon)
        doc = _document(args, result, frames, file_bytes)
        if args.json is not None:
            write_bytes_atomic(args.json, json.dumps(doc, indent=2, allow_nan=False).encode())
    except BaseException:
        for p in written:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        raise
    return doc, file_bytes


def _document(args: argparse.Namespace, result, frames, file_bytes: int) -> dict:
    doc = {**result.summary(), "source": str(args.src), "size": args.size, "crop": args.crop,
           "frame_range": args.frames, "output": str(args.output), "file_bytes": file_bytes,
           "container_overhead_bytes": file_bytes - result.bytes}
    if args.metrics:
        from promptlab.metrics import FrameMetrics, score, summarize

        fm = FrameMetrics("alex")
        rows = [{"frame": i, **r} for i, r in enumerate(score(fm, frames, result.recon))]
        doc["metrics"] = {"mean": summarize(rows)["mean"], "frames": rows,
                          "notes": [] if fm.has_lpips else [f"lpips is null: {fm.lpips_note}"]}
    return doc
