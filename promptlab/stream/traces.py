"""Network trace readers: Mahimahi delivery opportunities and `time_s throughput_Mbps` lines.

A trace is a piecewise-constant capacity (bits per second) over time that loops at its end.
The mapping (scale, offset, stretch) that fits it to a stream's rate range is part of the
trace, so every result can state it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from promptlab.errors import PromptlabError

MAHIMAHI_PACKET_BYTES = 1500


@dataclass(frozen=True)
class Trace:
    """Capacity rate[i] (bit/s) over [i*step_s, (i+1)*step_s); loops after duration_s."""

    name: str
    step_s: float
    rate_bps: np.ndarray
    scale: float = 1.0
    offset_bps: float = 0.0
    stretch: float = 1.0

    @property
    def duration_s(self) -> float:
        return self.step_s * len(self.rate_bps)

    def mapped(self, scale: float = 1.0, offset_bps: float = 0.0, stretch: float = 1.0) -> Trace:
        """Rate ×scale +offset (clipped at 0), time ×stretch; stated in the result."""
        if scale <= 0 or stretch <= 0:
            raise PromptlabError("trace scale and stretch must be positive")
        rate = np.maximum(self.rate_bps * scale + offset_bps, 0.0)
        if not rate.any():
            raise PromptlabError(f"trace {self.name}: no capacity left after scale/offset")
        return Trace(self.name, self.step_s * stretch, rate, self.scale * scale,
                     self.offset_bps * scale + offset_bps, self.stretch * stretch)

    def mapping(self) -> dict:
        return {"trace": self.name, "scale": self.scale, "offset_bps": self.offset_bps,
                "stretch": self.stretch, "duration_s": self.duration_s,
                "mean_kbps": float(self.rate_bps.mean() / 1000)}

    def capacity_at(self, t: float) -> float:
        """Capacity at time t (looping)."""
        i = int(math.floor(t / self.step_s)) % len(self.rate_bps)
        return float(self.rate_bps[i])

    def transfer_end(self, start_s: float, n_bytes: float) -> float:
        """When n_bytes sent from start_s have crossed the link (the trace loops)."""
        bits = n_bytes * 8.0
        t = start_s
        while bits > 0:
            i = int(math.floor(t / self.step_s + 1e-9))
            seg_end = (i + 1) * self.step_s
            rate = float(self.rate_bps[i % len(self.rate_bps)])
            room = rate * (seg_end - t)
            if room >= bits:
                return t + bits / rate
            bits -= room
            t = seg_end
        return t


def _fail(path: Path, line: int, why: str) -> PromptlabError:
    return PromptlabError(f"{path.name} line {line}: {why}")


def read_mahimahi(path: Path, step_s: float = 0.1) -> Trace:
    """Mahimahi: one ms timestamp per 1500-byte opportunity, non-decreasing; loops at the last."""
    times: list[int] = []
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        s = raw.strip()
        if not s:
            continue
        if not s.lstrip("-").isdigit():
            raise _fail(path, n, f"{s!r} is not a millisecond timestamp (Mahimahi format)")
        v = int(s)
        if v < 0:
            raise _fail(path, n, f"negative timestamp {v}")
        if times and v < times[-1]:
            raise _fail(path, n, f"time goes backwards ({v} after {times[-1]})")
        times.append(v)
    if not times:
        raise PromptlabError(f"{path.name}: empty trace")
    duration_ms = max(times[-1], 1)
    bins = max(1, math.ceil(duration_ms / (step_s * 1000)))
    counts = np.zeros(bins)
    for v in times:
        counts[min(int(v / (step_s * 1000)), bins - 1)] += 1
    rate = counts * MAHIMAHI_PACKET_BYTES * 8 / step_s
    return Trace(path.name, step_s, rate)


def read_throughput(path: Path) -> Trace:
    """`time_s throughput_Mbps` lines: rate holds from each time to the next; resampled to the
    smallest step (the last line's rate lasts one mean step)."""
    rows: list[tuple[float, float]] = []
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        if len(parts) != 2:
            raise _fail(path, n, f"expected 'time_s throughput_Mbps', got {s!r}")
        try:
            t, mbps = float(parts[0]), float(parts[1])
        except ValueError:
            raise _fail(path, n, f"non-numeric value in {s!r}") from None
        if not (math.isfinite(t) and math.isfinite(mbps)):
            raise _fail(path, n, f"non-finite value in {s!r}")
        if t < 0 or mbps < 0:
            raise _fail(path, n, f"negative value in {s!r}")
        if rows and t <= rows[-1][0]:
            raise _fail(path, n, f"time not increasing ({t} after {rows[-1][0]})")
        rows.append((t, mbps))
    if not rows:
        raise PromptlabError(f"{path.name}: empty trace")
    ts = np.array([r[0] for r in rows])
    rs = np.array([r[1] for r in rows]) * 1e6
    steps = np.diff(ts)
    step = float(steps.min()) if len(steps) else 1.0
    last = float(steps.mean()) if len(steps) else 1.0
    end = ts[-1] + last
    grid = np.arange(ts[0], end - 1e-9, step)
    idx = np.searchsorted(ts, grid + 1e-9, side="right") - 1
    return Trace(path.name, step, rs[idx])


def read_trace(path: str | Path) -> Trace:
    """Either format, told apart by the first data line (one integer: Mahimahi)."""
    p = Path(path)
    if not p.is_file():
        raise PromptlabError(f"trace {p} does not exist")
    first = next((ln.strip() for ln in p.read_text(errors="replace").splitlines()
                  if ln.strip() and not ln.startswith("#")), None)
    if first is None:
        raise PromptlabError(f"{p.name}: empty trace")
    parts = first.split()
    if len(parts) == 1:
        tr = read_mahimahi(p)
    elif len(parts) == 2:
        tr = read_throughput(p)
    else:
        raise PromptlabError(f"{p.name} line 1: unknown trace format "
                             "(want Mahimahi ms lines or 'time_s throughput_Mbps')")
    if not tr.rate_bps.any():
        raise PromptlabError(f"{p.name}: the trace has no capacity at all")
    return tr
