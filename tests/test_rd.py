"""The RD view's core: a clip's runs from the results cache, the H.265 ladder (cached), the BD-rate."""

from __future__ import annotations

import pytest

from promptlab.io.video import read_frames
from promptlab.runs.lab import RunSpec, run_lab
from promptlab.runs.rd import RdPoint, bd_rates, cached_points, clip_id, ladder, ladder_targets
from promptlab.runs.records import Saved, Summary
from promptlab.runs.results import ResultsCache
from promptlab.settings import Settings

S = Settings(size=64, interval=4, iters=2, first_iters=2, perceptual="none", fps=30.0)


def _run(clip, cache, settings, frames=(0, 8)):
    recs = list(run_lab(RunSpec(settings=settings, source=str(clip), frames=frames, cache_root=str(cache.root))))
    return next(r for r in recs if isinstance(r, Saved)), next(r for r in recs if isinstance(r, Summary))


@pytest.mark.slow
def test_cached_points_are_the_runs_of_this_clip_labelled(sky_mp4, make_clip, tmp_path):
    frames = list(read_frames(sky_mp4, frames=(0, 10), size=64))
    clip = make_clip(tmp_path / "sky.mkv", frames)
    cache = ResultsCache(tmp_path / "results")
    runs = [_run(clip, cache, S.replace(rank=r)) for r in (2, 6)]
    _run(clip, cache, S.replace(rank=4), frames=(0, 6))             # other frames: another clip
    mine = clip_id(clip, S, (0, 8))
    pts = cached_points(cache, mine)
    assert [p.label for p in pts] == ["r2 k4", "r6 k4"]
    assert [p.key for p in pts] == [saved.key for saved, _ in runs]
    assert [(p.kbps, p.psnr, p.lpips) for p in pts] == [(s.kbps, s.psnr, s.lpips) for _, s in runs]
    assert pts[0].kbps < pts[1].kbps
    assert len(cached_points(cache, clip_id(clip, S, (0, 6)))) == 1
    assert cached_points(cache, clip_id(clip, S.replace(size=128), (0, 8))) == []


def test_ladder_spans_the_points_and_is_computed_once(sky_mp4, tmp_path, monkeypatch):
    originals = list(read_frames(sky_mp4, frames=(0, 8), size=64))
    cache = ResultsCache(tmp_path / "results")
    targets = ladder_targets([RdPoint("promptlab", 60.0, None, 10.0), RdPoint("promptlab", 240.0, None, 12.0)],
                             steps=3)
    assert targets == pytest.approx([30.0, 120.0, 480.0])
    rungs = ladder(originals, 30.0, targets, "clipA", cache)
    assert [p.method for p in rungs] == ["h265"] * 3
    assert all(abs(p.kbps / t - 1) < 0.25 for p, t in zip(rungs, targets))   # rate-controlled to the target
    assert rungs[0].psnr < rungs[1].psnr < rungs[2].psnr                      # more bits, better frames
    import promptlab.baselines

    monkeypatch.setattr(promptlab.baselines, "encode_baseline", lambda *a, **k: pytest.fail("encoded again"))
    assert ladder(originals, 30.0, targets, "clipA", cache) == rungs


def test_bd_rates_where_the_curves_overlap():
    anchor = [RdPoint("h265", 100.0 * 2**i, 0.4 - 0.1 * i, 20.0 + 3 * i) for i in range(4)]
    half = [RdPoint("promptlab", p.kbps / 2, p.lpips, p.psnr) for p in anchor]
    bd = bd_rates(half, anchor)
    assert bd["psnr"] == pytest.approx(-50.0, abs=1e-6) and bd["lpips"] == pytest.approx(-50.0, abs=1e-6)
    far = [RdPoint("promptlab", 50.0, 0.9, 5.0), RdPoint("promptlab", 80.0, 0.85, 6.0)]
    assert bd_rates(far, anchor) == {"psnr": None, "lpips": None}
    assert bd_rates([], anchor) == {"psnr": None, "lpips": None}
