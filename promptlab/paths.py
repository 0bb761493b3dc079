"""Where promptlab's files live: those shipped inside the package, and the user's own.

Shipped files (the presets, the sample clip) are found through importlib.resources, so a wheel
install finds them exactly as a source checkout does. What the user makes (the GUI session,
saved presets) goes to the config folder and downloads to the cache folder, never into the
install. Qt-free.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def bundled(*parts: str) -> Path:
    """A file or folder shipped inside the promptlab package (it may not exist)."""
    return Path(str(resources.files("promptlab").joinpath(*parts)))


# The bundled evaluation clips (promptlab/assets/ATTRIBUTION.md): the model never trains on them.
# The first is the demo the window opens with.
EVALUATION_CLIPS = ("sky", "pedestrians", "box")


def evaluation_clip(name: str) -> Path | None:
    """A bundled evaluation clip by name (see EVALUATION_CLIPS), if installed."""
    p = bundled("assets", f"{name}.mp4")
    return p if p.is_file() else None


def evaluation_clips() -> list[Path]:
    """Every bundled evaluation clip that is installed, the demo first."""
    return [p for p in map(evaluation_clip, EVALUATION_CLIPS) if p is not None]


def sample_clip() -> Path | None:
    """The demo clip (the sky time-lapse), if installed."""
    return evaluation_clip(EVALUATION_CLIPS[0])


def config_dir() -> Path:
    """$PROMPTLAB_CONFIG_DIR, else ~/.config/promptlab: the GUI session and the user's presets."""
    env = os.environ.get("PROMPTLAB_CONFIG_DIR")
    return Path(env) if env else Path.home() / ".config" / "promptlab"


def downloads_dir() -> Path:
    """$PROMPTLAB_DOWNLOADS, else $XDG_CACHE_HOME/promptlab/downloads, else ~/.cache/promptlab/downloads."""
    env = os.environ.get("PROMPTLAB_DOWNLOADS")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "promptlab" / "downloads"
