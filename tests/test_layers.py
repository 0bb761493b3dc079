"""Packages form layers (.importlinter): no import cycles between packages, function-level imports included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def lint(config: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    return subprocess.run([exe, "--config", str(config), "--no-cache"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_the_layers_contract_is_kept() -> None:
    r = lint(REPO / ".importlinter")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "2 kept, 0 broken" in r.stdout


def test_the_contract_catches_a_cycle(tmp_path: Path) -> None:
    # the same contract with two layers swapped: models import codec, so it must break
    text = (REPO / ".importlinter").read_text()
    swapped = text.replace("    models\n", "    MODELS\n").replace("    codec\n", "    models\n").replace(
        "    MODELS\n", "    codec\n")
    assert swapped != text
    cfg = tmp_path / "swapped.ini"
    cfg.write_text(swapped)
    r = lint(cfg)
    assert r.returncode != 0 and "BROKEN" in r.stdout.upper()


def test_the_qt_contract_catches_qt_in_the_core(tmp_path: Path) -> None:
    # the same contract with gui/ among its sources: gui imports PySide6, so it must break
    text = (REPO / ".importlinter").read_text()
    widened = text.replace("source_modules =\n", "source_modules =\n    promptlab.gui\n")
    assert widened != text
    cfg = tmp_path / "widened.ini"
    cfg.write_text(widened)
    r = lint(cfg)
    assert r.returncode != 0 and "Qt (PySide6, pyqtgraph) only in promptlab.gui BROKEN" in r.stdout
