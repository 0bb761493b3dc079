"""Model backends: the tiny model, the SD-Turbo architecture, and the missing-weights path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from promptlab.errors import MissingWeightsError, PromptlabError
from promptlab.models import available_models, load_model
from promptlab.models.tiny import save_tiny


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


def test_tiny_is_deterministic_and_labelled_random() -> None:
    a, b = load_model("tiny", "cpu"), load_model("tiny", "cpu")
    assert a.random_weights and "random weights" in a.label
    for pa, pb in zip(a.unet_module.parameters(), b.unet_module.parameters(), strict=True):
        assert torch.equal(pa, pb)
    x = torch.randn(2, 4, 8, 8)
    ctx = torch.rand(2, 77, a.context_dim)
    eps = a.unet(x, torch.full((2,), 999), ctx)
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    img = a.decode(x)
    assert img.shape == (2, 3, 64, 64)
    lat = a.encode_init(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert lat.shape == (1, 4, 8, 8)


def test_tiny_loads_a_weights_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = load_model("tiny", "cpu")
    with torch.no_grad():
        m.unet_module.conv_out.bias.add_(0.25)  # a "trained" model differs from the seeded one
    f = tmp_path / "tiny.safetensors"
    save_tiny(m, f, version="test-1")
    monkeypatch.setenv("PROMPTLAB_TINY", str(f))
    t = load_model("tiny", "cpu")
    assert not t.random_weights and t.version == "test-1" and "random" not in t.label
    assert torch.equal(t.unet_module.conv_out.bias, m.unet_module.conv_out.bias)
    monkeypatch.setenv("PROMPTLAB_TINY", str(tmp_path / "absent.safetensors"))
    with pytest.raises(MissingWeightsError):
        load_model("tiny", "cpu")


@pytest.mark.slow
def test_sd_turbo_arch_has_the_real_shape() -> None:
    m = load_model("sd-turbo-arch", "cpu")
    n = sum(p.numel() for p in m.unet_module.parameters())
    assert abs(n / 1e6 - 865.9) < 0.1  # SD 2.1 UNet: 865.9 M parameters
    assert m.context_dim == 1024 and m.random_weights and "random weights" in m.label


def test_sd_turbo_without_files_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMPTLAB_SD_TURBO", raising=False)
    monkeypatch.delenv("PROMPTLAB_TAESD", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(MissingWeightsError) as err:
        load_model("sd-turbo", "cpu")
    msg = str(err.value)
    assert "\n" not in msg and "PROMPTLAB_SD_TURBO" in msg and "TAESD" in msg
    avail = dict((name, ok) for name, ok, _ in available_models())
    assert avail == {"tiny": True, "tiny2": True, "sd-turbo": False, "sd-turbo-arch": True}


def test_model_path_that_is_not_weights(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError):
        load_model(str(tmp_path), "cpu")
    with pytest.raises(PromptlabError):
        load_model(str(tmp_path / "nope"), "cpu")
    with pytest.raises(PromptlabError):
        load_model("no-such-model", "cpu")


def test_runtime_refuses_fp16_on_cpu_and_unknown_devices() -> None:
    with pytest.raises(PromptlabError, match="fp16"):
        load_model("tiny", "cpu", "fp16")
    with pytest.raises(PromptlabError):
        load_model("tiny", "tpu")
    m = load_model("tiny", "cpu", "bf16")
    assert m.dtype == torch.bfloat16


def test_reference_prompts_stop_at_weight_loading(sky_prompts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys) -> None:
    """The published prompts go through the sd-turbo path up to weight loading, then a clear error."""
    official = pytest.importorskip("promptlab.codec.official")
    from promptlab.cli.main import main
    from promptlab.codec.container import write_stream

    monkeypatch.delenv("PROMPTLAB_SD_TURBO", raising=False)
    monkeypatch.delenv("PROMPTLAB_TAESD", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    header, init, recs = official.import_dir(sky_prompts)
    plab = tmp_path / "ref.plab"
    write_stream(plab, header, init, recs)
    out = tmp_path / "frames"
    rc = main(["decode", str(plab), "-o", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    lines = [ln for ln in err.splitlines() if ln.startswith("promptlab decode: error:")]
    assert len(lines) == 1 and "PROMPTLAB_SD_TURBO" in lines[0] and "Traceback" not in err


def test_a_preloaded_model_is_handed_out_once() -> None:
    """The GUI's spare job process loads its model before the job is known; the job gets that object."""
    from promptlab.models import registry

    registry.preload("tiny", "cpu")
    (warm,) = registry._PRELOADED.values()
    assert registry.load_model("tiny", "cpu") is warm
    assert registry.load_model("tiny", "cpu") is not warm and not registry._PRELOADED
