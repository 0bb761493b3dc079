"""The window's state without Qt: records in, what the window shows out; live and replayed alike."""

from __future__ import annotations

import numpy as np

from promptlab.engine.records import Started
from promptlab.gui.state import LabState
from promptlab.runs.lab import replay
from promptlab.runs.records import FrameResult, Progress, Scoring, Stage, Summary
from promptlab.runs.results import ResultsCache
from promptlab.settings import Settings


def _run(n: int = 3) -> list:
    """A run's records as run_lab yields them: encode frames first, then the decoder's, then the summaries."""
    img = np.zeros((8, 8, 3), np.uint8)
    recs: list = [Scoring(measured=True, lpips_available=True), Stage("encode", "fit"),
                  Started(job="encode", n_frames=n, n_keyframes=1, width=8, height=8, fps=30.0, model="m",
                          header_bytes=40, init_bytes=300)]
    recs += [FrameResult(index=i, stage="encode", bytes=1.0, lpips=0.9, image=img) for i in range(n)]
    recs += [Progress(0.8, "x"), Stage("decode", "gen")]
    recs += [FrameResult(index=i, stage="decode", bytes=300.0 + i, gen_ms=2.0, keyframe=0, lpips=0.1 * i, psnr=30.0,
                         image=img) for i in range(n)]
    recs.append(Summary(method="promptlab", n_frames=n, total_bytes=903, kbps=72.2, lpips=0.1,
                        extra={"model": "m", "cache": "none", "init_bytes": 300, "header_bytes": 40,
                               "measured": True, "lpips_available": True}))
    recs += [FrameResult(index=i, stage="baseline", bytes=310.0, lpips=0.05, image=img) for i in range(n)]
    recs.append(Summary(method="h265", n_frames=n, total_bytes=930, kbps=74.4, lpips=0.05))
    return recs


def test_records_leave_the_decoders_frames_and_both_summaries():
    st = LabState()
    for rec in _run():
        st.apply(rec)
    assert sorted(st.rows) == [0, 1, 2] and all(r.stage == "decode" for r in st.rows.values())  # decode replaced encode
    assert [st.rows[i].bytes for i in range(3)] == [300.0, 301.0, 302.0]
    assert [r.stage for r in st.base_rows.values()] == ["baseline"] * 3
    assert st.summary.kbps == 72.2 and st.baseline.method == "h265" and st.cache_label() == "none"
    assert (st.model_label, st.init_bytes, st.header_bytes) == ("m", 300, 40)
    st.clear_results()
    assert not st.rows and st.summary is None and st.init_bytes is None and st.cache_label() == ""


def test_a_stored_result_replayed_leaves_the_state_a_live_run_left(tmp_path):
    live = LabState()
    recs = _run()
    for rec in recs:
        live.apply(rec)
    cache = ResultsCache(tmp_path)
    dec = [r for r in recs if isinstance(r, FrameResult) and r.stage == "decode"]
    base = [r for r in recs if isinstance(r, FrameResult) and r.stage == "baseline"]
    cache.save("k", [r.row() for r in dec], live.summary.to_dict(), np.stack([r.image for r in dec]))
    cache.save_baseline("k", [r.row() for r in base], live.baseline.to_dict(), np.stack([r.image for r in base]))
    again = LabState()
    for rec in replay(cache.load("k")):
        again.apply(rec)
    assert again.summary == live.summary and again.baseline == live.baseline
    assert again.model_label == "m" and (again.init_bytes, again.header_bytes) == (300, 40)
    for mine, theirs in ((again.rows, live.rows), (again.base_rows, live.base_rows)):
        assert {i: r.row() for i, r in mine.items()} == {i: r.row() for i, r in theirs.items()}


def test_keys_and_staleness_follow_the_settings_and_the_source(tmp_path):
    src = tmp_path / "clip"
    src.mkdir()
    (src / "00000.png").write_bytes(b"x")
    st = LabState(settings=Settings(size=64), source=str(src), frames=(0, 5))
    assert st.run_frames() == (0, 5) and not st.is_stale()  # nothing shown: nothing stale
    st.shown_key = st.current_key()
    assert not st.is_stale()
    st.settings = st.settings.replace(rank=3)
    assert st.is_stale()
    st.settings = st.settings.replace(rank=Settings(size=64).rank, cache="lossless")  # not a stream setting
    assert not st.is_stale()
    st.stream, st.source = str(tmp_path / "a.plab"), None
    assert st.current_key() is None  # a bare stream's runs are never stored



def test_the_mark_says_why_what_is_shown_is_not_a_fit_of_these_settings(tmp_path):
    src = tmp_path / "clip"
    src.mkdir()
    (src / "00000.png").write_bytes(b"x")
    st = LabState(settings=Settings(size=64), source=str(src))
    assert st.mark() == ""                       # nothing shown
    for rec in _run():
        st.apply(rec)
    st.shown_key = st.current_key()
    assert st.mark() == ""                       # a fit of these settings
    st.settings = st.settings.replace(rank=3)
    assert st.mark() == "STALE"
    st.clear_results()
    st.partial = True                            # a cancelled run's first frames
    assert st.mark() == "PARTIAL"
    st.previewing = True                         # a preview says so first
    assert st.mark() == "PREVIEW"
    st.clear_results()
    assert st.mark() == "" and not st.partial and not st.previewing
