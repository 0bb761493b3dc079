"""Hostile inputs and faults: every case ends in a one-line error or a correct result."""

from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptlab.cli.main import main
from promptlab.codec.container import read_stream, stream_bytes
from promptlab.codec.official import import_dir
from promptlab.errors import PromptlabError, StreamError
from tests.test_codec_container import make_stream

REPO = Path(__file__).resolve().parents[1]
VALID = stream_bytes(*make_stream(rank=3, dim=16, n_frames=23, interval=5, init_mode="q8"))


def one_line_error(capsys, rc: int, command: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"promptlab {command}: error:"), err
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------- fuzzing


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4096))
def test_fuzz_plab_reader_random_bytes(data):
    for blob in (data, b"PLAB\x01" + data, VALID[:60] + data):
        try:
            s = read_stream(blob, allow_partial=True)
        except StreamError as exc:
            assert str(exc)
            continue
        assert s.header is not None


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.integers(0, len(VALID)))
def test_fuzz_plab_reader_mutations(edits, cut):
    blob = bytearray(VALID)
    for pos, val in edits:
        blob[pos] = val
    blob = bytes(blob[:cut])
    good = read_stream(VALID)
    try:
        s = read_stream(blob, allow_partial=True)
    except StreamError:
        return
    # anything returned as valid is the true prefix (CRCs catch the edits)
    for a, b in zip(s.keyframes, good.keyframes):
        assert torch.equal(a.u, b.u) and torch.equal(a.v, b.v)


def _zip_prompt(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("frame_00000/data.pkl", payload)
        z.writestr("frame_00000/version", "3\n")
        z.writestr("frame_00000/byteorder", "little")
    return buf.getvalue()


@settings(max_examples=120, deadline=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), kind=st.sampled_from(["raw", "zip", "pickle-dict"]))
def test_fuzz_reference_importer(tmp_path_factory, data, kind):
    d = tmp_path_factory.mktemp("fz")
    if kind == "raw":
        blob = data
    elif kind == "zip":
        blob = _zip_prompt(data)
    else:
        blob = pickle.dumps({"U": data, "V": data[::-1]}, protocol=2)
    (d / "frame_00000.prompt").write_bytes(blob)
    torch.save(torch.zeros(1, 4, 8, 8), d / "init.pth")
    with pytest.raises(PromptlabError):
        import_dir(d)


def test_reference_importer_shape_and_type_attacks(tmp_path):
    good = {"U": torch.zeros(77, 2, dtype=torch.uint8), "V": torch.zeros(2, 16, dtype=torch.uint8),
            "U_scale": torch.tensor(1.0), "U_zero_point": torch.tensor(0.0),
            "V_scale": torch.tensor(1.0), "V_zero_point": torch.tensor(0.0)}
    attacks = [
        {**good, "U": torch.zeros(77, 2)},                          # float codes
        {**good, "V": torch.zeros(3, 16, dtype=torch.uint8)},       # rank mismatch
        {**good, "U_scale": torch.tensor(float("nan"))},            # non-finite scale
        {**good, "V_scale": torch.zeros(5)},                        # not one element
        {k: v for k, v in good.items() if k != "V"},                # missing key
        [1, 2, 3],                                                  # not a dict
    ]
    for i, bad in enumerate(attacks):
        d = tmp_path / f"a{i}"
        d.mkdir()
        torch.save(bad, d / "frame_00000.prompt")
        torch.save(torch.zeros(1, 4, 8, 8), d / "init.pth")
        with pytest.raises(PromptlabError):
            import_dir(d)
    d = tmp_path / "nan_init"
    d.mkdir()
    torch.save(good, d / "frame_00000.prompt")
    torch.save(torch.full((1, 4, 8, 8), float("inf")), d / "init.pth")
    with pytest.raises(PromptlabError, match="non-finite"):
        import_dir(d)
    d = tmp_path / "uneven"
    d.mkdir()
    for n in (0, 10, 15):
        torch.save(good, d / f"frame_{n:05d}.prompt")
    torch.save(torch.zeros(1, 4, 8, 8), d / "init.pth")
    with pytest.raises(PromptlabError, match="evenly spaced"):
        import_dir(d)


# ----------------------------------------------------------------------------- video inputs


def _mp4(path: Path, n: int, size: int = 64, fps: int = 30, pts_step=None) -> Path:
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        if pts_step is not None:
            s.time_base = Fraction(1, 1000)
            s.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(n):
            img = np.full((size, size, 3), (i * 7) % 255, np.uint8)
            img[: size // 4, : size // 4] = 255
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts_step is not None:
                vf.pts = t
                vf.time_base = Fraction(1, 1000)
                t += pts_step(i)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def test_corrupt_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    rc = main(["encode", str(bad), "-o", str(tmp_path / "x.plab")])
    one_line_error(capsys, rc, "encode")
    assert not (tmp_path / "x.plab").exists()
    rc = main(["eval", str(bad), str(bad)])
    one_line_error(capsys, rc, "eval")


def test_truncated_video_reads_what_decodes(tmp_path):
    from promptlab.io.video import count_frames, read_frames

    full = _mp4(tmp_path / "full.ts", 30)  # MPEG-TS: no index, every packet stands alone
    cut = tmp_path / "cut.ts"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    n = count_frames(cut)
    frames = list(read_frames(cut, size=32))
    assert len(frames) == n and 0 < n < 30


def test_truncated_mp4_without_its_index_is_refused_in_one_line(tmp_path):
    from promptlab.io.video import count_frames

    full = _mp4(tmp_path / "full.mp4", 30)  # the index (moov) is written after the frames
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(PromptlabError, match="is not a video or image folder PyAV can read") as exc:
        count_frames(cut)
    assert "\n" not in str(exc.value)


def test_variable_frame_rate_reads_every_frame_once(tmp_path):
    from promptlab.io.video import count_frames, probe, read_frames

    vfr = _mp4(tmp_path / "vfr.mp4", 20, pts_step=lambda i: 20 if i % 2 else 50)
    assert count_frames(vfr) == 20
    frames = list(read_frames(vfr, size=32))
    assert len(frames) == 20
    levels = [int(f[-1, -1, 0]) for f in frames]
    assert levels == sorted(levels)  # presentation order, no duplicates or drops
    assert probe(vfr).fps > 0


def test_one_frame_clip_encodes_and_decodes(tmp_path, capsys):
    clip = _mp4(tmp_path / "one.mp4", 1, size=64)
    out = tmp_path / "one.plab"
    rc = main(["encode", str(clip), "-o", str(out), "--size", "64", "--iters", "2", "--first-iters", "3",
               "--perceptual", "none", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    s = read_stream(out)
    assert s.header.n_frames == 1 and len(s.keyframes) == 1
    rc = main(["decode", str(out), "-o", str(tmp_path / "dec")])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == ["00000.png"]


def test_very_large_frames_are_refused_clearly(tmp_path, capsys):
    import cv2

    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.zeros((9000, 12000), np.uint8))
    rc = main(["encode", str(big), "-o", str(tmp_path / "x.plab")])
    line = one_line_error(capsys, rc, "encode")
    assert "108 MP" in line and "downscale" in line


def test_odd_sized_video_is_cropped(tmp_path):
    from promptlab.io.video import probe, read_frames
    from tests.conftest import write_clip

    frames = [np.full((71, 97, 3), i * 10, np.uint8) for i in range(3)]
    clip = write_clip(tmp_path / "odd.mkv", frames)
    info = probe(clip)
    assert (info.width, info.height) == (97, 71)
    out = list(read_frames(clip, size=64))
    assert len(out) == 3 and out[0].shape == (64, 64, 3)


# ----------------------------------------------------------------------------- faults


@pytest.mark.slow
def test_kill_9_during_encode_then_resume_is_byte_identical(sky_frames, tmp_path):
    args = ["encode", str(sky_frames), "--frames", "0:21", "--size", "64", "--rank", "4", "--interval", "5",
            "--iters", "4", "--first-iters", "6", "--perceptual", "none", "--quiet",
            "--threads", "2"]  # the same count in this process and the child: the bytes depend on it
    ref = tmp_path / "ref.plab"
    assert main(args + ["-o", str(ref)]) == 0
    out = tmp_path / "out.plab"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "promptlab", *args, "-o", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = out.with_name(out.name + ".partial")
    from promptlab.codec.container import read_stream

    r = read_stream(ref)
    first_keyframe = r.header_bytes + r.init_sizes[0] + r.keyframe_bytes[0]  # the same bytes, in order
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if partial.exists() and partial.stat().st_size >= first_keyframe:
            break  # at least one keyframe record is on disk
        time.sleep(0.05)
    assert proc.poll() is None, "the encode finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert main(args + ["-o", str(out)]) == 0
    assert out.read_bytes() == ref.read_bytes()
    assert not partial.exists()


# ----------------------------------------------------------------------------- the lab's jobs


@pytest.mark.parametrize("phase", [pytest.param("encode", marks=pytest.mark.slow), "decode", "baseline"])
def test_lab_job_cancels_in_every_phase_and_stores_nothing(sky_frames, tmp_path, phase):
    """The lab's run (Qt-free, what the GUI's job process and `promptlab run` iterate) stops in each phase."""
    import threading

    from promptlab.errors import Cancelled
    from promptlab.runs.lab import RunSpec, run_lab
    from promptlab.runs.records import Stage
    from promptlab.runs.results import ResultsCache
    from promptlab.settings import Settings

    s = Settings(size=64, rank=4, interval=5, iters=2, first_iters=3, perceptual="none", threads=1)
    spec = RunSpec(settings=s, source=str(sky_frames), frames=(0, 6), key=f"k-{phase}", baseline="h265",
                   cache_root=str(tmp_path / "cache"))
    cancel = threading.Event()
    seen = []
    with pytest.raises(Cancelled):
        for rec in run_lab(spec, cancel):
            if isinstance(rec, Stage):
                seen.append(rec.stage)
                if rec.stage == phase:
                    cancel.set()
    assert seen[-1] == phase
    cache = ResultsCache(str(tmp_path / "cache"))
    if phase == "baseline":  # the finished encode/decode result stands; the cancelled baseline is not kept
        assert cache.has(spec.key) and not cache.has(spec.key, baseline=True)
    else:
        assert not cache.has(spec.key)
