"""Deterministic segment delivery over a trace: RTT, a client buffer, stalls, what is shown.

Segment i of `seg_s` seconds is requested when the previous one has arrived (and the buffer
has room below `max_buffer_s`); it arrives after one RTT plus its bytes over the trace's
capacity. Playback starts when `startup_s` of video is buffered; an empty buffer after that
is a stall. Policy "wait" waits for the late segment; "skip" drops a segment that arrives
after its play-out deadline and shows the last frame instead for its duration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from promptlab.errors import PromptlabError
from promptlab.stream.traces import Trace

POLICIES = ("wait", "skip")


@dataclass(frozen=True)
class SegmentRecord:
    """One segment: the rung chosen, its bytes and timing, the buffer and stall it caused."""

    index: int
    rung: int
    bytes: int
    request_s: float
    arrival_s: float
    download_s: float
    throughput_bps: float
    buffer_before_s: float
    buffer_after_s: float
    stall_s: float
    skipped: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Delivery:
    segments: list[SegmentRecord]
    startup_s: float
    rebuffer_s: float
    rebuffer_count: int

    def to_dict(self) -> dict:
        return {"startup_s": self.startup_s, "rebuffer_s": self.rebuffer_s,
                "rebuffer_count": self.rebuffer_count,
                "segments": [s.to_dict() for s in self.segments]}


# chooser(index, history, buffer_s) -> rung
Chooser = Callable[[int, list[SegmentRecord], float], int]


def simulate(trace: Trace, sizes: Sequence[Sequence[int]], seg_s: float, choose: Chooser,
             rtt_s: float = 0.08, startup_s: float = 1.0, max_buffer_s: float = 10.0,
             policy: str = "wait") -> Delivery:
    """sizes[i][r]: bytes of segment i at rung r. Returns per-segment records and stall totals."""
    if policy not in POLICIES:
        raise PromptlabError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    if seg_s <= 0 or max_buffer_s < seg_s or startup_s < 0:
        raise PromptlabError("need seg_s > 0, max_buffer_s >= seg_s and startup_s >= 0")
    t = 0.0
    buffer = 0.0
    playing = False
    start_at = None
    rebuffer = 0.0
    stalls = 0
    out: list[SegmentRecord] = []
    for i, row in enumerate(sizes):
        wait = max(0.0, buffer + seg_s - max_buffer_s) if playing else 0.0
        t += wait
        buffer -= wait
        rung = choose(i, out, buffer)
        if not 0 <= rung < len(row):
            raise PromptlabError(f"ABR chose rung {rung} of {len(row)}")
        n = int(row[rung])
        req = t
        arrive = trace.transfer_end(req + rtt_s, n)
        dl = arrive - req
        before = buffer
        stall = 0.0
        skipped = False
        if playing:
            if dl > buffer:
                late = dl - buffer
                if policy == "skip":
                    # played-out gap: last frame held for a segment; the segment is dropped
                    skipped = True
                    buffer = 0.0
                    stall = 0.0
                else:
                    stall = late
                    rebuffer += late
                    stalls += 1
                    buffer = 0.0
            else:
                buffer -= dl
            if not skipped:
                buffer += seg_s
        else:
            buffer += seg_s
            if buffer >= startup_s - 1e-12:
                playing = True
                start_at = arrive
        t = arrive
        out.append(SegmentRecord(i, rung, n, req, arrive, dl, n * 8 / max(dl - rtt_s, 1e-9),
                                 before, buffer, stall, skipped))
    if start_at is None:
        start_at = t
    return Delivery(out, start_at, rebuffer, stalls)
