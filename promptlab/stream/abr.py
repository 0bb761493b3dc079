"""ABR rules: throughput (harmonic mean), BBA (buffer map), RobustMPC (lookahead on quality).

Each rule is a chooser for `simulator.simulate`: (segment index, history, buffer s) -> rung.
Rungs are ordered from the cheapest (0) up; `sizes[i][r]` are the segment's bytes at rung r
and `quality[i][r]` its measured quality (1 − LPIPS) used by RobustMPC.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from promptlab.errors import PromptlabError
from promptlab.stream.simulator import Chooser, SegmentRecord

RULES = ("throughput", "bba", "mpc")
HARMONIC_WINDOW = 5
BBA_RESERVOIR_S = 2.0
BBA_CUSHION_S = 6.0
MPC_HORIZON = 3
MPC_REBUFFER_PENALTY = 4.3
MPC_SMOOTH_PENALTY = 1.0


def harmonic_mean(history: list[SegmentRecord], window: int = HARMONIC_WINDOW) -> float | None:
    xs = [h.throughput_bps for h in history[-window:] if h.throughput_bps > 0]
    return len(xs) / sum(1 / x for x in xs) if xs else None


def _highest_fitting(row: Sequence[int], seg_s: float, bps: float) -> int:
    best = 0
    for r, n in enumerate(row):
        if n * 8 / seg_s <= bps:
            best = r
    return best


def make_rule(rule: str, sizes: Sequence[Sequence[int]], quality: Sequence[Sequence[float]],
              seg_s: float, rtt_s: float = 0.08) -> Chooser:
    if rule not in RULES:
        raise PromptlabError(f"unknown ABR rule {rule!r}; choose from {', '.join(RULES)}")

    def throughput(i: int, hist: list[SegmentRecord], buf: float) -> int:
        est = harmonic_mean(hist)
        return 0 if est is None else _highest_fitting(sizes[i], seg_s, est)

    def bba(i: int, hist: list[SegmentRecord], buf: float) -> int:
        n = len(sizes[i])
        if buf <= BBA_RESERVOIR_S:
            return 0
        if buf >= BBA_RESERVOIR_S + BBA_CUSHION_S:
            return n - 1
        frac = (buf - BBA_RESERVOIR_S) / BBA_CUSHION_S
        return min(n - 1, int(frac * n))

    errors: list[float] = []

    def mpc(i: int, hist: list[SegmentRecord], buf: float) -> int:
        est = harmonic_mean(hist)
        if est is None:
            return 0
        if len(hist) >= 2:  # error of the prediction made before the last segment
            prev = harmonic_mean(hist[:-1])
            if prev:
                errors.append(abs(prev - hist[-1].throughput_bps) / hist[-1].throughput_bps)
        robust = est / (1 + max(errors[-HARMONIC_WINDOW:], default=0.0))
        last = hist[-1].rung
        horizon = min(MPC_HORIZON, len(sizes) - i)
        best, best_score = 0, float("-inf")
        for plan in itertools.product(range(len(sizes[i])), repeat=horizon):
            b, score, prev_r = buf, 0.0, last
            for k, r in enumerate(plan):
                dl = rtt_s + sizes[i + k][r] * 8 / robust
                stall = max(0.0, dl - b)
                b = max(b - dl, 0.0) + seg_s
                q = quality[i + k][r]
                score += q - MPC_REBUFFER_PENALTY * stall - MPC_SMOOTH_PENALTY * abs(
                    q - quality[i + k][prev_r])
                prev_r = r
            if score > best_score:
                best, best_score = plan[0], score
        return best

    return {"throughput": throughput, "bba": bba, "mpc": mpc}[rule]
