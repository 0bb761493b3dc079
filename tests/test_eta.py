"""The run's ETA (`Progress.eta_s`): predicted from this run's measured unit costs, under a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlab.runs.eta import DECODE_FRAME, ENCODE_FRAME, ITERATION, Eta
from promptlab.runs.lab import RunSpec, run_lab
from promptlab.runs.records import FrameResult, Progress, Started
from promptlab.settings import Settings


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_eta_is_units_left_times_measured_cost_and_does_not_jump_when_the_mix_changes() -> None:
    clock = FakeClock()
    eta = Eta(clock)
    assert eta.remaining(**{ITERATION: 10}) is None       # nothing measured: unknown, not a guess
    assert eta.remaining(**{ITERATION: 0}) == 0.0           # nothing left costs nothing
    for _ in range(4):                                      # iterations cost 0.5 s
        clock.now += 0.5
        eta.charge(ITERATION)
    assert eta.cost(ITERATION) == pytest.approx(0.5)
    assert eta.remaining(**{ITERATION: 6}) == pytest.approx(3.0)
    assert eta.remaining(**{ITERATION: 6, ENCODE_FRAME: 5}) is None  # frames not measured yet
    clock.now += 0.1
    eta.charge(ENCODE_FRAME)                                # a frame costs 0.1 s
    # the receiver's frames borrow the encoder's frame cost until measured themselves
    assert eta.remaining(**{ENCODE_FRAME: 4, DECODE_FRAME: 10}) == pytest.approx(1.4)
    clock.now += 0.3
    eta.charge(DECODE_FRAME)
    assert eta.cost(DECODE_FRAME) == pytest.approx(0.3)
    # several units at once share the interval; a restart drops time that was not work
    clock.now += 50.0
    eta.restart()
    clock.now += 1.0
    eta.charge(ITERATION, 4)
    assert eta.cost(ITERATION) == pytest.approx((2.0 + 1.0) / 8)


def test_run_lab_eta_counts_down_the_work_left(tmp_path: Path, make_clip, ramp, monkeypatch) -> None:
    """Every clock reading is one second later: each measured unit then costs exactly 1 s, so the ETA
    must equal the units of work left (iterations, encoder frames, receiver frames) at every step."""
    monkeypatch.setenv("PROMPTLAB_CACHE_DIR", str(tmp_path / "cache"))
    clip = make_clip(tmp_path / "ramp.mkv", ramp(7, 64, 64))
    s = Settings(size=64, rank=2, interval=5, iters=2, first_iters=3, perceptual="none", fps=30.0)

    class Ticking:
        t = 0.0

        def __call__(self) -> float:
            self.t += 1.0
            return self.t

    recs = list(run_lab(RunSpec(settings=s, source=str(clip)), clock=Ticking()))
    prog = [r for r in recs if isinstance(r, Progress)]
    etas = [p.eta_s for p in prog]
    # keyframes cover frames 0, 1-5 and 6; until a frame's cost is measured (keyframe 1's fit)
    # the frames' share is unknown, so the ETA is too: None, never a guess
    first_frame = next(i for i, r in enumerate(recs) if isinstance(r, FrameResult))
    known = [isinstance(r, Progress) and r.eta_s is not None for r in recs]
    assert not any(known[:first_frame]) and all(p.eta_s is not None for p in recs[first_frame:]
                                                 if isinstance(p, Progress))
    # at keyframe 2's first iteration: 1 + 2 iterations, 6 encoder frames, 7 receiver frames left
    second = next(p for p in prog if p.text.startswith("keyframe 2/3 iteration 1/2"))
    assert second.eta_s == pytest.approx(3 + 6 + 7)
    later = [e for e in etas if e is not None]
    assert all(a >= b for a, b in zip(later, later[1:], strict=False))  # counts down, never jumps up
    dec = [p for p in prog if p.text.startswith("frame ")]
    assert [p.eta_s for p in dec] == pytest.approx([7 - i for i in range(1, 8)])
    assert etas[-1] == 0.0
    assert sum(isinstance(r, Started) for r in recs) == 2 and sum(isinstance(r, FrameResult) for r in recs) == 14
