"""--engine ray: an encode's GOPs on workers byte-identical to the serial encode, a sweep on Ray with a
worker node killed mid-sweep giving the same numbers, finished work skipped, one-line errors.

The Ray tests start real (local) clusters: slow on a small machine, so marked slow; every task
reserves one CPU and runs the tiny model at 64 px with a few iterations.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import pytest

from promptlab.cli.main import main
from promptlab.engine.encoder import partial_paths
from promptlab.settings import Settings

N, GOP = 41, 20
ENCODE = ["--size", "64", "--rank", "2", "--interval", "10", "--iters", "2", "--first-iters", "3",
          "--perceptual", "none", "--threads", "1", "--frames", f"0:{N}", "--quiet"]
# H.264: x265 gives a few bytes more or less from run to run at the same settings (a serial sweep too),
# so only x264's bytes can be compared exactly across runs
SWEEP = ["--size", "64", "--ranks", "2,4", "--intervals", "10", "--baseline", "h264", "--iters", "2",
         "--first-iters", "3", "--perceptual", "none", "--threads", "1", "--frames", "0:11"]


def one_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"promptlab {command}: error:"), err
    return err[0]


def test_ray_missing_is_one_line(monkeypatch, tmp_path: Path, sky_mp4: Path, capsys) -> None:
    import promptlab.extras

    real = promptlab.extras.find_spec
    monkeypatch.setattr(promptlab.extras, "find_spec", lambda name: None if name == "ray" else real(name))
    out = tmp_path / "x.plab"
    assert main(["encode", str(sky_mp4), "-o", str(out), "--engine", "ray", *ENCODE]) == 2
    assert 'pip install "promptlab[ray]"' in one_error(capsys, "encode")
    assert main(["sweep", str(sky_mp4), "-o", str(tmp_path / "sw"), "--engine", "ray", *SWEEP]) == 2
    assert 'pip install "promptlab[ray]"' in one_error(capsys, "sweep")
    assert not out.exists()


def test_unreachable_address_is_one_line(tmp_path: Path, sky_mp4: Path, capsys) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "x.plab"
    t0 = time.monotonic()
    assert main(["encode", str(sky_mp4), "-o", str(out), "--engine", "ray", "--address", "127.0.0.1:9", *ENCODE]) == 2
    assert "cannot reach a Ray cluster at 127.0.0.1:9" in one_error(capsys, "encode")
    assert time.monotonic() - t0 < 60  # refused up front, not after Ray's own minutes of retries
    assert main(["encode", str(sky_mp4), "-o", str(out), "--engine", "ray", "--address", "nowhere", *ENCODE]) == 2
    assert "HOST:PORT" in one_error(capsys, "encode")
    assert main(["encode", str(sky_mp4), "-o", str(out), "--address", "h:1", *ENCODE]) == 2
    assert "needs --engine ray" in one_error(capsys, "encode")
    assert not out.exists() and not partial_paths(out)[0].exists()


@pytest.mark.slow
def test_ray_gop_encode_is_byte_identical_and_resumes(sky_mp4: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from promptlab.runs.distributed import RayOptions, encode_gops, work_folder
    from promptlab.runs.records import TaskDone, TasksPlanned

    serial, par = tmp_path / "serial.plab", tmp_path / "ray.plab"
    assert main(["encode", str(sky_mp4), "-o", str(serial), "--gop", str(GOP), *ENCODE]) == 0
    assert main(["encode", str(sky_mp4), "-o", str(par), "--gop", str(GOP), "--engine", "ray", "--workers", "2",
                 *ENCODE]) == 0
    assert par.read_bytes() == serial.read_bytes()
    assert not work_folder(par).exists()

    # stopped after its first GOP (as Ctrl+C stops it): no output, the finished GOP kept; the re-run resumes
    s = Settings(size=64, rank=2, interval=10, gop=GOP, iters=2, first_iters=3, perceptual="none", threads=1)
    cut = tmp_path / "cut.plab"
    job = encode_gops(sky_mp4, s, cut, RayOptions(workers=1), frames=f"0:{N}")
    next(r for r in job if isinstance(r, TaskDone))
    job.close()
    assert not cut.exists() and len(list(work_folder(cut).glob("gop-*.bin"))) == 1
    again = list(encode_gops(sky_mp4, s, cut, RayOptions(workers=2), frames=f"0:{N}"))
    planned = next(r for r in again if isinstance(r, TasksPlanned))
    assert planned.skipped == 1 and sum(isinstance(r, TaskDone) for r in again) == 2
    assert cut.read_bytes() == serial.read_bytes() and not work_folder(cut).exists()


def numbers(folder: Path) -> list[tuple]:
    data = json.loads((folder / "sweep.json").read_text())
    return [(p["method"], p["rank"], p["interval"], p["total_bytes"], p["kbps"], p["psnr"], p["ssim"], p["lpips"])
            for p in data["points"]]


@pytest.mark.slow
def test_ray_sweep_survives_a_killed_worker_and_skips_finished_points(sky_mp4: Path, tmp_path: Path,
                                                                      capsys) -> None:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from promptlab.runs.distributed import RayOptions, sweep_tasks
    from promptlab.runs.records import TaskDone, TasksPlanned
    from promptlab.runs.sweep import expand_sources

    calm = tmp_path / "calm"
    assert main(["sweep", str(sky_mp4), "-o", str(calm), "--engine", "ray", "--workers", "2", *SWEEP]) == 0
    want = numbers(calm)
    assert [m for m, *_ in want] == ["promptlab", "h264", "promptlab", "h264"]
    assert all(Path(calm / f"promptlab-r{r}-k10.plab").is_file() for r in (2, 4))

    # a two-node cluster; the second node dies while both are fitting a point
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        doomed = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        s = Settings(size=64, iters=2, first_iters=3, perceptual="none", threads=1, fps=30.0)
        src = [dataclasses.replace(x, fps=30.0) for x in expand_sources([str(sky_mp4)])]
        storm = tmp_path / "storm"
        storm.mkdir()
        job = sweep_tasks(src, s, [2, 4], [10], storm, RayOptions(address=cluster.address, workers=2),
                          frames=(0, 11), baseline="h264")
        seen = []
        for r in job:
            seen.append(r)
            if isinstance(r, TasksPlanned):
                threading.Timer(6.0, cluster.remove_node, args=(doomed,)).start()
        done = [r for r in seen if isinstance(r, TaskDone)]
        assert len(done) == 4 and sorted(r.name for r in done) == sorted({r.name for r in done})  # none twice
        assert doomed.node_id[:8] not in {r.node for r in done}  # its task was lost with it and run elsewhere
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    summary = seen[-1]
    got = [(p.method, p.rank, p.interval, p.total_bytes, p.kbps, p.psnr, p.ssim, p.lpips) for p in summary.points]
    # the promptlab rows exactly; a baseline row is rate-controlled to its point's kbps, and the codec's
    # bisection is not repeatable inside Ray workers (a few bytes either way), so its target is compared
    assert [g for g in got if g[0] == "promptlab"] == [w for w in want if w[0] == "promptlab"]
    targets = [p.target_kbps for p in summary.points if p.method == "h264"]
    assert targets == [w[4] for w in want if w[0] == "promptlab"]

    capsys.readouterr()
    assert main(["sweep", str(sky_mp4), "-o", str(calm), "--engine", "ray", "--workers", "2", *SWEEP]) == 0
    err = capsys.readouterr().err
    assert "0 tasks" in err and "2 points finished before" in err
    assert numbers(calm) == want
