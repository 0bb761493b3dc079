"""The VAE baseline (TAEF2 keyframe latents): round trip, rate target, floor, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from promptlab.baselines.latent import (
    decode_latent_stream,
    encode_latent_baseline,
    keyframes,
    read_stream,
)
from promptlab.errors import PromptlabError
from promptlab.io.video import read_frames
from promptlab.models.taef2 import baseline_autoencoder
from promptlab.paths import bundled

SKY = bundled("assets", "sky.mp4")


@pytest.fixture(scope="module")
def frames():
    return list(read_frames(SKY, frames=(0, 9), size=64))


@pytest.fixture(scope="module")
def ae():
    return baseline_autoencoder()


def test_round_trip_bytes_decode_to_the_same_frames_and_hit_the_rate(frames, ae) -> None:
    r = encode_latent_baseline(frames, 30.0, 40.0, ae)
    assert r.converged, r.note
    assert abs(r.kbps / 40.0 - 1) <= 0.10
    assert r.bytes == len(r.stream) == sum(r.frame_bytes)
    again = decode_latent_stream(r.stream, ae)
    assert all(np.array_equal(a, b) for a, b in zip(again, r.recon))
    n, z = read_stream(r.stream)
    assert n == len(frames) and z.shape[1:] == (32, 8, 8)
    err = np.mean([(a.astype(float) - b) ** 2 for a, b in zip(r.recon, frames)])
    assert 10 * np.log10(255 ** 2 / err) > 15  # a real decode of the clip, not noise


def test_below_the_floor_names_it(frames, ae) -> None:
    r = encode_latent_baseline(frames, 30.0, 0.5, ae)
    assert not r.converged and "below" in r.note and "floor" in r.note
    assert r.params["bits"] == 1


def test_bad_input_is_one_line(frames, ae) -> None:
    with pytest.raises(PromptlabError):
        encode_latent_baseline([], 30.0, 10.0, ae)
    with pytest.raises(PromptlabError):
        encode_latent_baseline([f[:60] for f in frames], 30.0, 10.0, ae)
    with pytest.raises(PromptlabError):
        read_stream(b"PLVA\x01")
    r = encode_latent_baseline(frames, 30.0, 40.0, ae)
    with pytest.raises(PromptlabError):
        read_stream(r.stream[:-3])


def test_keyframes_end_on_the_last_frame() -> None:
    assert keyframes(9, 4) == [0, 4, 8] and keyframes(10, 4) == [0, 4, 8, 9] and keyframes(1, 5) == [0]


def test_cli_writes_the_counted_bytes(tmp_path) -> None:
    out, js = tmp_path / "v.plva", tmp_path / "v.json"
    cmd = [sys.executable, "-m", "promptlab", "baseline", "vae", str(SKY), "--kbps", "40", "--size", "64",
           "--frames", "0:9", "-o", str(out), "--json", str(js)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    doc = json.loads(js.read_text())
    assert out.stat().st_size == doc["bytes"] and doc["params"]["autoencoder"] == "taef2"
    bad = subprocess.run(cmd[:-4] + ["-o", str(tmp_path / "v.hevc")], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and ".plva" in bad.stderr
