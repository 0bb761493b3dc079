"""Seconds left in a run, from what its work has measurably cost so far.

A run is a few kinds of work units: an encode iteration, a decoded and scored frame. Each
kind's cost is the mean time per unit measured in this run (between consecutive units of that
kind), and the estimate is Σ units left × cost. A kind not yet measured is priced by a stand-in
cost when one is known (the encoder's own per-frame generation time stands for a decoded frame),
else left out; either way the estimate then says it is a lower bound. With nothing left that
has a measure or a stand-in there is no estimate.
The clock is injected, so tests run it on a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

ITERATION, FRAME = "iteration", "frame"


@dataclass
class Estimate:
    seconds: float
    lower_bound: bool   # some work was priced by a stand-in cost that leaves part of it out


@dataclass
class Eta:
    clock: Callable[[], float] = time.monotonic
    _spent: dict[str, float] = field(default_factory=dict)     # seconds measured per kind
    _units: dict[str, int] = field(default_factory=dict)       # units measured per kind
    _left: dict[str, int] = field(default_factory=dict)        # units still to do per kind
    _stand_in: dict[str, float] = field(default_factory=dict)  # seconds per unit before a kind is measured
    _last: dict[str, float] = field(default_factory=dict)      # when the previous unit of a kind ended

    def plan(self, kind: str, units_left: int) -> None:
        """How many units of `kind` remain (replaces the previous plan for it)."""
        self._left[kind] = max(0, int(units_left))

    def begin(self, kind: str) -> None:
        """The next unit of `kind` starts now (the first unit after a pause is timed from here)."""
        self._last[kind] = self.clock()

    def stand_in(self, kind: str, seconds_per_unit: float) -> None:
        self._stand_in[kind] = max(0.0, float(seconds_per_unit))

    def done(self, kind: str, n: int = 1) -> None:
        """`n` units of `kind` ended now: their time since the previous one is measured."""
        now = self.clock()
        start = self._last.get(kind)
        if start is not None and n > 0:
            self._spent[kind] = self._spent.get(kind, 0.0) + (now - start)
            self._units[kind] = self._units.get(kind, 0) + n
        self._last[kind] = now
        if kind in self._left:
            self._left[kind] = max(0, self._left[kind] - n)

    def cost(self, kind: str) -> float | None:
        """Measured seconds per unit of `kind` (None before any unit of it was timed)."""
        u = self._units.get(kind, 0)
        return self._spent[kind] / u if u else None

    def estimate(self) -> Estimate | None:
        total, bound, priced = 0.0, False, False
        for kind, left in self._left.items():
            if not left:
                continue
            c = self.cost(kind)
            if c is None:
                bound = True
                c = self._stand_in.get(kind)
                if c is None:
                    continue
            total, priced = total + left * c, True
        if not priced:
            return None if bound else Estimate(0.0, False)
        return Estimate(total, bound)
