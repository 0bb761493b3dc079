"""Trace readers and the delivery simulator on hand-made traces (numbers computed by hand)."""

from pathlib import Path

import numpy as np
import pytest

from promptlab.errors import PromptlabError
from promptlab.stream.simulator import simulate
from promptlab.stream.traces import Trace, read_trace

DATA = Path(__file__).parent / "data" / "traces"


def _w(tmp_path, text, name="t.txt"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_throughput_format_and_loop(tmp_path):
    tr = read_trace(_w(tmp_path, "0 1\n1 2\n2 0.5\n"))
    assert tr.step_s == 1.0 and list(tr.rate_bps) == [1e6, 2e6, 0.5e6]
    # 1e6 bits/s for 1 s then 2e6: 2e6 bits take 1.5 s; loop: capacity at t=3.2 is the first's
    assert tr.transfer_end(0.0, 2e6 / 8) == pytest.approx(1.5)
    assert tr.capacity_at(3.2) == 1e6
    assert tr.transfer_end(2.0, 1e6 / 8) == pytest.approx(3.5)  # 0.5 Mb, then loop 0.5 Mb at 1e6


def test_mahimahi_format(tmp_path):
    # 10 packets in the first 100 ms bin, none in the second
    tr = read_trace(_w(tmp_path, "\n".join(["0"] * 10 + ["150"]) + "\n"))
    assert tr.rate_bps[0] == 10 * 1500 * 8 / 0.1
    real = read_trace(DATA / "ATT-LTE-driving-2016.down")
    assert 110 < real.duration_s < 130 and real.rate_bps.mean() > 1e6


def test_mapping_is_stated(tmp_path):
    tr = read_trace(_w(tmp_path, "0 1\n1 2\n")).mapped(scale=0.5, stretch=2.0)
    m = tr.mapping()
    assert m["scale"] == 0.5 and m["stretch"] == 2.0 and tr.step_s == 2.0
    assert list(tr.rate_bps) == [0.5e6, 1e6]


@pytest.mark.parametrize("text,word", [
    ("", "empty"),
    ("0 1\n0 2\n", "line 2"),
    ("0 1\n1 -2\n", "line 2"),
    ("0 1\n1 x\n", "line 2"),
    ("5\n3\n", "line 2"),
    ("5\nabc\n", "line 2"),
    ("1 2 3\n", "unknown"),
    ("0 0\n1 0\n", "no capacity"),
])
def test_bad_traces_one_line(tmp_path, text, word):
    with pytest.raises(PromptlabError) as e:
        read_trace(_w(tmp_path, text))
    assert word in str(e.value) and "\n" not in str(e.value)


def _const(mbps, n=100):
    return Trace("c", 1.0, np.full(n, mbps * 1e6))


def test_constant_link_by_hand():
    # 1 Mbps, 125,000 B segments of 2 s: 1 s download + 0.1 s RTT each; startup after first
    d = simulate(_const(1), [[125_000]] * 4, 2.0, lambda i, h, b: 0, rtt_s=0.1, startup_s=2.0)
    assert d.startup_s == pytest.approx(1.1)
    assert [s.download_s for s in d.segments] == pytest.approx([1.1] * 4)
    assert d.rebuffer_s == 0 and d.rebuffer_count == 0
    assert [s.buffer_after_s for s in d.segments] == pytest.approx([2.0, 2.9, 3.8, 4.7])


def test_link_drops_to_zero_for_3s():
    rate = np.full(20, 1e6)
    rate[2:5] = 0  # zero for t in [2, 5)
    tr = Trace("drop", 1.0, rate)
    d = simulate(tr, [[125_000]] * 3, 1.0, lambda i, h, b: 0, rtt_s=0.0, startup_s=1.0)
    # seg0 0..1 (start at 1), seg1 1..2 (buffer 1-1+1=1), seg2 starts 2, link dead until 5: arrives 6
    assert [s.arrival_s for s in d.segments] == pytest.approx([1.0, 2.0, 6.0])
    assert d.rebuffer_s == pytest.approx(3.0) and d.rebuffer_count == 1


def test_link_too_slow_for_lowest_rung():
    # 0.5 Mbps, lowest rung 1 Mb per 1-s segment: every segment after the first stalls 1 s
    d = simulate(_const(0.5), [[125_000, 250_000]] * 3, 1.0, lambda i, h, b: 0, rtt_s=0.0,
                 startup_s=1.0)
    assert d.rebuffer_s == pytest.approx(2.0) and d.rebuffer_count == 2
    skip = simulate(_const(0.5), [[125_000]] * 3, 1.0, lambda i, h, b: 0, rtt_s=0.0,
                    startup_s=1.0, policy="skip")
    assert [s.skipped for s in skip.segments] == [False, True, True]


@pytest.mark.parametrize("rule", ["throughput", "bba", "mpc"])
def test_rules_on_real_trace_records_consistent(rule):
    from promptlab.stream.abr import make_rule
    from promptlab.stream.records import shown_frames, summarize

    tr = read_trace(DATA / "ATT-LTE-driving-2016.down").mapped(scale=0.05)
    n_seg, seg_frames, clip = 20, 10, 25
    rungs = [2_000, 6_000, 20_000]
    sizes = [rungs] * n_seg
    frame_lp = [[0.5] * clip, [0.35] * clip, [0.2] * clip]
    qual = [[1 - 0.5, 1 - 0.35, 1 - 0.2]] * n_seg
    d = simulate(tr, sizes, 1.0, make_rule(rule, sizes, qual, 1.0), startup_s=1.0)
    frames = shown_frames(d, frame_lp, seg_frames, clip)
    s = summarize(d, frames, 1.0, qual)
    assert s["bytes"] == sum(rungs[x.rung] for x in d.segments)
    assert [f.clip_frame for f in frames] == [i % clip for i in range(n_seg * seg_frames)]
    assert s["rebuffer_s"] == pytest.approx(sum(x.stall_s for x in d.segments))
    assert len({x.rung for x in d.segments}) >= 1 and 0 <= s["severe_ratio"] <= 1
