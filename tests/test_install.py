"""A fresh install works: the wheel carries the presets and the sample clip, an installed copy finds
them from any folder, user presets go to the config folder, optional commands say what to install."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from promptlab.cli.main import main

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("promptlab/presets/preview.json", "promptlab/presets/quality.json", "promptlab/presets/reference.json",
           "promptlab/assets/sky.mp4", "promptlab/assets/ATTRIBUTION.md")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (the checkout itself is left untouched)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "promptlab", src / "promptlab", ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(src), "-w", str(root / "dist")]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.insert(5, "--no-build-isolation")  # build with what is here, no download
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return next((root / "dist").glob("promptlab-*.whl"))


@pytest.mark.slow
def test_the_wheel_ships_presets_and_the_sample_clip(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(SHIPPED) <= names, sorted(set(SHIPPED) - names)


@pytest.mark.slow
def test_an_installed_wheel_finds_them_from_another_folder(wheel, tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    code = ("import json, promptlab; from promptlab import settings as s; from promptlab.gui.app import default_source; "
            "saved = s.save_user_preset(s.Settings(rank=3), 'mine'); "
            "print(json.dumps({'file': promptlab.__file__, 'presets': s.list_presets(), "
            "'preview_iters': s.load_preset('preview').iters, 'mine': s.load_preset('mine').rank, "
            "'saved': str(saved), 'clip': default_source()}))")
    env = dict(os.environ, PYTHONPATH=str(site), PROMPTLAB_CONFIG_DIR=str(tmp_path / "config"))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).is_relative_to(site)
    assert {"preview", "reference", "mine"} <= set(got["presets"])
    assert got["preview_iters"] == 3 and got["mine"] == 3
    assert Path(got["saved"]) == tmp_path / "config" / "presets" / "mine.json"
    assert not list(site.rglob("mine.json"))  # nothing written into the install
    assert Path(got["clip"]) == site / "promptlab" / "assets" / "sky.mp4"


def test_the_lab_opens_the_bundled_clip_by_default():
    from promptlab.gui.app import default_source
    from promptlab.io.video import probe

    clip = Path(default_source())
    assert clip == REPO / "promptlab" / "assets" / "sky.mp4"
    info = probe(clip)
    assert (info.width, info.height, info.frame_count) == (256, 256, 141)


@pytest.mark.timeout(120)
def test_gui_run_exit_without_any_source_is_one_line_not_a_hang(tmp_path, monkeypatch, capsys):
    from promptlab.gui import app

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setenv("PROMPTLAB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("PROMPTLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(app, "sample_clip", lambda: None)  # an install without the sample clip
    assert main(["gui", "--preset", "preview", "--run", "--exit"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("promptlab gui: error: no source given") and "Traceback" not in "\n".join(lines)


def test_bench_without_transformers_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    assert main(["bench", "--size", "64", "--frames", "2", "--reps", "1", "--inv-iters", "1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("promptlab bench: error:")
    assert 'pip install "promptlab[bench]"' in lines[0]


def test_train_tiny_without_scikit_image_says_what_to_install(tmp_path, monkeypatch, capsys):
    from tests.test_train_tiny import _mp4

    monkeypatch.setitem(sys.modules, "skimage", None)
    out = tmp_path / "w.safetensors"
    assert main(["train-tiny", "-o", str(out), "--data", str(_mp4(tmp_path / "clip.mp4")), "--steps", "1",
                 "--ae-steps", "1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and 'pip install "promptlab[train]"' in lines[0] and not out.exists()


def test_doctor_lists_optional_packages_apart(monkeypatch, capsys):
    from importlib import metadata

    real = metadata.version

    def version(dist: str) -> str:
        if dist in ("transformers", "scikit-image"):
            raise metadata.PackageNotFoundError(dist)
        return real(dist)

    from promptlab.cli.doctor import report

    _, missing_with_everything = report()
    monkeypatch.setattr(metadata, "version", version)
    lines, missing = report()
    assert missing == missing_with_everything  # optional packages are never counted as missing
    text = "\n".join(lines)
    assert 'transformers             not installed' in text and 'pip install "promptlab[bench]"' in text
    assert 'pip install "promptlab[train]"' in text and "fix: pip install transformers" not in text



def test_readme_starts_with_the_title_then_the_two_commands_ci_runs_the_second():
    lines = (REPO / "README.md").read_text().splitlines()
    assert lines[0] == "# promptlab" and lines[1] == "" and lines[4] == ""
    run, test = (ln.removeprefix("    ") for ln in lines[2:4])
    assert lines[2].startswith("    python3 -m pip install") and lines[3].startswith("    python3 -m pip install")
    assert "fetch-weights lpips" in run and "gui" in run and "--run" in run  # a first run with LPIPS
    assert "fetch-weights lpips" in test and test.endswith("python3 -m pytest -q")
    r = subprocess.run(["bash", "-c", "sed -n '3,4p' README.md | grep -m1 -- '-m pytest' | sed 's/^    //'"],
                       cwd=REPO, capture_output=True, text=True, timeout=30)
    ci = (REPO / ".ci" / "run").read_text()
    assert "sed -n '3,4p' README.md | grep -m1 -- '-m pytest' | sed 's/^    //'" in ci and 'exec bash' in ci
    assert r.stdout.strip() == test
