import json
from pathlib import Path

import pytest

import promptlab
from promptlab.errors import PromptlabError
from promptlab.settings import (
    ENCODE_KEYS,
    SCHEMA_VERSION,
    Settings,
    list_presets,
    load_preset,
    load_settings_file,
    preset_path,
    save_settings_file,
    save_user_preset,
)


def test_defaults_follow_the_reference():
    s = Settings()
    assert (s.rank, s.bits, s.interval, s.seed, s.blend, s.lr) == (8, 8, 10, 88, 0.05, 0.1)
    assert (s.iters, s.first_iters, s.patience, s.first_patience) == (1500, 10000, 20, 300)
    assert (s.w_mse, s.w_perceptual, s.w_reg) == (0.8, 0.2, 0.1)


def test_presets_load_and_differ():
    assert {"reference", "preview"} <= set(list_presets())
    ref, prev = load_preset("reference"), load_preset("preview")
    assert ref.size == 512 and not ref.batched and ref.first_iters == 10000
    assert prev.iters < ref.iters
    assert ref.key(*ENCODE_KEYS) != prev.key(*ENCODE_KEYS)


def test_preview_runs_tiny2_quickly_and_quality_spends_more_on_the_same_rate():
    """The README's first command runs the preview: tiny2 from its SVD start, a few small steps;
    `quality` keeps the preview's rate settings and buys quality with iterations only."""
    prev, qual, default = load_preset("preview"), load_preset("quality"), Settings()
    assert prev.model == "tiny2" and (prev.first_iters, prev.iters, prev.lr) == (5, 3, 0.01)
    assert (prev.size, prev.rank, prev.interval, prev.bits, prev.init_mode) == (128, 8, 20, 3, "zero")
    assert qual.model == "tiny2" and qual.first_iters > prev.first_iters and qual.iters > prev.iters
    rate = ("size", "rank", "interval", "bits", "init_mode", "model")
    assert qual.key(*rate) == prev.key(*rate) and qual.key(*ENCODE_KEYS) != prev.key(*ENCODE_KEYS)
    assert qual.perceptual == "ms-ssim" != default.perceptual  # named, not a silent fallback from vgg
    # a preset's model wins over the one it is loaded on; one that names none keeps it
    assert load_preset("preview", Settings(model="tiny")).model == "tiny2"
    assert load_preset("reference", Settings(model="tiny2")).model == "tiny2"


def test_presets_ship_inside_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTLAB_CONFIG_DIR", str(tmp_path / "config"))
    package = Path(promptlab.__file__).resolve().parent
    assert preset_path("preview") == package / "presets" / "preview.json"


def test_user_presets_go_to_the_config_folder_and_come_first(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTLAB_CONFIG_DIR", str(tmp_path / "config"))
    shipped = preset_path("preview").read_bytes()
    saved = save_user_preset(Settings(rank=3), "preview", description="mine")
    assert saved == tmp_path / "config" / "presets" / "preview.json"
    assert load_preset("preview").rank == 3  # the user's own comes before the shipped one
    assert preset_path("reference").parent.name == "presets" and load_preset("reference").size == 512
    save_user_preset(Settings(rank=5), "mine")
    assert {"mine", "preview", "reference"} <= set(list_presets()) and load_preset("mine").rank == 5
    monkeypatch.setenv("PROMPTLAB_CONFIG_DIR", str(tmp_path / "other"))
    assert preset_path("preview").read_bytes() == shipped  # the install was not touched
    for bad in ("", "..", "a/b", "../up"):
        with pytest.raises(PromptlabError, match="plain file name"):
            save_user_preset(Settings(), bad)
    assert not (tmp_path / "up.json").exists()


def test_roundtrip_and_schema(tmp_path):
    s = Settings(rank=4, interval=5, interp="slerp", batched=False)
    p = tmp_path / "s.json"
    save_settings_file(s, p, description="x")
    assert load_settings_file(p) == s
    d = json.loads(p.read_text())
    assert d["schema_version"] == SCHEMA_VERSION
    d["schema_version"] = 99
    p.write_text(json.dumps(d))
    with pytest.raises(PromptlabError, match="schema version 99"):
        load_settings_file(p)


@pytest.mark.parametrize("bad", [{"rank": 0}, {"bits": 9}, {"size": 100}, {"interp": "cubic"},
                                 {"nonsense": 1}, {"rank": "many"}, {"batched": "maybe"}])
def test_bad_settings_are_clear_errors(bad):
    with pytest.raises(PromptlabError):
        Settings.from_dict(bad)


def test_key_depends_only_on_named_settings():
    a, b = Settings(), Settings(cache="lossless", device="cpu")
    assert a.key(*ENCODE_KEYS) == b.key(*ENCODE_KEYS)
    assert a.key(*ENCODE_KEYS) != a.replace(rank=9).key(*ENCODE_KEYS)


def test_unreadable_settings_file(tmp_path):
    p = tmp_path / "s.json"
    p.write_text("{not json")
    with pytest.raises(PromptlabError, match="cannot read"):
        load_settings_file(p)
    with pytest.raises(PromptlabError, match="no preset"):
        load_preset("does-not-exist")


def test_crop_modes_have_one_home():
    """The reader's crop modes, the settings' check and the header's crop codes are one tuple (io.CROP_MODES)."""
    from promptlab import io, settings
    from promptlab.codec import container
    from promptlab.io import video

    assert video.CROP_MODES is settings.CROP_MODES is container.CROP_MODES is io.CROP_MODES
