"""`promptlab export` from the command line: outputs by extension, --force, and kill -9 midway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from promptlab.cli.export import main
from promptlab.errors import PromptlabError
from promptlab.io.writer import write_frames

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clips(sky_frames, tmp_path):
    """A source folder and a stand-in reconstruction (blurred copy) of its first frames."""
    from promptlab.io.video import read_frames

    def make(n: int, size: int) -> tuple[Path, Path]:
        recon = tmp_path / f"recon{n}_{size}"
        src = read_frames(sky_frames, frames=(0, n), size=size)
        write_frames(recon, (cv2.GaussianBlur(f, (5, 5), 1.5) for f in src), 30.0)
        return sky_frames, recon

    return make


def test_cli_writes_every_kind(clips, tmp_path):
    src, recon = clips(6, 64)
    outs = [tmp_path / n for n in ("c.mp4", "f.png", "m.csv", "m.json")]
    args = [str(src), str(recon), "--kbps", "120", "--label", "stand-in", "--labels", "--overlay", "psnr,kbps",
            "--frames", "0:6", "--worst", "2", "--sheet", str(tmp_path / "w.png"), "--no-progress", "--frame", "3"]
    for o in outs:
        args += ["-o", str(o)]
    assert main(args) == 0
    for o in [*outs, tmp_path / "w.png"]:
        assert o.is_file() and o.stat().st_size > 0, o
    with av.open(str(outs[0])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape[1] == 128 and frames[0].shape[0] > 64
    assert len(outs[2].read_text().strip().splitlines()) == 7
    # an existing output is refused before any work, and left alone
    before = outs[1].read_bytes()
    with pytest.raises(PromptlabError, match="--force"):
        main([str(src), str(recon), "-o", str(outs[1]), "--no-progress"])
    assert outs[1].read_bytes() == before
    assert main([str(src), str(recon), "-o", str(outs[1]), "--no-progress", "--force", "--frame", "0"]) == 0
    assert outs[1].read_bytes() != before


def test_cli_user_errors_are_one_line(clips, tmp_path):
    src, recon = clips(3, 64)
    base = [str(src), str(recon), "--no-progress"]
    for extra, msg in ([["-o", str(tmp_path / "x.avi")], "cannot tell"],
                       [[], "nothing to export"],
                       [["-o", str(tmp_path / "a.plab")], "needs a .plab"],
                       [["-o", str(tmp_path / "a.mp4"), "--baseline", "h265"], "rate"],
                       [["-o", str(tmp_path / "a.mp4"), "--overlay", "vmaf"], "overlay"],
                       [["-o", str(tmp_path / "a.mp4"), "--frames", "0:5"], "source gives|frames"],
                       [["-o", str(tmp_path / "no" / "a.mp4")], "does not exist"]):
        with pytest.raises(PromptlabError, match=msg):
            main(base + extra)
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".mp4", ".plab", ".avi")]


def test_cli_dispatcher_prints_one_line(clips, tmp_path):
    src, recon = clips(2, 64)
    code = ("import sys; from promptlab.cli import main as m; "
            "m.COMMANDS.setdefault('export', ('promptlab.cli.export', 'x')); sys.exit(m.main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "export", str(src), str(recon), "-o", str(tmp_path / "x.avi")],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "promptlab export: error:" in r.stderr


def test_kill_midway_leaves_nothing_at_target(clips, tmp_path):
    src, recon = clips(90, 256)
    out = tmp_path / "killed.mp4"
    code = "import sys; from promptlab.cli.export import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, str(src), str(recon), "-o", str(out), "--labels",
                             "--size", "512", "--no-progress"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        part = []
        # wait until the clip's temporary file exists and holds encoded frames, then kill -9
        while time.monotonic() < deadline and proc.poll() is None:
            part = [p for p in tmp_path.iterdir() if p.name.startswith(".killed.") and ".part" in p.name]
            if part and part[0].exists() and part[0].stat().st_size > 0:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "export finished before it could be killed; make the test clip longer"
        assert part, "no temporary file appeared"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()


def test_frames_align_with_source_start(clips, tmp_path):
    src, recon = clips(4, 64)
    # a reconstruction of source frames 0..3 compared against frames 2..5 differs more than against 0..3
    def err(spec: str) -> float:
        out = tmp_path / f"m{spec.replace(':', '_')}.csv"
        main([str(src), str(recon), "--frames", spec, "-o", str(out), "--no-progress"])
        rows = out.read_text().strip().splitlines()
        col = rows[0].split(",").index("recon_psnr")
        assert rows[1].split(",")[0] == spec.split(":")[0]
        return float(np.mean([float(r.split(",")[col]) for r in rows[1:]]))

    assert err("0:4") > err("2:6")


@pytest.mark.slow
def test_cli_decodes_a_plab_stream(clips, tmp_path):
    """The real decode path: a small tiny-model stream (random factors) decoded once for all outputs."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("promptlab.engine.decoder")
    from promptlab.codec.container import KeyframeRecord, StreamHeader, read_stream, write_stream
    from promptlab.codec.quant import QParams
    from promptlab.codec.rate import kbps

    src, _ = clips(1, 64)
    g = torch.Generator().manual_seed(0)
    h = StreamHeader(model="tiny", width=64, height=64, fps=30.0, n_frames=6, rank=2, bits=8, interval=3,
                     seed=88, blend=0.05, context_dim=128)
    recs = [KeyframeRecord(u=torch.randint(0, 256, (h.tokens, h.rank), dtype=torch.uint8, generator=g),
                           v=torch.randint(0, 256, (h.rank, h.context_dim), dtype=torch.uint8, generator=g),
                           u_qp=QParams(0.01, 128.0, 8), v_qp=QParams(0.01, 128.0, 8)) for _ in range(h.n_keyframes)]
    stream = tmp_path / "s.plab"
    write_stream(stream, h, torch.randn(h.latent_shape, generator=g), recs)
    total = read_stream(stream).total_bytes
    outs = {k: tmp_path / f"o.{k}" for k in ("mp4", "csv", "plab")}
    args = [str(src), str(stream), "--labels", "--overlay", "kbps", "--device", "cpu", "--no-progress"]
    for o in outs.values():
        args += ["-o", str(o)]
    assert main(args) == 0
    assert outs["plab"].read_bytes() == stream.read_bytes()
    with av.open(str(outs["mp4"])) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6
    rows = outs["csv"].read_text().strip().splitlines()
    col = rows[0].split(",").index("promptlab_bytes")
    # every stream byte is attributed to some frame
    assert sum(float(r.split(",")[col]) for r in rows[1:]) == pytest.approx(total)
    from promptlab.export.load import load_comparison

    comp = load_comparison(src, stream, frames=(0, 4), device="cpu")
    assert comp.n_frames == 4 and comp.renditions[0].label == f"promptlab tiny r2 · {kbps(total, 6, 30.0):.0f} kbps"
