"""The slider preview path: a fitted stream transcoded / re-keyed and decoded, never fitted."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlab.codec.container import read_stream
from promptlab.runs.lab import RunSpec, run_lab
from promptlab.runs.preview import PREVIEW, PreviewSpec, preview
from promptlab.runs.records import FrameResult, Stage, Summary
from promptlab.settings import Settings

BASE = Settings(size=64, rank=4, interval=5, iters=2, first_iters=3, perceptual="none", fps=30.0)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, Path]:
    """A clip and the stream the lab fitted for it (rank 4, interval 5, 11 frames), fitted once."""
    from conftest import ramp_frames, write_clip

    tmp = tmp_path_factory.mktemp("fitted")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTLAB_CACHE_DIR", str(tmp / "cache"))
        clip = write_clip(tmp / "ramp.mkv", ramp_frames(11, 64, 64))
        list(run_lab(RunSpec(settings=BASE, source=str(clip))))
    (stream,) = (tmp / "cache").rglob("stream.plab")
    return clip, stream


@pytest.fixture(autouse=True)
def _dirs(lab_dirs):
    return lab_dirs


@pytest.mark.parametrize("change", [{"rank": 2}, {"bits": 4}, {"interval": 10}, {"interval": 2}])
def test_preview_runs_no_optimiser_step_and_yields_the_run_services_records(fitted, monkeypatch, change) -> None:
    import torch

    from promptlab.engine import inverter

    def no_fit(*a, **k):
        raise AssertionError("the preview path must not fit")

    class NoAdam:
        def __init__(self, *a, **k):
            raise AssertionError("the preview path must not build an optimiser")

    monkeypatch.setattr(inverter, "fit_segment", no_fit)
    monkeypatch.setattr(torch.optim, "Adam", NoAdam)
    clip, stream = fitted
    settings = BASE.replace(**change)
    recs = list(preview(PreviewSpec(str(stream), settings, source=str(clip))))
    frames = [r for r in recs if isinstance(r, FrameResult)]
    (summary,) = [r for r in recs if isinstance(r, Summary)]
    assert [r.stage for r in recs if isinstance(r, Stage)] == ["preview"]
    assert [f.index for f in frames] == list(range(11)) and all(f.stage == "preview" for f in frames)
    assert all(f.psnr is not None and f.image.shape == (64, 64, 3) for f in frames)
    assert summary.method == PREVIEW and summary.extra["preview"] is True
    want = {"rank": 4, "bits": 8, "interval": 5} | change
    assert {k: summary.extra[k] for k in want} == want
    fitted_bytes = stream.stat().st_size
    if change in ({"rank": 2}, {"bits": 4}, {"interval": 10}):
        assert summary.total_bytes < fitted_bytes  # fewer bits, every byte counted
    else:
        assert summary.total_bytes > fitted_bytes  # more keyframes


def test_preview_caps_the_rank_at_the_fitted_streams_and_follows_a_target_rate(fitted) -> None:
    clip, stream = fitted
    up = BASE.replace(rank=8)
    (s,) = [r for r in preview(PreviewSpec(str(stream), up, source=str(clip))) if isinstance(r, Summary)]
    assert s.extra["rank"] == read_stream(stream).header.rank == 4
    full = s.kbps
    (t,) = [r for r in preview(PreviewSpec(str(stream), BASE, kbps=0.75 * full, source=str(clip)))
            if isinstance(r, Summary)]
    assert t.kbps <= 0.75 * full and t.extra["rank"] < 4
