"""`promptlab stream SRC --gop N (--trace FILE | --traces DIR) [--abr RULES] [--baseline h265] --json OUT`

Streams the clip over network traces: measures its prompt ladder (one fitted stream transcoded
to every RANKxBITS rung, per-segment bytes and per-frame LPIPS, cached) and the H.265 ladder
at the same rates and the same closed-GOP segments, then plays both over every trace with
every ABR rule (throughput, bba, mpc) and prints one table: mean LPIPS shown, severe-frame
ratio, rebuffering, switches and two QoEs (docs/streaming.md). The clip loops over the trace.
SRC may be a fitted .plab (closed GOPs) with --original CLIP: its rungs are transcoded from it.
"""

from __future__ import annotations

import argparse
import json
import sys

from promptlab.cli.common import add_engine_args, add_settings_args, ray_options, settings_from_args
from promptlab.errors import PromptlabError
from promptlab.io.atomic import check_target, write_bytes_atomic
from promptlab.io.video import checked_count, parse_frames, probe
from promptlab.runs.records import Progress, Stage, TaskDone
from promptlab.stream.abr import RULES
from promptlab.stream.engine import Network, StreamSpec, run_stream
from promptlab.stream.ladder import LadderSpec, parse_rungs
from promptlab.stream.records import LaddersReady, RungMeasured, SessionDone, StreamDone
from promptlab.stream.simulator import POLICIES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="promptlab stream", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="video file or folder of numbered images, or a fitted .plab (with --original)")
    p.add_argument("--original", metavar="CLIP",
                   help="SRC is a .plab: the clip it was fitted to (what LPIPS and H.265 are measured on)")
    add_settings_args(p)
    p.add_argument("--trace", action="append", default=[], metavar="FILE",
                   help="a network trace (Mahimahi or 'time_s Mbps' lines); may be repeated")
    p.add_argument("--traces", action="append", default=[], metavar="DIR", help="every trace in this folder")
    p.add_argument("--abr", default=",".join(RULES), help=f"ABR rules, comma separated (default {','.join(RULES)})")
    p.add_argument("--rungs", default=None, metavar="RxB,…",
                   help="prompt rungs as RANKxBITS (default: ranks halving from --rank at --bits, and 1x2)")
    p.add_argument("--baseline", default="h265", choices=("h265", "h264", "none"),
                   help="the classical ladder at the prompt rungs' rates (default h265)")
    p.add_argument("--scale", type=float, default=None,
                   help="trace capacity × K (default: auto, mean capacity = the top prompt rung's rate)")
    p.add_argument("--offset-kbps", type=float, default=0.0, help="added to the capacity after scaling")
    p.add_argument("--stretch", type=float, default=1.0, help="trace time × S")
    p.add_argument("--rtt", type=float, default=0.08, help="round-trip time per request, s (default 0.08)")
    p.add_argument("--startup", type=float, default=1.0, help="video buffered before playback starts, s (default 1)")
    p.add_argument("--max-buffer", type=float, default=10.0, help="client buffer, s (default 10)")
    p.add_argument("--policy", default="wait", choices=POLICIES, help="a late segment: wait (stall) or skip")
    p.add_argument("--duration", type=float, default=None, help="session length, s (default: the trace's)")
    p.add_argument("--json", metavar="OUT.json", help="ladders, every session's segments, frames and summary")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_engine_args(p)
    return p


def spec_from_args(a: argparse.Namespace) -> StreamSpec:
    if not a.trace and not a.traces:
        raise PromptlabError("give --trace FILE or --traces DIR")
    rules = [r.strip() for r in a.abr.split(",") if r.strip()]
    fitted = a.source if a.source.lower().endswith(".plab") else None
    if fitted and not a.original:
        raise PromptlabError("a .plab alone has no original to measure LPIPS and H.265 on: "
                             "give --original CLIP (the clip it was fitted to)")
    if a.original and not fitted:
        raise PromptlabError("--original is for a .plab SRC (SRC is the clip here)")
    clip = a.original or a.source
    if fitted:  # the stream's own settings (its header), runtime flags (threads, device) from the command
        from promptlab.codec.container import read_header

        settings = read_header(fitted).to_settings(settings_from_args(a))
    else:
        settings = settings_from_args(a)
        if a.fps is None:
            settings = settings.replace(fps=probe(clip).fps)
    frames = parse_frames(a.frames)
    n, notes = checked_count(clip, frames)
    for note in notes:
        print(f"promptlab stream: note: {note}", file=sys.stderr)
    start = frames[0] if frames else 0
    ladder = LadderSpec(settings=settings, source=clip, frames=(start, start + n), stream=fitted,
                        rungs=parse_rungs(a.rungs) if a.rungs else [],
                        baseline=None if a.baseline == "none" else a.baseline)
    net = Network(scale=a.scale, offset_bps=a.offset_kbps * 1000, stretch=a.stretch, rtt_s=a.rtt,
                  startup_s=a.startup, max_buffer_s=a.max_buffer, policy=a.policy, duration_s=a.duration)
    spec = StreamSpec(ladder=ladder, traces=[*a.trace, *a.traces], rules=rules, network=net, engine=a.engine,
                      ray=ray_options(a))
    spec.check()
    return spec


def main(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    if a.json:
        check_target(a.json, a.force)
    spec = spec_from_args(a)
    from tqdm import tqdm

    bar = tqdm(total=1000, file=sys.stderr, disable=a.quiet, bar_format="{l_bar}{bar}| {elapsed}")
    ladders: LaddersReady | None = None
    sessions: list[SessionDone] = []
    rows: list[dict] = []
    try:
        for rec in run_stream(spec):
            if isinstance(rec, Progress):
                bar.n = int(rec.fraction * 1000)
                bar.set_description_str(rec.text[:60], refresh=True)
            elif isinstance(rec, Stage):
                bar.set_description_str(rec.text[:60], refresh=True)
            elif isinstance(rec, RungMeasured) and not a.quiet:
                r = rec.rung
                tqdm.write(f"{r.codec} rung {r.label}: {r.kbps:.2f} kbps, mean LPIPS {sum(r.frame_lpips) / len(r.frame_lpips):.4f}"
                           f"{' (from the results cache)' if rec.reused else ''}", file=sys.stderr)
            elif isinstance(rec, TaskDone) and not a.quiet:
                bar.set_description_str(f"ray: {rec.done}/{rec.total} sessions", refresh=True)
            elif isinstance(rec, LaddersReady):
                ladders = rec
            elif isinstance(rec, SessionDone):
                sessions.append(rec)
            elif isinstance(rec, StreamDone):
                rows = rec.rows
    finally:
        bar.close()
    print(table(rows))
    if a.json:
        assert ladders is not None
        doc = {"source": a.source, "frames_range": list(spec.ladder.frames), "settings": spec.ladder.settings.to_dict(),
               "network": {k: v for k, v in vars(spec.network).items()},
               "ladders": {"promptlab": ladders.prompt.to_dict(),
                           "baseline": ladders.baseline.to_dict() if ladders.baseline else None},
               "sessions": [s.to_dict() for s in sessions], "table": rows}
        write_bytes_atomic(a.json, (json.dumps(doc) + "\n").encode())
    return 0


COLUMNS = (("trace", "trace", "{}"), ("codec", "codec", "{}"), ("rule", "rule", "{}"), ("scale", "scale", "{:.3g}"),
           ("mean_lpips_shown", "LPIPS shown", "{:.4f}"), ("severe_ratio", "severe", "{:.3f}"),
           ("rebuffer_s", "rebuf s", "{:.2f}"), ("rebuffer_count", "stalls", "{}"), ("startup_s", "startup s", "{:.2f}"),
           ("switches", "switches", "{}"), ("qoe_perceptual", "QoE (1-LPIPS)", "{:.1f}"),
           ("qoe_pensieve", "QoE Pensieve", "{:.2f}"))


def table(rows: list[dict]) -> str:
    """A plain-text table (one row per trace × codec × rule), columns as docs/streaming.md shows them."""
    cells = [[head for _, head, _ in COLUMNS]] + [[fmt.format(r[k]) for k, _, fmt in COLUMNS] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells)
