"""Per-frame records and the summary of one streamed session (what the viewer saw)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from promptlab.settings import SEVERE_LPIPS
from promptlab.stream.simulator import Delivery

PENSIEVE_REBUFFER = 4.3  # Pensieve QoE: Σ Mbps − 4.3·rebuffer s − Σ|Δ Mbps|
PERCEPTUAL_REBUFFER = 4.3  # perceptual QoE: Σ (1 − LPIPS) − 4.3·rebuffer s − Σ|Δ(1 − LPIPS)|
SMOOTH = 1.0


@dataclass(frozen=True)
class ShownFrame:
    """One play-out frame: which clip frame the viewer saw (a stall/skip repeats the last)."""

    index: int
    segment: int
    clip_frame: int
    lpips: float
    severe: bool
    repeated: bool

    def to_dict(self) -> dict:
        return asdict(self)


def shown_frames(delivery: Delivery, frame_lpips: Sequence[Sequence[float]], seg_frames: int,
                 clip_frames: int) -> list[ShownFrame]:
    """frame_lpips[r][f]: LPIPS of clip frame f at rung r; segments loop over the clip."""
    out: list[ShownFrame] = []
    last: tuple[int, float] | None = None
    for s in delivery.segments:
        for j in range(seg_frames):
            f = (s.index * seg_frames + j) % clip_frames
            if s.skipped and last is not None:
                cf, lp, rep = last[0], last[1], True
            else:
                cf, lp, rep = f, float(frame_lpips[s.rung][f]), False
                last = (cf, lp)
            out.append(ShownFrame(len(out), s.index, cf, lp, lp > SEVERE_LPIPS, rep))
    return out


def playout_times(delivery: Delivery, seg_s: float, seg_frames: int) -> list[float]:
    """Wall-clock second at which each shown frame appears: playback starts at the start-up
    delay with segment 0, and every stall delays all frames after it."""
    out: list[float] = []
    stalled = 0.0
    for s in delivery.segments:
        stalled += s.stall_s
        base = delivery.startup_s + s.index * seg_s + stalled
        out += [base + j * seg_s / seg_frames for j in range(seg_frames)]
    return out


def summarize(delivery: Delivery, frames: list[ShownFrame], seg_s: float,
              seg_quality: Sequence[Sequence[float]]) -> dict:
    segs = delivery.segments
    mbps = [s.bytes * 8 / seg_s / 1e6 for s in segs]
    q = [seg_quality[s.index][s.rung] for s in segs]
    switches = sum(1 for a, b in zip(segs, segs[1:]) if a.rung != b.rung)
    return {
        "mean_lpips_shown": sum(f.lpips for f in frames) / max(len(frames), 1),
        "severe_ratio": sum(f.severe for f in frames) / max(len(frames), 1),
        "severe_lpips": SEVERE_LPIPS,
        "rebuffer_s": delivery.rebuffer_s,
        "rebuffer_count": delivery.rebuffer_count,
        "startup_s": delivery.startup_s,
        "switches": switches,
        "bytes": sum(s.bytes for s in segs),
        "qoe_perceptual": sum(q) - PERCEPTUAL_REBUFFER * delivery.rebuffer_s
        - SMOOTH * sum(abs(a - b) for a, b in zip(q, q[1:])),
        "qoe_pensieve": sum(mbps) - PENSIEVE_REBUFFER * delivery.rebuffer_s
        - SMOOTH * sum(abs(a - b) for a, b in zip(mbps, mbps[1:])),
        "qoe_weights": {"rebuffer": PENSIEVE_REBUFFER, "smooth": SMOOTH},
    }


# ------------------------------------------------------------------------------ the measured ladder

@dataclass(frozen=True)
class Rung:
    """One rate of a ladder: bytes of every segment and LPIPS of every frame, both measured.

    `key` names the results-cache entry (runs/results.py) holding its stream or baseline
    frames and reconstruction, so what a viewer saw can be played back.
    """

    codec: str                    # "promptlab" | "h265" | "h264"
    label: str                    # "r8 b3" | "h265 7.1 kbps"
    kbps: float                   # every byte of the segments over the clip's duration
    segment_bytes: list[int]
    frame_lpips: list[float]
    key: str
    rank: int | None = None
    bits: int | None = None
    target_kbps: float | None = None   # a baseline rung: the rate it was asked for
    within_tolerance: bool = True      # a baseline rung: whether the encoder got there

    def segment_lpips(self, seg_frames: int) -> list[float]:
        f = self.frame_lpips
        return [sum(f[i:i + seg_frames]) / len(f[i:i + seg_frames]) for i in range(0, len(f), seg_frames)]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Ladder:
    """Rungs of one codec, cheapest first, cut at the same closed-GOP segments of one clip."""

    codec: str
    seg_frames: int
    fps: float
    rungs: list[Rung]

    @property
    def seg_s(self) -> float:
        return self.seg_frames / self.fps

    @property
    def n_frames(self) -> int:
        return len(self.rungs[0].frame_lpips)

    @property
    def n_segments(self) -> int:
        return len(self.rungs[0].segment_bytes)

    def sizes(self, n: int) -> list[list[int]]:
        """Bytes of n segments (the clip looped) at each rung: sizes[i][r]."""
        return [[r.segment_bytes[i % self.n_segments] for r in self.rungs] for i in range(n)]

    def quality(self, n: int) -> list[list[float]]:
        """1 − mean LPIPS of each of n segments (looped) at each rung: what the ABR and QoE weigh."""
        per = [r.segment_lpips(self.seg_frames) for r in self.rungs]
        return [[1.0 - p[i % self.n_segments] for p in per] for i in range(n)]

    def frame_lpips(self) -> list[list[float]]:
        return [r.frame_lpips for r in self.rungs]

    def to_dict(self) -> dict:
        return {"codec": self.codec, "seg_frames": self.seg_frames, "fps": self.fps,
                "seg_s": self.seg_s, "rungs": [r.to_dict() for r in self.rungs]}

    @classmethod
    def from_dict(cls, d: dict) -> Ladder:
        return cls(d["codec"], d["seg_frames"], d["fps"], [Rung(**r) for r in d["rungs"]])


@dataclass(frozen=True)
class RungMeasured:
    """A rung of a ladder is measured (or was found in the results cache)."""

    rung: Rung
    index: int
    total: int
    reused: bool


@dataclass(frozen=True)
class LaddersReady:
    """Both ladders of the clip: prompts and (when asked) the classical codec."""

    prompt: Ladder
    baseline: Ladder | None


# ------------------------------------------------------------------------------ streamed sessions

@dataclass(frozen=True)
class TraceMapped:
    """A trace as the sessions that follow see it: capacity per step after the mapping."""

    name: str
    step_s: float
    rate_kbps: list[float]
    mapping: dict


@dataclass(frozen=True)
class SessionDone:
    """One codec over one trace with one ABR rule: what was sent and what the viewer saw."""

    codec: str
    trace: str
    rule: str
    mapping: dict                 # Trace.mapping(): trace, scale, offset, stretch, duration, mean kbps
    delivery: Delivery
    frames: list[ShownFrame]
    summary: dict

    def to_dict(self) -> dict:
        cols = ("segment", "clip_frame", "lpips", "severe", "repeated")
        return {"codec": self.codec, "trace": self.trace, "rule": self.rule, "mapping": self.mapping,
                "summary": self.summary, **self.delivery.to_dict(),
                "frames": {c: [getattr(f, c) for f in self.frames] for c in cols}}

    def row(self) -> dict:
        """The table's row: the session's identity and its summary numbers."""
        return {"codec": self.codec, "trace": self.trace, "rule": self.rule, "scale": self.mapping["scale"],
                **{k: v for k, v in self.summary.items() if k != "qoe_weights"}}


@dataclass(frozen=True)
class StreamDone:
    """Every session ran: the table, one row per (trace, codec, rule)."""

    rows: list[dict]
