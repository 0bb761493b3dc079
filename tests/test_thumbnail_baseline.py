"""The thumbnail baseline (area-downscaled keyframes, bicubic back up): round trip, rate, floor, bad input."""

import json

import numpy as np
import pytest

from promptlab.baselines.latent import decode_latent_stream, encode_latent_baseline, read_stream
from promptlab.cli.main import main
from promptlab.engine.thumbnail import factor_of, thumbnail_autoencoder
from promptlab.errors import PromptlabError
from promptlab.io.video import read_frames
from promptlab.paths import bundled
from promptlab.runs import methods

SKY = bundled("assets", "sky.mp4")


@pytest.fixture(scope="module")
def frames():
    return list(read_frames(SKY, frames=(0, 9), size=64))


def _psnr(a, b) -> float:
    err = np.mean([(x.astype(float) - y) ** 2 for x, y in zip(a, b)])
    return 10 * np.log10(255 ** 2 / err)


def test_round_trip_bytes_decode_to_the_recon_at_the_rate(frames) -> None:
    r = methods.encode("thumbnail", frames, 30.0, 20.0)
    assert r.codec == "thumbnail" and r.converged, r.note
    assert abs(r.kbps / 20.0 - 1) <= 0.10
    assert r.bytes == len(r.stream) == sum(r.frame_bytes)
    f = factor_of(r.stream)
    assert r.params["autoencoder"].startswith(f"thumbnail 1/{f} ")
    ae = thumbnail_autoencoder(f)
    again = decode_latent_stream(r.stream, ae)
    assert all(np.array_equal(a, b) for a, b in zip(again, r.recon))
    n, z = read_stream(r.stream, ae)
    assert n == len(frames) and z.shape[1:] == (3, 64 // f, 64 // f)
    assert _psnr(r.recon, frames) > 15  # the clip, upsampled, not noise


def test_the_thumbnail_is_an_area_mean_and_decodes_through_bicubic(frames) -> None:
    ae = thumbnail_autoencoder()
    z = ae.encode(np.stack(frames[:1]))
    block = frames[0][:8, :8].astype(np.float64) / 127.5 - 1
    assert np.allclose(z[0, :, 0, 0], block.mean(axis=(0, 1)), atol=1e-5)
    flat = np.zeros((1, 3, 8, 8), np.float32)  # mid grey everywhere decodes to mid grey
    assert np.all(np.abs(ae.decode(flat).astype(int) - 128) <= 1)


def test_a_higher_rate_is_not_worse(frames) -> None:
    lo = methods.encode("thumbnail", frames, 30.0, 10.0)
    hi = methods.encode("thumbnail", frames, 30.0, 40.0)
    assert hi.bytes > lo.bytes and _psnr(hi.recon, frames) > _psnr(lo.recon, frames)
    assert len(hi.params["candidates"]) == 3  # every scale was tried


def test_below_the_floor_names_it(frames) -> None:
    r = encode_latent_baseline(frames, 30.0, 0.5, thumbnail_autoencoder())
    assert not r.converged and "below" in r.note and "floor" in r.note and "1 bit" in r.note
    assert r.params["bits"] == 1


def test_a_vae_stream_is_not_a_thumbnail_stream(frames) -> None:
    r = methods.encode("thumbnail", frames, 30.0, 20.0)
    ae = thumbnail_autoencoder(factor_of(r.stream))
    with pytest.raises(PromptlabError, match="bad magic"):
        read_stream(b"PLVA" + r.stream[4:], ae)
    with pytest.raises(PromptlabError, match="bad magic"):
        factor_of(b"PLVA" + r.stream[4:])
    with pytest.raises(PromptlabError):
        read_stream(r.stream[:-2], ae)


def test_cli_writes_the_counted_bytes_and_refuses_bad_input(tmp_path, capsys) -> None:
    out, js = tmp_path / "t.plth", tmp_path / "t.json"
    base = ["baseline", "thumbnail", str(SKY), "--size", "64", "--frames", "0:9"]
    assert main(base + ["--kbps", "20", "-o", str(out), "--json", str(js)]) == 0
    doc = json.loads(js.read_text())
    assert out.stat().st_size == doc["bytes"] and doc["codec"] == "thumbnail"
    assert doc["params"]["quantiser"] == "uniform" and doc["within_tolerance"]
    capsys.readouterr()
    for argv, word in ((["--kbps", "20", "-o", str(tmp_path / "t.hevc")], ".plth"),
                       (["--kbps", "0", "-o", str(tmp_path / "u.plth")], "kbps"),
                       ):
        assert main(base + argv) != 0
        err = capsys.readouterr().err.strip()
        assert word in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert main(["baseline", "thumbnail", str(tmp_path / "missing.mp4"), "--kbps", "20",
                 "-o", str(tmp_path / "v.plth")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
