"""The window's state between runs: settings, last source and view options, as one JSON file.

Kept in the config folder (promptlab.paths.config_dir)/gui.json and written atomically, so
a crash never leaves a half-written session. A session from another schema version, or one
that no longer validates, is ignored (defaults are used) rather than half-read. Qt-free.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from promptlab.errors import PromptlabError
from promptlab.io.atomic import write_bytes_atomic
from promptlab.paths import config_dir
from promptlab.settings import Settings

SESSION_VERSION = 1


def first_run_settings() -> Settings:
    """A new lab starts on the fast preview preset: the reference budget is hours per keyframe on CPU."""
    from promptlab.settings import load_preset

    try:
        return load_preset("preview")
    except PromptlabError:
        return Settings()


@dataclass
class Session:
    """What the window restores at start-up."""

    settings: Settings = field(default_factory=first_run_settings)
    source: str | None = None
    frames: str = ""                  # "A:B" or "" for the whole clip
    view_mode: str = "side"           # side | split | diff
    baseline: bool = False
    target_kbps: float = 0.0          # 0: rank is set directly
    geometry: str = ""                # hex of QWidget.saveGeometry()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["settings"] = self.settings.to_dict()
        d["version"] = SESSION_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Session:
        if d.get("version") != SESSION_VERSION:
            raise PromptlabError("session file from another version")
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known and k != "settings"}
        return cls(settings=Settings.from_dict(d.get("settings") or {}), **kw)


def session_path() -> Path:
    return config_dir() / "gui.json"


def load_session() -> Session:
    """The saved session, or defaults when there is none or it cannot be used."""
    p = session_path()
    try:
        return Session.from_dict(json.loads(p.read_text()))
    except (OSError, ValueError, TypeError, PromptlabError):
        return Session()


def save_session(session: Session) -> Path:
    p = session_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(p, (json.dumps(session.to_dict(), indent=2) + "\n").encode())
    return p
