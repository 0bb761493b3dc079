"""SD-Turbo from every documented route (diffusers folder, hub cache and hub id, single file, fp16
variant), refused in one line before any work when it cannot load, and named by its weights."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import cv2
import model_files as mf
import numpy as np
import pytest
import torch

from promptlab.cli.main import main
from promptlab.engine import records
from promptlab.engine.encoder import encode, partial_paths
from promptlab.errors import MissingWeightsError, PromptlabError
from promptlab.models import load_model
from promptlab.models import sd_turbo as sdt
from promptlab.models.registry import check_model, model_fingerprint
from promptlab.settings import Settings

FAST = ["--size", "64", "--rank", "2", "--interval", "2", "--iters", "1", "--first-iters", "1",
        "--perceptual", "none", "--quiet"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(2)
    for var in ("PROMPTLAB_SD_TURBO", "PROMPTLAB_TAESD", "HF_HOME", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache unless a test fills it


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> Path:
    """A diffusers SD-Turbo folder (unet/, vae/, taesd/) with random weights; tests copy it before changing it."""
    return mf.diffusers_folder(tmp_path_factory.mktemp("sd") / "sd-turbo")


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    folder = tmp_path / "clip"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(folder / f"{i:05d}.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    return folder


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def one_error_line(argv: list[str], capsys) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("promptlab ")]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    return lines[0]


def test_diffusers_folder_encodes_and_decodes(sd_folder: Path, clip: Path, tmp_path: Path, capsys) -> None:
    out, dec = tmp_path / "a.plab", tmp_path / "dec"
    assert main(["encode", str(clip), "-o", str(out), "--model", str(sd_folder), *FAST]) == 0, capsys.readouterr().err
    assert main(["decode", str(out), "-o", str(dec), "--model", str(sd_folder), "--quiet"]) == 0
    assert len(list(dec.glob("*.png"))) == 2
    m = load_model(str(sd_folder), "cpu")
    assert m.name == "sd-turbo" and not m.random_weights and m.context_dim == 1024
    assert m.fingerprint == model_fingerprint(str(sd_folder)) and len(m.fingerprint) == 16


def test_hub_cache_and_hub_id(sd_folder: Path, tmp_path: Path, capsys) -> None:
    """The cache layout (snapshots linked to blobs), found as `sd-turbo` and as --model ORG/NAME."""
    cache = tmp_path / "hub"
    no_taesd = tmp_path / "plain"
    for part in ("unet", "vae"):
        shutil.copytree(sd_folder / part, no_taesd / part)
    snap = mf.hub_cache(cache, "stabilityai/sd-turbo", no_taesd)
    mf.hub_cache(cache, "madebyollin/taesd", sd_folder / "taesd")
    assert (snap / "unet" / "config.json").is_symlink()
    a, b = load_model("sd-turbo", "cpu"), load_model("stabilityai/sd-turbo", "cpu")
    assert a.version == b.version == "stabilityai/sd-turbo@0123abcd" and a.fingerprint == b.fingerprint
    line = one_error_line(["encode", str(tmp_path), "-o", str(tmp_path / "x.plab"), "--model",
                           "someone/other-turbo", *FAST], capsys)
    assert "someone/other-turbo" in line and "Hugging Face cache" in line and str(cache) in line


def test_single_file_checkpoint(sd_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdt, "UNET_CONFIG", mf.UNET)
    monkeypatch.setattr(sdt, "VAE_CONFIG", mf.VAE)
    shutil.copytree(sd_folder / "taesd", tmp_path / "taesd")  # TAESD beside the file
    ckpt = tmp_path / "sd_turbo.safetensors"
    mods = mf.single_file(ckpt, seed=3)
    m = load_model(str(ckpt), "cpu")
    want = mods["unet"].state_dict()
    assert all(torch.equal(v, want[k]) for k, v in m.unet_module.state_dict().items())
    assert m.version == "sd_turbo.safetensors"


def test_fp16_variant_only_folder_loads(tmp_path: Path) -> None:
    folder = mf.diffusers_folder(tmp_path / "fp16", fp16=True)
    assert not (folder / "unet" / "diffusion_pytorch_model.safetensors").exists()
    m = load_model(str(folder), "cpu")
    assert m.dtype == torch.float32 and next(m.unet_module.parameters()).dtype == torch.float32


def test_sd1_unet_is_refused_before_any_work(tmp_path: Path, clip: Path, capsys) -> None:
    """Cross-attention 768 (an SD 1.x folder) used to load, then fail mid-encode leaving .partial files."""
    sd1 = mf.diffusers_folder(tmp_path / "sd1", cross=768)
    out = tmp_path / "out" / "a.plab"
    out.parent.mkdir()
    line = one_error_line(["encode", str(clip), "-o", str(out), "--model", str(sd1), *FAST], capsys)
    assert "768" in line and "1024" in line
    assert list(out.parent.iterdir()) == []  # no .partial, no sidecar, no output
    with pytest.raises(PromptlabError, match="768"):
        load_model(str(sd1), "cpu")
    # a 1024-wide config over 768-wide weights is caught from the weights' header too
    cfg = (sd1 / "unet" / "config.json").read_text().replace('"cross_attention_dim": 768', '"cross_attention_dim": 1024')
    (sd1 / "unet" / "config.json").write_text(cfg)
    with pytest.raises(PromptlabError, match="768"):
        check_model(str(sd1))


def test_truncated_and_foreign_single_files(tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "sd_turbo.safetensors"
    mf.single_file(ckpt)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    line = one_error_line(["encode", str(tmp_path), "-o", str(tmp_path / "x.plab"), "--model", str(ckpt), *FAST],
                          capsys)
    assert "truncated" in line and "SafetensorError" not in line
    with pytest.raises(PromptlabError, match="truncated"):
        load_model(str(ckpt), "cpu")
    ckpt.write_bytes(b"\x00" * 64 + data[64:200])
    with pytest.raises(PromptlabError, match="not a safetensors file"):
        load_model(str(ckpt), "cpu")
    sd1 = tmp_path / "v1-5.safetensors"
    mf.single_file(sd1, cross=768)
    with pytest.raises(PromptlabError, match="768"):
        load_model(str(sd1), "cpu")


def test_missing_vae_says_so(sd_folder: Path, tmp_path: Path) -> None:
    folder = copy(sd_folder, tmp_path / "novae")
    shutil.rmtree(folder / "vae")
    with pytest.raises(MissingWeightsError) as err:
        load_model(str(folder), "cpu")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"missing {folder / 'vae'}/ (the vae folder)")


def _doctor(monkeypatch: pytest.MonkeyPatch, sd: Path | str) -> list[str]:
    from promptlab.cli.doctor import report

    monkeypatch.setenv("PROMPTLAB_SD_TURBO", str(sd))
    lines, _ = report()
    return lines[lines.index("models:"):]


def test_doctor_is_ok_only_when_the_model_would_load(sd_folder: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    good = _doctor(monkeypatch, sd_folder)
    assert any("[ok] sd-turbo" in ln for ln in good)
    found = [ln for ln in good if "found" in ln]
    for name in ("unet", "vae", "taesd"):
        assert any(str(sd_folder / name / "diffusion_pytorch_model.safetensors") in ln for ln in found), good

    novae = copy(sd_folder, tmp_path / "novae")
    shutil.rmtree(novae / "vae")
    truncated = copy(sd_folder, tmp_path / "truncated")
    w = truncated / "unet" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:-1000])
    garbage = copy(sd_folder, tmp_path / "garbage")
    (garbage / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights at all" * 100)
    config_only = tmp_path / "config-only"
    for part in ("unet", "vae"):
        (config_only / part).mkdir(parents=True)
        shutil.copy(sd_folder / part / "config.json", config_only / part)
    for bad, why in ((novae, "the vae folder"), (truncated, "truncated"), (garbage, "not a safetensors file"),
                     (config_only, "the unet weights")):
        lines = _doctor(monkeypatch, bad)
        sd_line = next(ln for ln in lines if " sd-turbo " in ln)
        assert sd_line.startswith("  [missing] sd-turbo") and why in sd_line, (bad, lines)
        assert any("found" in ln for ln in lines), lines

    # the hub cache holding configs only (an interrupted download) is not [ok] either
    monkeypatch.delenv("PROMPTLAB_SD_TURBO")
    mf.hub_cache(tmp_path / "hub", "stabilityai/sd-turbo", config_only)
    with pytest.raises(MissingWeightsError, match="weights"):
        check_model("sd-turbo")


def test_gui_runs_and_saves_the_model_given_by_path(sd_folder: Path, tmp_path: Path, qtbot, capsys,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`gui --model PATH` used to run and save `tiny`: the window runs the path and the session keeps it."""
    pytest.importorskip("PySide6")
    from promptlab.gui.session import Session, load_session
    from promptlab.gui.window import MainWindow

    monkeypatch.setenv("PROMPTLAB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("PROMPTLAB_CACHE_DIR", str(tmp_path / "cache"))
    win = MainWindow(Session(settings=Settings(size=64, model=str(sd_folder))))
    qtbot.addWidget(win)
    assert win.controls.settings().model == str(sd_folder)  # what a run loads
    win.close()
    assert load_session().settings.model == str(sd_folder)  # what the next start offers
    line = one_error_line(["gui", "--model", str(tmp_path / "absent"), "--exit"], capsys)
    assert "does not exist" in line


def _two_tiny_files(tmp_path: Path) -> tuple[Path, Path]:
    """Two tiny weights files with the same version string and different weights."""
    from promptlab.models.tiny import save_tiny

    files = []
    for i, bias in enumerate((0.0, 0.25)):
        m = load_model("tiny", "cpu")
        with torch.no_grad():
            m.unet_module.conv_out.bias.add_(bias)
        files.append(tmp_path / f"tiny{i}.safetensors")
        save_tiny(m, files[-1], version="same-name")
    return files[0], files[1]


SMALL = Settings(model="tiny", size=64, rank=2, interval=1, iters=1, first_iters=1, perceptual="none")


def test_results_key_follows_the_weights(tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch,
                                         sd_folder: Path) -> None:
    """Same settings, other weights under the same name: the GUI's cached result is not served."""
    from promptlab.runs.results import result_key

    a, b = _two_tiny_files(tmp_path)
    s = SMALL
    keys = []
    for f in (a, b, a):
        monkeypatch.setenv("PROMPTLAB_TINY", str(f))
        keys.append(result_key(clip, s, None))
    assert keys[0] != keys[1] and keys[0] == keys[2]
    other = copy(sd_folder, tmp_path / "other")
    before = result_key(clip, s.replace(model=str(other)), None)
    mf.diffusers_folder(tmp_path / "reseeded", seed=1)
    shutil.copy(tmp_path / "reseeded" / "unet" / "diffusion_pytorch_model.safetensors", other / "unet")
    assert result_key(clip, s.replace(model=str(other)), None) != before


def test_resume_follows_the_weights(tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupted encode is resumed with the same weights only, even under the same version name."""
    a, b = _two_tiny_files(tmp_path)
    s = SMALL

    def interrupted(out: Path) -> None:
        ev = threading.Event()
        with pytest.raises(PromptlabError):  # Cancelled after keyframe 0
            for r in encode(clip, s, out, cancel=ev):
                if isinstance(r, records.KeyframeDone):
                    ev.set()
        assert partial_paths(out)[0].exists()

    def resumed(out: Path) -> int:
        return next(r for r in encode(clip, s, out) if isinstance(r, records.Started)).resumed_keyframes

    monkeypatch.setenv("PROMPTLAB_TINY", str(a))
    interrupted(tmp_path / "same.plab")
    assert resumed(tmp_path / "same.plab") == 1  # same weights: resumed
    interrupted(tmp_path / "other.plab")
    monkeypatch.setenv("PROMPTLAB_TINY", str(b))
    assert resumed(tmp_path / "other.plab") == 0
