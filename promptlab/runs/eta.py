"""How long the rest of a run takes, predicted from what this run's work has cost so far.

A running extrapolation (elapsed × (1 − f) / f) jumps whenever the mix of work changes: a
fit's iterations and a decode's frames cost very different amounts per percent of the bar.
`Eta` instead charges every measured interval to the kind of work that ended it (an optimiser
iteration, a generated-and-scored frame) and predicts the rest as Σ remaining units × the mean
cost of a unit of that kind. The clock is injected, so tests drive it by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable

ITERATION = "iteration"          # one optimiser step of a keyframe's fit
ENCODE_FRAME = "encode_frame"    # the encoder regenerates and scores one frame
DECODE_FRAME = "decode_frame"    # the receiver generates and scores one frame
DRAFT_FRAME = "draft_frame"      # a first answer: one frame from the prompt encoder's guess, scored

# a kind not measured yet borrows the cost of one that costs the same work (the receiver runs
# the encoder's generator and the same scoring)
STAND_IN = {DECODE_FRAME: ENCODE_FRAME, ENCODE_FRAME: DECODE_FRAME, DRAFT_FRAME: ENCODE_FRAME}

Clock = Callable[[], float]


class Eta:
    """Measured cost per unit of each kind of work; seconds left for the work still to do."""

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self.clock = clock
        self.last = clock()
        self.spent: dict[str, float] = {}
        self.units: dict[str, int] = {}

    def restart(self) -> None:
        """Start the next interval now: what went before (loading a model, opening a file) is not work."""
        self.last = self.clock()

    def charge(self, kind: str, units: int = 1) -> None:
        """`units` of `kind` finished now: the time since the last charge (or restart) was theirs."""
        now = self.clock()
        if units > 0:
            self.spent[kind] = self.spent.get(kind, 0.0) + max(0.0, now - self.last)
            self.units[kind] = self.units.get(kind, 0) + units
        self.last = now

    def cost(self, kind: str) -> float | None:
        """Mean seconds per unit of `kind` in this run (a stand-in's when not measured yet)."""
        for k in (kind, STAND_IN.get(kind)):
            if k is not None and self.units.get(k):
                return self.spent[k] / self.units[k]
        return None

    def remaining(self, **left: int) -> float | None:
        """Seconds for the work left (kind=units); None while a kind with work left has no measured cost."""
        total = 0.0
        for kind, n in left.items():
            if n <= 0:
                continue
            c = self.cost(kind)
            if c is None:
                return None
            total += n * c
        return total
