"""per-frame LPIPS/PSNR/SSIM/MS-SSIM (and VMAF with --vmaf) of two aligned clips"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

from promptlab.errors import PromptlabError
from promptlab.io.atomic import check_target, write_bytes_atomic
from promptlab.io.video import count_frames, parse_frames, probe, read_frames
from promptlab.metrics.frame import METRICS, SEVERE_LPIPS


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="promptlab eval", description=__doc__.strip() + ". REF and RECON may be "
                                 "videos, numbered image folders or single images; frames are streamed.")
    ap.add_argument("ref", help="reference clip")
    ap.add_argument("recon", help="reconstruction to score")
    ap.add_argument("--size", type=int, default=None,
                    help="square size both clips are prepared to (default: compare as stored; sizes must match)")
    ap.add_argument("--crop", default="center", choices=("center", "squash", "pad"))
    ap.add_argument("--frames", default=None, metavar="A:B", help="reference frames to use (A inclusive, B exclusive)")
    ap.add_argument("--recon-frames", default=None, metavar="C:D",
                    help="reconstruction frames to use (default: all of RECON)")
    ap.add_argument("--lpips-net", default="alex", choices=("alex", "vgg"))
    ap.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    ap.add_argument("--vmaf", action="store_true",
                    help='also VMAF v0.6.1 (0-100, higher better; needs pip install "promptlab[vmaf]")')
    ap.add_argument("--severe", type=float, default=SEVERE_LPIPS, help="LPIPS above this marks a severely distorted frame")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    ap.add_argument("--json", type=Path, default=None, help="write summary and per-frame rows as JSON")
    ap.add_argument("--csv", type=Path, default=None, help="write per-frame rows as CSV")
    ap.add_argument("--force", action="store_true", help="overwrite --json/--csv outputs")
    ap.add_argument("--quiet", action="store_true", help="no table on stdout")
    return ap


def _aligned_count(args: argparse.Namespace, ref_range, recon_range) -> int:
    n_ref = count_frames(args.ref, ref_range)
    n_rec = count_frames(args.recon, recon_range)
    if n_ref == 0 or n_rec == 0:
        which = "REF" if n_ref == 0 else "RECON"
        raise PromptlabError(f"{which} has no frames in the selected range")
    if n_ref != n_rec:
        raise PromptlabError(f"misaligned clips: REF has {n_ref} frames"
                             f"{' in ' + args.frames if args.frames else ''}, RECON has {n_rec}"
                             f"{' in ' + args.recon_frames if args.recon_frames else ''}; select matching "
                             "ranges with --frames / --recon-frames")
    return n_ref


def _check_sizes(args: argparse.Namespace) -> None:
    a, b = probe(args.ref), probe(args.recon)
    if args.size is None and (a.width, a.height) != (b.width, b.height):
        raise PromptlabError(f"REF frames are {a.width}x{a.height} but RECON frames are {b.width}x{b.height}; "
                             "pass --size PX to prepare both to one square size")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.severe <= 0:
        raise PromptlabError(f"--severe must be > 0, got {args.severe}")
    for out in (args.json, args.csv):
        if out is not None:
            check_target(out, args.force)
    ref_range, recon_range = parse_frames(args.frames), parse_frames(args.recon_frames)
    _check_sizes(args)
    n = _aligned_count(args, ref_range, recon_range)
    from promptlab.metrics import FrameMetrics, score, summarize

    fm = FrameMetrics(args.lpips_net, device=args.device, need_lpips=not args.no_lpips, vmaf=args.vmaf)
    ref_it = read_frames(args.ref, frames=ref_range, size=args.size, crop=args.crop)
    rec_it = read_frames(args.recon, frames=recon_range, size=args.size, crop=args.crop)
    rows = [{"frame": i, **r} for i, r in enumerate(score(fm, ref_it, rec_it))]
    if len(rows) != n:
        raise PromptlabError(f"read {len(rows)} frame pairs, expected {n}")
    summary = summarize(rows, severe=args.severe)
    notes = [] if fm.has_lpips else [f"lpips is null: {fm.lpips_note}"]
    shown = [] if args.no_lpips else notes
    settings = {"ref": str(args.ref), "recon": str(args.recon), "size": args.size, "crop": args.crop,
                "frames": args.frames, "recon_frames": args.recon_frames, "lpips_net": args.lpips_net,
                "lpips_version": "0.1", "severe": args.severe, "device": fm.device, "psnr_cap_db": 100.0,
                "vmaf_model": "vmaf_v0.6.1" if args.vmaf else None,
                "ms_ssim_scales": _scales(rows, args)}
    doc = {"mean": summary["mean"], "percentiles": summary["percentiles"], "worst": summary["worst"],
           "n_frames": summary["n_frames"], "severe_count": summary["severe_count"],
           "frames": rows, "settings": settings, "notes": notes}
    if args.json is not None:
        write_bytes_atomic(args.json, json.dumps(doc, indent=2, allow_nan=False).encode())
    if args.csv is not None:
        write_bytes_atomic(args.csv, _csv(rows).encode())
    if not args.quiet:
        print(format_table(summary, args.lpips_net, vmaf=args.vmaf))
    for note in shown:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _scales(rows: list[dict], args: argparse.Namespace) -> int | None:
    from promptlab.metrics.ssim import ms_ssim_scales

    side = args.size if args.size is not None else min(probe(args.ref).width, probe(args.ref).height)
    return ms_ssim_scales(side, side) if rows else None


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["frame", *METRICS])
    for r in rows:
        w.writerow([r["frame"]] + ["" if r.get(k) is None else f"{r[k]:.6f}" for k in METRICS])
    return buf.getvalue()


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def format_table(summary: dict, net: str = "alex", vmaf: bool = False) -> str:
    """A plain-text table: mean, percentiles and worst frame per metric, and the severe ratio."""
    names = {"lpips": f"LPIPS-{net} (lower better)", "psnr": "PSNR dB (higher better)",
             "ssim": "SSIM (higher better)", "ms_ssim": "MS-SSIM (higher better)"}
    if vmaf:
        names["vmaf"] = "VMAF v0.6.1 (higher better)"
    lines = [f"{'metric':<28}{'mean':>9}{'p5':>9}{'p50':>9}{'p95':>9}   worst (frame)"]
    for m, label in names.items():
        d = 2 if m in ("psnr", "vmaf") else 4
        pct = summary["percentiles"].get(m) or {}
        worst = summary["worst"].get(m)
        w = f"{_fmt(worst['value'], d)} ({worst['frame']})" if worst else "n/a"
        lines.append(f"{label:<28}{_fmt(summary['mean'][m], d):>9}{_fmt(pct.get('p5'), d):>9}"
                     f"{_fmt(pct.get('p50'), d):>9}{_fmt(pct.get('p95'), d):>9}   {w}")
    if summary["mean"]["severe_ratio"] is None:
        lines.append(f"severe frames (LPIPS > {summary['severe_threshold']:g}): n/a (no LPIPS)")
    else:
        lines.append(f"severe frames (LPIPS > {summary['severe_threshold']:g}): {summary['severe_count']}/"
                     f"{summary['n_frames']} ({summary['mean']['severe_ratio']:.1%})")
    return "\n".join(lines)
