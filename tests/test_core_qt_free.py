"""The core (everything outside promptlab.gui) must import with Qt made unimportable."""

import subprocess
import sys
from pathlib import Path

import promptlab

CODE = r"""
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("PySide6", "pyqtgraph", "shiboken6", "PyQt5", "PyQt6"):
            raise ImportError("Qt is blocked in this test: " + name)
        return None
sys.meta_path.insert(0, Block())
import promptlab
names = [m.name for m in pkgutil.walk_packages(promptlab.__path__, "promptlab.")
         if not m.name.startswith("promptlab.gui") and m.name != "promptlab.__main__"]
for n in names:
    importlib.import_module(n)
bad = [m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyqtgraph", "shiboken6")]
assert not bad, bad
print(len(names))
"""


def test_core_imports_without_qt():
    root = Path(promptlab.__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, cwd=root, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout.strip().splitlines()[-1]) >= 10
