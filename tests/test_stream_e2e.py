"""End to end: a short real clip → measured prompt and H.265 ladders → every ABR rule over a real
trace → JSON records checked against each other and against the stored streams (issue #27).

Tiny settings (the seeded random tiny model, 64 px, 8 frames, 2 segments, a few iterations):
the numbers are not quality claims, the invariants are what is tested.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from promptlab.cli import stream as stream_cli
from promptlab.cli.main import main as cli_main
from promptlab.codec.container import read_stream
from promptlab.runs.results import ResultsCache
from promptlab.stream.abr import RULES
from promptlab.stream.engine import run_stream
from promptlab.stream.ladder import segment_bytes
from promptlab.stream.records import LaddersReady, RungMeasured, SessionDone, StreamDone

REPO = Path(__file__).resolve().parents[1]
SKY = REPO / "promptlab" / "assets" / "sky.mp4"
ATT = REPO / "tests" / "data" / "traces" / "ATT-LTE-driving-2016.down"
ARGS = [str(SKY), "--model", "tiny", "--size", "64", "--rank", "4", "--bits", "4", "--interval", "2", "--gop", "4",
        "--frames", "0:8", "--iters", "2", "--first-iters", "4", "--init-mode", "q6", "--threads", "1",
        "--trace", str(ATT), "--duration", "12", "--quiet"]


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    """run_stream's records for ARGS, with the results cache in a temporary folder."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("stream-cache")
    mp.setenv("PROMPTLAB_CACHE_DIR", str(cache))
    spec = stream_cli.spec_from_args(stream_cli.parser().parse_args(ARGS))
    recs = list(run_stream(spec))
    yield spec, recs, cache
    mp.undo()


def test_ladders_are_measured_at_the_same_segments(streamed):
    spec, recs, cache = streamed
    ready = next(r for r in recs if isinstance(r, LaddersReady))
    prompt, h265 = ready.prompt, ready.baseline
    assert h265 is not None and h265.codec == "h265"
    assert len(prompt.rungs) == len(spec.ladder.rung_list())
    assert 1 <= len(h265.rungs) <= len(prompt.rungs)  # identical streams (below H.265's floor) are one rung
    assert len({tuple(r.segment_bytes) for r in h265.rungs}) == len(h265.rungs)
    assert prompt.n_segments == h265.n_segments == 2 and prompt.n_frames == h265.n_frames == 8
    store = ResultsCache(cache / "results")
    for r in prompt.rungs:
        s = read_stream(store.path(r.key) / "stream.plab")
        assert (s.header.rank, s.header.bits, s.header.gop) == (r.rank, r.bits, 4)
        # every byte but the seek index, the header once per segment
        assert sum(r.segment_bytes) == s.total_bytes - s.index_bytes + (s.header.n_gops - 1) * s.header_bytes
        assert r.segment_bytes == segment_bytes(s)
        assert len(r.frame_lpips) == 8 and all(0 <= v <= 1 for v in r.frame_lpips)
        stored = json.loads((store.path(r.key) / "metrics.json").read_text())
        assert [f["lpips"] for f in stored["frames"]] == pytest.approx(r.frame_lpips)
    for b in h265.rungs:
        stored = json.loads((store.path(b.key) / "baseline.json").read_text())
        assert stored["summary"]["extra"]["gop"] == 4
        assert sum(b.segment_bytes) == stored["summary"]["total_bytes"]
        assert [f["lpips"] for f in stored["frames"]] == pytest.approx(b.frame_lpips)
    # prompt rungs cheapest first; more rank at the same bits never costs fewer bytes
    sizes = [sum(r.segment_bytes) for r in prompt.rungs]
    assert sizes == sorted(sizes)
    same_bits = sorted((r for r in prompt.rungs if r.bits == 4), key=lambda r: r.rank)
    assert [sum(r.segment_bytes) for r in same_bits] == sorted(sum(r.segment_bytes) for r in same_bits)
    # the top rung is the fitted stream itself (a transcode to its own rank and bits changes nothing)
    top = max(prompt.rungs, key=lambda r: (r.rank, r.bits))
    fitted = next(p for p in store.root.iterdir() if p.is_dir() and p.name not in {r.key for r in prompt.rungs}
                  and (p / "metrics.json").is_file())
    assert (fitted / "stream.plab").read_bytes() == (store.path(top.key) / "stream.plab").read_bytes()


def test_every_session_is_consistent(streamed):
    spec, recs, _ = streamed
    ready = next(r for r in recs if isinstance(r, LaddersReady))
    sessions = [r for r in recs if isinstance(r, SessionDone)]
    assert {(s.codec, s.rule) for s in sessions} == {(c, r) for c in ("promptlab", "h265") for r in RULES}
    for s in sessions:
        lad = ready.prompt if s.codec == "promptlab" else ready.baseline
        segs = s.delivery.segments
        n = len(segs)
        assert n == int(np.ceil(12 / lad.seg_s - 1e-9))
        sizes = lad.sizes(n)
        # bytes sent = the chosen rungs' sizes
        assert all(g.bytes == sizes[g.index][g.rung] for g in segs)
        assert s.summary["bytes"] == sum(sizes[g.index][g.rung] for g in segs)
        # shown frames = the clip's frames looped, each with its rung's measured LPIPS
        assert [f.clip_frame for f in s.frames] == [i % 8 for i in range(n * 4)]
        assert all(f.lpips == lad.rungs[segs[f.segment].rung].frame_lpips[f.clip_frame] for f in s.frames)
        assert s.summary["mean_lpips_shown"] == pytest.approx(np.mean([f.lpips for f in s.frames]))
        # stall time = the time the play-out clock waited for a segment after playback started
        k0 = next(i for i, g in enumerate(segs) if (i + 1) * lad.seg_s >= spec.network.startup_s - 1e-12) + 1
        start, stalled = segs[k0 - 1].arrival_s, 0.0
        assert s.delivery.startup_s == pytest.approx(start)
        for i in range(k0, n):
            due = start + i * lad.seg_s + stalled
            stall = max(0.0, segs[i].arrival_s - due)
            assert segs[i].stall_s == pytest.approx(stall, abs=1e-9)
            stalled += stall
        assert s.summary["rebuffer_s"] == pytest.approx(stalled, abs=1e-9)
        assert s.mapping["scale"] == pytest.approx(ready.prompt.rungs[-1].kbps * 1000 / 4556602.83, rel=1e-4)
    done = recs[-1]
    assert isinstance(done, StreamDone) and len(done.rows) == len(sessions)
    assert len([r for r in recs if isinstance(r, RungMeasured)]) == 2 * len(spec.ladder.rung_list())
    for s in sessions:  # a switch is a change of rung, counted once per change
        segs = s.delivery.segments
        assert s.summary["switches"] == sum(a.rung != b.rung for a, b in zip(segs, segs[1:]))


def test_cli_json_and_table(streamed, tmp_path, capsys, monkeypatch):
    _, recs, cache = streamed
    monkeypatch.setenv("PROMPTLAB_CACHE_DIR", str(cache))
    out = tmp_path / "s.json"
    assert cli_main(["stream", *ARGS, "--abr", "mpc,bba", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "LPIPS shown" in table and table.count("ATT-LTE") == 4
    doc = json.loads(out.read_text())
    assert [(s["codec"], s["rule"]) for s in doc["sessions"]] == [
        ("promptlab", "mpc"), ("promptlab", "bba"), ("h265", "mpc"), ("h265", "bba")]
    live = {(s.codec, s.rule): s for s in recs if isinstance(s, SessionDone)}
    for s in doc["sessions"]:
        assert s["summary"] == live[(s["codec"], s["rule"])].summary  # from the cache, the same numbers
        assert len(s["frames"]["lpips"]) == 4 * len(s["segments"])
    assert doc["ladders"]["promptlab"]["seg_frames"] == 4


def test_a_fitted_plab_streams_like_its_clip(streamed, tmp_path, capsys, monkeypatch):
    """SRC a .plab (with --original): no fit, the same rungs, so the very same sessions."""
    _, recs, cache = streamed
    monkeypatch.setenv("PROMPTLAB_CACHE_DIR", str(cache))
    ready = next(r for r in recs if isinstance(r, LaddersReady))
    top = max(ready.prompt.rungs, key=lambda r: (r.rank, r.bits))
    fit = tmp_path / "fit.plab"
    fit.write_bytes((cache / "results" / top.key / "stream.plab").read_bytes())
    out = tmp_path / "plab.json"
    assert cli_main(["stream", str(fit), "--original", str(SKY), "--frames", "0:8", "--threads", "1",
                     "--trace", str(ATT), "--duration", "12", "--quiet", "--abr", "mpc", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    live = {(s.codec, s.rule): s for s in recs if isinstance(s, SessionDone)}
    assert [(s["codec"], s["rule"]) for s in doc["sessions"]] == [("promptlab", "mpc"), ("h265", "mpc")]
    for s in doc["sessions"]:
        assert s["summary"] == live[(s["codec"], "mpc")].summary
    capsys.readouterr()
    assert cli_main(["stream", str(fit), "--trace", str(ATT)]) == 2
    assert "give --original CLIP" in capsys.readouterr().err
    assert cli_main(["stream", str(fit), "--original", str(SKY), "--frames", "0:12", "--trace", str(ATT)]) == 2
    assert "holds 8 frames" in capsys.readouterr().err


@pytest.mark.parametrize("extra, needle", [
    (["--trace", "/nonexistent/trace.down"], "does not exist"),
    (["--abr", "fastest"], "unknown ABR rule"),
    (["--gop", "0"], "closed GOPs"),
    (["--frames", "0:6"], "whole number of 4-frame segments"),
    (["--rungs", "9x4"], "rank must be 1..4"),
    (["--scale", "-1"], "--scale must be positive"),
])
def test_bad_input_is_one_line(extra, needle, capsys, lab_dirs):
    assert cli_main(["stream", *ARGS, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_bad_trace_file_is_one_line(tmp_path, capsys, lab_dirs):
    bad = tmp_path / "bad.down"
    bad.write_text("10\n5\n")
    assert cli_main(["stream", *ARGS[:-5], "--trace", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.down line 2" in err and "\n" not in err


@pytest.mark.slow
def test_ray_engine_gives_the_local_numbers(streamed):
    """`--engine ray`: every session a Ray task on a local Ray; the same rows as the local loop."""
    pytest.importorskip("ray")
    from dataclasses import replace

    from promptlab.runs.distributed import RayOptions
    from promptlab.runs.records import TaskDone

    spec, recs, cache = streamed
    local = {(s.codec, s.rule): s for s in recs if isinstance(s, SessionDone)}
    mp = pytest.MonkeyPatch()
    mp.setenv("PROMPTLAB_CACHE_DIR", str(cache))
    try:
        ray_recs = list(run_stream(replace(spec, engine="ray", ray=RayOptions(workers=2))))
    finally:
        mp.undo()
    done = [r for r in ray_recs if isinstance(r, TaskDone)]
    assert len(done) == len(local) and done[-1].done == len(local)
    remote = [r for r in ray_recs if isinstance(r, SessionDone)]
    assert [(s.codec, s.rule) for s in remote] == list(local)
    for s in remote:
        twin = local[(s.codec, s.rule)]
        assert s.summary == twin.summary and s.delivery == twin.delivery and s.frames == twin.frames
    assert ray_recs[-1].rows == recs[-1].rows


@pytest.mark.parametrize("codec", ["h265", "h264"])
def test_baseline_closed_gops_decode_alone(codec):
    """gop=N: an IDR every N frames and each GOP's access units decode alone to the whole decode's frames."""
    from promptlab.baselines.h26x import decode_stream, encode_baseline
    from promptlab.io.video import read_frames

    frames = list(read_frames(str(SKY), frames=(0, 12), size=64, crop="center"))
    r = encode_baseline(frames, 30.0, 40, codec=codec, gop=4)
    assert [p.pts for p in r.packets if p.keyframe] == [0, 4, 8] and r.params["gop"] == 4
    for g in range(3):
        units = [p for p in r.packets if 4 * g <= p.pts < 4 * g + 4]
        alone = decode_stream(b"".join(p.data for p in units), codec, 4, 64, 64)
        assert all(np.array_equal(a, b) for a, b in zip(alone, r.recon[4 * g:4 * g + 4]))
        assert sum(len(p.data) for p in units) == sum(r.frame_bytes[4 * g:4 * g + 4])


def test_trace_folder_takes_every_trace_and_leaves_the_licence(tmp_path):
    from promptlab.errors import PromptlabError
    from promptlab.stream.engine import trace_files

    assert [p.name for p in trace_files(ATT.parent)] == [
        "ATT-LTE-driving-2016.down", "TMobile-UMTS-driving.down", "Verizon-EVDO-driving.down"]
    (tmp_path / "README.md").write_text("x")
    (tmp_path / "LICENSE").write_text("x")
    with pytest.raises(PromptlabError, match="holds no trace files"):
        trace_files(tmp_path)
    (tmp_path / "trace_1").write_text("0 1.5\n1 2.0\n")  # a cooked ABR trace, no suffix
    assert [p.name for p in trace_files(tmp_path)] == ["trace_1"]
