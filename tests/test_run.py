"""`promptlab run`: the lab's run headless, the same records the GUI plots, cached like the GUI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptlab.cli.main import main
from promptlab.codec.container import read_stream
from promptlab.runs.lab import RunSpec, run_lab
from promptlab.runs.records import FrameResult, Saved, Scoring, Started, Summary
from promptlab.settings import Settings

FLAGS = ["--size", "64", "--rank", "2", "--interval", "5", "--iters", "2", "--first-iters", "3",
         "--perceptual", "none", "--quiet"]


@pytest.fixture
def clip(tmp_path: Path, make_clip, ramp) -> Path:
    return make_clip(tmp_path / "ramp.mkv", ramp(11, 64, 64))


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("PROMPTLAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_run_writes_frames_summary_and_baseline(clip: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run.json"
    assert main(["run", str(clip), *FLAGS, "--baseline", "h265", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    frames, summary, base = doc["frames"], doc["summary"], doc["baseline"]
    assert [f["index"] for f in frames] == list(range(11))
    for f in frames:
        assert f["stage"] == "decode" and f["bytes"] > 0 and f["gen_ms"] > 0
        assert 0 <= f["lpips"] <= 1 and f["psnr"] > 5 and -1 <= f["ssim"] <= 1
    # the summary is the means of the rows and counts every byte of the cached stream
    assert summary["psnr"] == pytest.approx(sum(f["psnr"] for f in frames) / 11)
    assert summary["lpips"] == pytest.approx(sum(f["lpips"] for f in frames) / 11)
    assert sum(f["bytes"] for f in frames) == pytest.approx(summary["total_bytes"])
    streams = list((tmp_path / "cache").rglob("stream.plab"))
    assert len(streams) == 1 and streams[0].stat().st_size == summary["total_bytes"]
    assert summary["kbps"] == pytest.approx(summary["total_bytes"] * 8 / (11 / 30) / 1000)
    assert base["method"] == "h265" and len(base["frames"]) == 11 and base["kbps"] > 0
    assert sum(f["bytes"] for f in base["frames"]) == base["total_bytes"]
    first = capsys.readouterr().out
    assert "promptlab:" in first and "h265:" in first and "results cache" not in first
    # the same settings again: served from the results cache, the same numbers
    again = tmp_path / "again.json"
    assert main(["run", str(clip), *FLAGS, "--json", str(again)]) == 0
    assert "(from the results cache)" in capsys.readouterr().out
    assert json.loads(again.read_text())["frames"] == frames


def test_run_service_records_in_order(clip: Path) -> None:
    s = Settings(size=64, rank=2, interval=5, iters=2, first_iters=3, perceptual="none", fps=30.0)
    recs = list(run_lab(RunSpec(settings=s, source=str(clip), maps=True)))
    assert isinstance(recs[0], Scoring) and recs[0].measured
    stages = [r.stage for r in recs if isinstance(r, FrameResult)]
    assert stages == ["encode"] * 11 + ["decode"] * 11  # every frame as it is generated
    dec = [r for r in recs if isinstance(r, FrameResult) and r.stage == "decode"]
    assert all(r.lpips_map is not None and r.lpips_map.shape == (64, 64) for r in dec)
    summary = next(r for r in recs if isinstance(r, Summary))
    assert summary.method == "promptlab" and summary.n_frames == 11
    assert isinstance(recs[-1], Saved)
    started = [r for r in recs if isinstance(r, Started)]
    assert [r.job for r in started] == ["encode", "decode"]
    stream = read_stream(Path(recs[-1].path) / "stream.plab")
    assert stream.header.rank == 2 and stream.total_bytes == summary.total_bytes


def test_a_stream_alone_is_decoded_but_not_measured(clip: Path, tmp_path: Path) -> None:
    s = Settings(size=64, rank=2, interval=5, iters=2, first_iters=3, perceptual="none", fps=30.0)
    saved = [r for r in run_lab(RunSpec(settings=s, source=str(clip))) if isinstance(r, Saved)][0]
    recs = list(run_lab(RunSpec(settings=s, stream=str(Path(saved.path) / "stream.plab"))))
    assert isinstance(recs[0], Scoring) and not recs[0].measured and "no original" in recs[0].message
    rows = [r for r in recs if isinstance(r, FrameResult)]
    assert len(rows) == 11 and all(r.psnr is None and r.lpips is None for r in rows)


def test_run_refuses_bad_input_in_one_line(clip: Path, tmp_path: Path, capsys) -> None:
    assert main(["run", str(tmp_path / "missing.mp4"), *FLAGS]) == 2
    assert main(["run", str(clip), *FLAGS, "--frames", "50:60"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("promptlab run: error") == 2


@pytest.mark.slow
def test_a_stored_result_is_reused_only_when_it_would_not_differ(clip: Path, tmp_path: Path) -> None:
    import json as json_

    from promptlab.runs.records import Reused

    s = Settings(size=64, rank=2, interval=5, iters=2, first_iters=3, perceptual="none", fps=30.0)
    first = list(run_lab(RunSpec(settings=s, source=str(clip))))
    saved = next(r for r in first if isinstance(r, Saved))
    assert isinstance(list(run_lab(RunSpec(settings=s, source=str(clip))))[0], Reused)
    # another cache policy: the timings would differ, so the stored stream is decoded again (no encode)
    other = list(run_lab(RunSpec(settings=s.replace(cache="lossless"), source=str(clip))))
    assert not any(isinstance(r, Reused) for r in other)
    assert not any(isinstance(r, FrameResult) and r.stage == "encode" for r in other)
    # a result stored in another layout (the window's, an older version) is redone, never misread
    meta = Path(saved.path) / "metrics.json"
    doc = json_.loads(meta.read_text())
    doc["summary"] = {"mean_lpips": 0.5, "cache": "none"}
    meta.write_text(json_.dumps(doc))
    again = list(run_lab(RunSpec(settings=s, source=str(clip))))
    assert not any(isinstance(r, Reused) for r in again) and any(isinstance(r, Summary) for r in again)


def test_run_says_when_the_perceptual_term_falls_back(clip: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """The default `vgg` needs VGG-19's file; without it the fit uses MS-SSIM, and the run says so."""
    from promptlab.engine import losses

    monkeypatch.setattr(losses, "vgg19_path", lambda: tmp_path / "no-vgg19.pth")
    flags = [f for f in FLAGS if f not in ("--perceptual", "none")]
    assert main(["run", str(clip), *flags, "--iters", "1", "--first-iters", "1", "--frames", "0:3"]) == 0
    err = capsys.readouterr().err
    assert "perceptual term 'vgg' has no weights here; the fit uses 'ms-ssim'" in err
    assert main(["run", str(clip), *FLAGS, "--frames", "0:3"]) == 0
    assert "perceptual term" not in capsys.readouterr().err  # none asked, none reported
