import json
from pathlib import Path

import pytest

from promptlab.cli.main import main
from promptlab.metrics.bdrate import bd_rate
from promptlab.runs.sweep import SweepPoint, summarize_sweep


def test_bd_rate_of_a_curve_against_itself_and_a_cheaper_copy():
    r = [100, 200, 400, 800]
    q = [30.0, 33.0, 35.5, 37.5]
    assert abs(bd_rate(r, q, r, q)) < 1e-9
    half = [x / 2 for x in r]
    assert bd_rate(r, q, half, q) == pytest.approx(-50.0, abs=1e-6)
    assert bd_rate(r, q, [x * 1.1 for x in r], q) == pytest.approx(10.0, abs=1e-6)
    assert bd_rate(r, q, r, [50, 51, 52, 53]) is None  # no overlap
    assert bd_rate([100], [30], r, q) is None
    # two points: linear fit still works
    assert bd_rate([100, 400], [30, 36], [50, 200], [30, 36]) == pytest.approx(-50.0, abs=1e-6)


def test_summarize_sweep_gives_bd_rates_against_the_baseline():
    def point(method: str, kbps: float, psnr: float, lpips: float) -> SweepPoint:
        return SweepPoint(method, None, 10, kbps, None, 0, lpips, psnr, 0.9, 0.9, 0.0)

    theirs = [point("h265", k, q, lp) for k, q, lp in ((100, 30, 0.4), (200, 33, 0.3), (400, 36, 0.2))]
    ours = [point("promptlab", k / 2, q, lp) for k, q, lp in ((100, 30, 0.4), (200, 33, 0.3), (400, 36, 0.2))]
    done = summarize_sweep(ours + theirs, "h265")
    assert done.bd_rate_psnr == pytest.approx(-50.0, abs=1e-6)
    assert done.bd_rate_lpips == pytest.approx(-50.0, abs=1e-6)
    assert summarize_sweep(ours, None).bd_rate_psnr is None  # no baseline, nothing to compare


def test_sweep_cli_writes_table_plot_and_bdrate(sky_frames, tmp_path, capsys):
    out = tmp_path / "sw"
    rc = main(["sweep", str(sky_frames), "--frames", "0:6", "--size", "64", "--ranks", "2,8", "--intervals", "5",
               "--iters", "3", "--first-iters", "4", "-o", str(out)])
    assert rc == 0
    data = json.loads((out / "sweep.json").read_text())
    methods = [p["method"] for p in data["points"]]
    assert methods.count("promptlab") == 2 and methods.count("h265") == 2
    for ours, theirs in zip(data["points"][::2], data["points"][1::2]):
        assert ours["rank"] in (2, 8)
        assert theirs["target_kbps"] == pytest.approx(ours["kbps"])
        assert (out / Path(ours["path"]).name).exists()
        # every byte counted: the stream file size gives the point's kbps
        size = (out / Path(ours["path"]).name).stat().st_size
        assert ours["total_bytes"] == size
        assert ours["kbps"] == pytest.approx(size * 8 / (6 / 30) / 1000)
    assert data["points"][2]["kbps"] > data["points"][0]["kbps"]  # rank 8 costs more than rank 2
    ours = [p for p in data["points"] if p["method"] == "promptlab"]
    theirs = [p for p in data["points"] if p["method"] == "h265"]
    want = bd_rate([p["kbps"] for p in theirs], [p["psnr"] for p in theirs],
                   [p["kbps"] for p in ours], [p["psnr"] for p in ours])  # None where the PSNR ranges do not overlap
    assert data["bd_rate_psnr_percent"] == (None if want is None else pytest.approx(want))
    svg = (out / "rd.svg").read_text()
    assert svg.startswith("<svg") and "kbps" in svg and "better" in svg
    assert (out / "sweep.csv").read_text().startswith("method,rank")
    printed = capsys.readouterr().out
    assert "BD-rate" in printed and "promptlab" in printed
    assert main(["sweep", str(sky_frames), "--ranks", "x", "-o", str(out)]) == 2
