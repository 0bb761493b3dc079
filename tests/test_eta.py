"""The run's ETA comes from this run's measured costs (runs/eta.py), checked on a fake clock."""

from __future__ import annotations

import pytest

from promptlab.runs.eta import FRAME, ITERATION, Eta


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def test_units_left_times_the_measured_cost_per_kind() -> None:
    clock = FakeClock()
    eta = Eta(clock)
    eta.plan(ITERATION, 10)
    eta.plan(FRAME, 4)
    assert eta.estimate() is None            # nothing measured, no stand-in: no guess
    eta.begin(ITERATION)
    for _ in range(2):
        clock.advance(0.5)
        eta.done(ITERATION)
    est = eta.estimate()
    assert eta.cost(ITERATION) == pytest.approx(0.5)
    assert est.seconds == pytest.approx(8 * 0.5) and est.lower_bound   # the frames are not priced yet
    eta.stand_in(FRAME, 0.25)                  # the encoder's own generation time per frame
    est = eta.estimate()
    assert est.seconds == pytest.approx(8 * 0.5 + 4 * 0.25) and est.lower_bound
    # an early stop drops the rest of the budget; then the frames are measured for real
    eta.plan(ITERATION, 0)
    eta.begin(FRAME)
    clock.advance(2.0)                        # a slow frame: the stand-in left out the scoring
    eta.done(FRAME)
    est = eta.estimate()
    assert est.seconds == pytest.approx(3 * 2.0) and not est.lower_bound


def test_a_pause_between_units_is_not_counted_as_work() -> None:
    clock = FakeClock()
    eta = Eta(clock)
    eta.plan(ITERATION, 3)
    eta.begin(ITERATION)
    clock.advance(1.0)
    eta.done(ITERATION)
    clock.advance(50.0)                       # e.g. a keyframe's frames generated between two fits
    eta.begin(ITERATION)
    clock.advance(1.0)
    eta.done(ITERATION)
    assert eta.cost(ITERATION) == pytest.approx(1.0)
    assert eta.estimate().seconds == pytest.approx(1.0)


def test_run_lab_reports_eta_from_its_clock(tmp_path) -> None:
    """The real run, timed by a fake clock that advances a fixed step per reading: its ETA is
    the units left times that measured step, so the last Progress says 0 s."""
    from promptlab.paths import sample_clip
    from promptlab.runs.lab import RunSpec, run_lab
    from promptlab.runs.records import Progress
    from promptlab.settings import Settings

    clock = FakeClock()

    def ticking() -> float:
        clock.advance(0.1)
        return clock()

    s = Settings(model="tiny", size=64, rank=2, interval=4, iters=3, first_iters=4, patience=50,
                 first_patience=50, perceptual="none", threads=1)
    spec = RunSpec(settings=s, source=str(sample_clip()), frames=(0, 5), cache_root=str(tmp_path))
    progress = [r for r in run_lab(spec, clock=ticking) if isinstance(r, Progress)]
    iterations = [p for p in progress if "iteration" in p.text]
    frames = [p for p in progress if p.text.startswith("frame ")]
    assert iterations and frames
    assert all(p.eta_s is not None and p.eta_s >= 0 for p in iterations[1:])
    assert all(p.eta_lower_bound for p in iterations)      # the decode is not measured yet
    assert frames[-1].eta_s == pytest.approx(0.0) and not frames[-1].eta_lower_bound
    # while decoding, the ETA is the frames left times the measured cost per frame
    left = [int(p.text.split()[1].split("/")[1]) - int(p.text.split()[1].split("/")[0]) for p in frames]
    per_frame = frames[1].eta_s / left[1] if left[1] else None
    assert per_frame is not None and per_frame > 0
    for p, k in zip(frames[1:], left[1:], strict=True):
        assert p.eta_s == pytest.approx(k * per_frame, rel=0.5)
