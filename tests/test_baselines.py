"""H.265/H.264 baselines: bitrate within tolerance on the bytes written, exact byte attribution."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from promptlab.baselines import encode_baseline
from promptlab.baselines.annexb import nal_types, split_nals, strip_banner_sei
from promptlab.baselines.output import write_stream
from promptlab.errors import PromptlabError
from promptlab.io.video import count_frames, read_frames
from promptlab.metrics import psnr


@pytest.fixture(scope="module")
def sky41(sky_frames) -> list[np.ndarray]:
    return list(read_frames(sky_frames, frames=(0, 41), size=128))


@pytest.fixture(scope="module")
def h265_runs(sky41):
    return {k: encode_baseline(sky41, 30.0, k, codec="h265") for k in (50, 100, 300)}


@pytest.mark.parametrize("kbps", [50, 100, 300])
def test_h265_hits_target_on_bytes_written(h265_runs, sky41, tmp_path, kbps):
    r = h265_runs[kbps]
    out = tmp_path / "s.hevc"
    assert write_stream(r, out) == r.bytes == out.stat().st_size
    achieved = out.stat().st_size * 8 / (41 / 30) / 1000
    assert abs(achieved / kbps - 1) <= 0.05, (kbps, achieved, r.trace)
    assert r.kbps == pytest.approx(achieved) and r.converged
    assert sum(r.frame_bytes) == r.bytes and len(r.frame_bytes) == 41 and min(r.frame_bytes) > 0
    assert r.frame_bytes[0] == max(r.frame_bytes)  # the intra frame carries the parameter sets
    with av.open(str(out)) as c:  # the raw file is a complete, decodable stream
        assert sum(1 for _ in c.decode(video=0)) == 41
    assert len(r.recon) == 41 and r.recon[0].shape == (128, 128, 3)


def test_quality_rises_with_rate(h265_runs, sky41):
    means = [np.mean([psnr(a, b) for a, b in zip(sky41, h265_runs[k].recon, strict=True)]) for k in (50, 100, 300)]
    assert means[0] < means[1] < means[2]


def test_streams_carry_no_encoder_banner(h265_runs, sky41):
    assert b"x265" not in h265_runs[100].stream
    h264 = encode_baseline(sky41[:10], 30.0, 200, codec="h264")
    assert b"x264" not in h264.stream and 7 in nal_types(h264.stream, "h264")  # SPS kept, banner gone
    assert h264.converged and abs(h264.kbps / 200 - 1) <= 0.05, h264.trace


def test_strip_banner_sei_only_removes_user_data():
    sps = b"\x00\x00\x00\x01\x67\x42\x00\x1e"
    banner = b"\x00\x00\x01\x06\x05\x10" + b"x264 core" + b"\x80"
    other_sei = b"\x00\x00\x01\x06\x01\x02\x03\x80"
    slice_ = b"\x00\x00\x01\x65\x88\x84"
    data = sps + banner + other_sei + slice_
    assert len(split_nals(data)) == 4
    assert strip_banner_sei(data, "h264") == sps + other_sei + slice_
    hevc_banner = b"\x00\x00\x01\x4e\x01\x05\x10x265\x80"
    assert strip_banner_sei(hevc_banner + slice_, "h265") == slice_


def test_unreachable_target_is_reported(sky41):
    r = encode_baseline(sky41[:8], 30.0, 1.0, codec="h265")
    assert not r.converged and "CRF 51" in r.note
    assert r.kbps > 1.0 and r.kbps == pytest.approx(r.bytes * 8 / (8 / 30) / 1000)


def test_argument_errors(sky41):
    with pytest.raises(PromptlabError, match="unknown baseline codec"):
        encode_baseline(sky41[:2], 30.0, 100, codec="vp9")
    with pytest.raises(PromptlabError, match="kbps"):
        encode_baseline(sky41[:2], 30.0, 0, codec="h265")
    with pytest.raises(PromptlabError, match="no frames"):
        encode_baseline([], 30.0, 100)


def test_baseline_cli(sky_frames, tmp_path):
    from promptlab.cli.baseline import main

    out, rec, js = tmp_path / "b.mp4", tmp_path / "rec", tmp_path / "b.json"
    assert main(["h264", str(sky_frames), "--kbps", "150", "--frames", "0:12", "--size", "64", "-o", str(out),
                 "--recon", str(rec), "--json", str(js)]) == 0
    doc = json.loads(js.read_text())
    assert doc["frames"] == 12 and sum(doc["frame_bytes"]) == doc["bytes"]
    assert doc["file_bytes"] == out.stat().st_size and doc["container_overhead_bytes"] > 0
    assert doc["kbps"] == pytest.approx(doc["bytes"] * 8 / (12 / 30) / 1000)
    assert count_frames(out) == 12 and count_frames(rec) == 12
    with pytest.raises(PromptlabError, match="use .hevc"):
        main(["h265", str(sky_frames), "--kbps", "100", "-o", str(tmp_path / "x.h264")])
    with pytest.raises(PromptlabError, match="already exists"):
        main(["h264", str(sky_frames), "--kbps", "100", "-o", str(out)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "b.mp4", "rec"]


@pytest.mark.parametrize("codec", ["h265", "h264"])
def test_bytes_repeat_in_separate_processes(sky_mp4, tmp_path, codec):
    """The same frames give the same stream and the same CRF search in two processes.

    64 px is the width at which both encoders repeated least before repeatable_params (x265: one
    CTU wide; x264: its AVX-512 kernels); the two processes start with different leftover heap
    bytes (MALLOC_PERTURB_), so an encoder that reads memory it did not write shows it."""
    import os
    import subprocess
    import sys

    runs = []
    for perturb in ("85", "170"):
        out, js = tmp_path / f"{perturb}.{'hevc' if codec == 'h265' else 'h264'}", tmp_path / f"{perturb}.json"
        subprocess.run([sys.executable, "-m", "promptlab", "baseline", codec, str(sky_mp4), "--kbps", "12",
                        "--size", "64", "--frames", "0:11", "-o", str(out), "--json", str(js)], check=True,
                       capture_output=True, timeout=300, env={**os.environ, "MALLOC_PERTURB_": perturb})
        runs.append((out.read_bytes(), json.loads(js.read_text())["search"]))
    assert runs[0][1] == runs[1][1]  # every encode of the CRF search, the CRF 0 end included
    assert runs[0][0] == runs[1][0]
