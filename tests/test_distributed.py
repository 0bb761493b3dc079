"""--engine ray: an encode's GOPs on workers byte-identical to the serial encode (also when a worker node
dies mid-GOP), a sweep on Ray with a worker node killed mid-sweep giving the same sweep.json, finished work
skipped, Ctrl-C leaving no final file, one-line errors.

The Ray tests start real (local) clusters: slow on a small machine, so marked slow; every task
reserves one CPU and runs the tiny model at 64 px with a few iterations. Ray is in the test extra,
so a missing Ray fails these tests instead of skipping them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
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
SWEEP = ["--size", "64", "--ranks", "2,4", "--intervals", "10", "--baseline", "h265", "--iters", "2",
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


def kill_when_both_encode(folder: Path, pattern: str, kill) -> threading.Thread:
    """A thread that calls `kill()` as soon as two files matching `pattern` (the partial streams an encode
    holds open until it ends) exist in `folder` at once: with two workers on one-CPU nodes both are then
    mid-encode, so the doomed node dies in the middle of its work whatever the machine's speed (a timer raced
    with fast machines, where the work could end before it fired)."""

    def run() -> None:
        t0 = time.monotonic()
        while len(list(folder.glob(pattern))) < 2:
            if time.monotonic() - t0 > 300:
                return
            time.sleep(0.02)
        kill()
        thread.killed = True

    thread = threading.Thread(target=run, daemon=True)
    thread.killed = False
    thread.start()
    return thread


def rows(points: list[dict], folder: Path) -> list[dict]:
    """sweep.json's rows with the run's own folder taken out of the stream paths (all else compared as is)."""
    return [{**p, "path": p["path"] and str(Path(p["path"]).relative_to(folder))} for p in points]


STORM = [*SWEEP, "--iters", "20", "--first-iters", "30"]  # encodes of seconds, to be killed in (the last value counts)


@pytest.mark.slow
def test_ray_sweep_survives_a_killed_worker_and_skips_finished_points(sky_mp4: Path, tmp_path: Path,
                                                                      capsys) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from promptlab.runs.distributed import RayOptions, sweep_tasks
    from promptlab.runs.records import TaskDone, TasksPlanned
    from promptlab.runs.sweep import expand_sources

    calm = tmp_path / "calm"
    assert main(["sweep", str(sky_mp4), "-o", str(calm), "--engine", "ray", "--workers", "2", *STORM]) == 0
    want = json.loads((calm / "sweep.json").read_text())
    assert [p["method"] for p in want["points"]] == ["promptlab", "h265", "promptlab", "h265"]
    assert all(Path(calm / f"promptlab-r{r}-k10.plab").is_file() for r in (2, 4))

    # a two-node cluster; the second node dies while both are fitting a point
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        doomed = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        s = Settings(size=64, iters=20, first_iters=30, perceptual="none", threads=1, fps=30.0)
        src = [dataclasses.replace(x, fps=30.0) for x in expand_sources([str(sky_mp4)])]
        storm = tmp_path / "storm"
        storm.mkdir()
        job = sweep_tasks(src, s, [2, 4], [10], storm, RayOptions(address=cluster.address, workers=2),
                          frames=(0, 11), baseline="h265")
        seen, killer = [], None
        for r in job:
            seen.append(r)
            if isinstance(r, TasksPlanned):  # both points' encodes running: one is the doomed node's
                killer = kill_when_both_encode(storm, "*.plab.partial", lambda: cluster.remove_node(doomed))
        killer.join()
        assert killer.killed
        done = [r for r in seen if isinstance(r, TaskDone)]
        assert len(done) == 4 and sorted(r.name for r in done) == sorted({r.name for r in done})  # none twice
        assert doomed.node_id[:8] not in {r.node for r in done}  # its task was lost with it and run elsewhere
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    summary = seen[-1]
    # every row of sweep.json, the H.265 baselines' too (their bytes repeat: baselines/h26x.repeatable_params)
    assert rows([dataclasses.asdict(p) for p in summary.points], storm) == rows(want["points"], calm)
    assert (summary.bd_rate_psnr, summary.bd_rate_lpips) == (want["bd_rate_psnr_percent"], want["bd_rate_lpips_percent"])

    capsys.readouterr()
    assert main(["sweep", str(sky_mp4), "-o", str(calm), "--engine", "ray", "--workers", "2", *STORM]) == 0
    err = capsys.readouterr().err
    assert "0 tasks" in err and "2 points finished before" in err
    assert json.loads((calm / "sweep.json").read_text())["points"] == [
        {**p, "extra": {**p["extra"], "reused": True}} for p in want["points"]]


# an encode whose GOPs take long enough (seconds each) for a worker to die in the middle of one
FAULT = ["--size", "64", "--rank", "2", "--interval", "10", "--iters", "20", "--first-iters", "30",
         "--perceptual", "none", "--threads", "1", "--frames", f"0:{N}", "--quiet"]


@pytest.mark.slow
def test_ray_encode_survives_a_killed_worker(sky_mp4: Path, tmp_path: Path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from promptlab.runs.distributed import RayOptions, encode_gops, work_folder
    from promptlab.runs.records import TaskDone

    serial = tmp_path / "serial.plab"
    assert main(["encode", str(sky_mp4), "-o", str(serial), "--gop", "10", *FAULT]) == 0
    s = Settings(size=64, rank=2, interval=10, gop=10, iters=20, first_iters=30, perceptual="none", threads=1)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    out, spare, killer = tmp_path / "ray.plab", None, None
    try:
        doomed = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        seen = []
        for r in encode_gops(sky_mp4, s, out, RayOptions(address=cluster.address, workers=2), frames=f"0:{N}"):
            seen.append(r)
            if killer is None and isinstance(r, TaskDone) and r.node == doomed.node_id[:8] and r.done <= r.total - 3:
                # the doomed node's actor finished a GOP and gets the next one (two more wait): a spare node
                # joins, and the doomed node dies once both actors are mid-GOP (their GOPs sit in OUT.gops/ as
                # partial streams until they end); its actor restarts on the spare node
                spare = cluster.add_node(num_cpus=1)
                killer = kill_when_both_encode(work_folder(out), "gop-*.plab.partial",
                                               lambda: cluster.remove_node(doomed))
        assert killer is not None, "the doomed node's actor finished no GOP with two still to come"
        killer.join()
        assert killer.killed
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    done = [r for r in seen if isinstance(r, TaskDone)]
    assert sorted(r.name for r in done) == [f"GOP {g}" for g in range(5)]  # each GOP once
    assert spare.node_id[:8] in {r.node for r in done}  # the dead worker's GOP was run again on the spare node
    assert out.read_bytes() == serial.read_bytes() and not work_folder(out).exists()


def _interrupt(cmd: list[str], ready: Path, pattern: str) -> tuple[int, str]:
    """Run `promptlab CMD` in its own process group and send the group SIGINT (what Ctrl-C in a terminal does)
    as soon as `ready` holds a file matching `pattern`; its exit code and stderr."""
    # a shell without job control starts background commands with SIGINT ignored, and an ignored signal stays
    # ignored across exec: the command would never see the Ctrl-C (so the test ran on to the end when the test
    # run itself was started with `&`). A handled signal is reset to the default at exec.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        p = subprocess.Popen([sys.executable, "-m", "promptlab", *cmd], stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, before)
    try:
        t0 = time.monotonic()
        while not (ready.is_dir() and any(ready.glob(pattern))):
            assert p.poll() is None, p.stderr.read()
            assert time.monotonic() - t0 < 300, "nothing finished in 5 minutes"
            time.sleep(0.1)
        os.killpg(p.pid, signal.SIGINT)
        rc = p.wait(timeout=120)
        t0 = time.monotonic()
        while _group_alive(p.pid):  # Ray's processes (started in the group) end with the command
            assert time.monotonic() - t0 < 60, "processes of the interrupted command still run"
            time.sleep(0.2)
        return rc, p.stderr.read()
    finally:
        if _group_alive(p.pid):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (Linux; a zombie waiting for its reaper does not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            return True
    return False


@pytest.mark.slow
def test_ctrl_c_on_a_ray_encode_and_sweep_leaves_no_final_file(sky_mp4: Path, tmp_path: Path) -> None:

    from promptlab.runs.distributed import work_folder

    out = tmp_path / "x.plab"
    # one worker: GOPs finish one after another, four still to come when the first lands, so Ctrl-C comes
    # mid-encode however the machine schedules them (with two workers, one run ended before it took effect)
    rc, err = _interrupt(["encode", str(sky_mp4), "-o", str(out), "--gop", "10", "--engine", "ray", "--workers", "1",
                          *FAULT],
                         work_folder(out), "gop-*.bin")
    assert rc == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("promptlab encode: interrupted: the finished GOPs are kept"), err
    assert not out.exists() and not partial_paths(out)[0].exists()
    assert list(work_folder(out).glob("gop-*.bin"))  # kept for the resume

    sweep = tmp_path / "sweep"
    rc, err = _interrupt(["sweep", str(sky_mp4), "-o", str(sweep), "--engine", "ray", "--workers", "1", *SWEEP],
                         sweep, "promptlab-r*-k10.json")
    assert rc == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "promptlab sweep: interrupted", err
    assert not any((sweep / f).exists() for f in ("sweep.json", "sweep.csv", "rd.svg"))
    assert (sweep / "promptlab-r2-k10.json").is_file()  # the finished point, kept for the re-run
