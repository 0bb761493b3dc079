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
