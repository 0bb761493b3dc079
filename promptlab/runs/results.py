"""Finished results on disk, named by what produced them, so unchanged settings are never recomputed.

A result is named by the hash of the encode settings (`Settings.key(*ENCODE_KEYS)`), the
fingerprint of the model's weights, the source's path and modification time, and the frame
range. Qt-free: the job process writes results and the window reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promptlab.io.atomic import write_bytes_atomic
from promptlab.settings import ENCODE_KEYS, Settings

RESULT_FILES = ("metrics.json", "recon.npz")


def cache_dir() -> Path:
    """Where results live: $PROMPTLAB_CACHE_DIR, else ~/.cache/promptlab."""
    env = os.environ.get("PROMPTLAB_CACHE_DIR")
    base = Path(env) if env else Path.home() / ".cache" / "promptlab"
    return base


def source_stamp(src: str | Path) -> str:
    """The source's identity: absolute path, and size and modification time of it (or of each file in it).

    Every file counts, not only the newest: touching one file of a folder whose newest time
    is unchanged (or ties with the folder's own) must still name a new result.
    """
    p = Path(src).resolve()
    try:
        files = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
        facts = [f"{q.name}:{q.stat().st_size}:{q.stat().st_mtime_ns}" for q in files]
    except OSError:
        facts = ["unreadable"]
    return f"{p}|" + hashlib.sha256("|".join(facts).encode()).hexdigest()[:16]


def result_key(src: str | Path, settings: Settings, frames: tuple[int, int] | None) -> str:
    """The name of a result: what would change the stream (settings, the model's weights), its source and frames."""
    from promptlab.models.registry import model_fingerprint

    rng = "all" if frames is None else f"{frames[0]}:{frames[1]}"
    payload = f"{settings.key(*ENCODE_KEYS)}|{model_fingerprint(settings.model)}|{source_stamp(src)}|{rng}"
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@dataclass
class Result:
    """Everything the window shows for one run: per-frame records, reconstructions, baseline."""

    key: str
    path: Path
    frames: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    recon: np.ndarray | None = None
    baseline_frames: list[dict[str, Any]] = field(default_factory=list)
    baseline_summary: dict[str, Any] = field(default_factory=dict)
    baseline: np.ndarray | None = None

    @property
    def stream(self) -> Path:
        return self.path / "stream.plab"


class ResultsCache:
    """A folder of results, one sub-folder per key; a result exists once metrics.json is written."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "results"

    def path(self, key: str) -> Path:
        return self.root / key

    def work_stream(self, key: str) -> Path:
        """Where an unfinished encode keeps its stream, so a crashed run can resume."""
        return self.root / "work" / f"{key}.plab"

    def has(self, key: str, baseline: bool = False) -> bool:
        p = self.path(key)
        ok = all((p / n).is_file() for n in RESULT_FILES)
        return ok and (not baseline or (p / "baseline.json").is_file())

    def load(self, key: str) -> Result | None:
        """The stored result, or None when it is missing or unreadable (then it is recomputed)."""
        p = self.path(key)
        if not self.has(key):
            return None
        try:
            meta = json.loads((p / "metrics.json").read_text())
            with np.load(p / "recon.npz") as z:
                recon = z["frames"]
            res = Result(key=key, path=p, frames=meta["frames"], summary=meta["summary"], recon=recon)
            if (p / "baseline.json").is_file() and (p / "baseline.npz").is_file():
                b = json.loads((p / "baseline.json").read_text())
                with np.load(p / "baseline.npz") as z:
                    res.baseline = z["frames"]
                res.baseline_frames, res.baseline_summary = b["frames"], b["summary"]
            return res
        except (OSError, ValueError, KeyError):
            return None

    def save(self, key: str, frames: list[dict], summary: dict, recon: np.ndarray) -> Path:
        """Write the reconstruction first and metrics.json last: metrics.json marks completion."""
        return self._write(key, "recon.npz", "metrics.json", frames, summary, recon)

    def save_baseline(self, key: str, frames: list[dict], summary: dict, recon: np.ndarray) -> None:
        self._write(key, "baseline.npz", "baseline.json", frames, summary, recon)

    def _write(self, key: str, frames_file: str, table_file: str, frames: list[dict], summary: dict,
               recon: np.ndarray) -> Path:
        """Frames first, the JSON table last (atomically): the table's presence means complete."""
        p = self.path(key)
        p.mkdir(parents=True, exist_ok=True)
        _save_npz(p / frames_file, recon)
        write_bytes_atomic(p / table_file, _json({"frames": frames, "summary": summary}))
        return p


def _save_npz(path: Path, frames: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, frames=frames)
    write_bytes_atomic(path, buf.getvalue())


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, default=_plain) + "\n").encode()


def _plain(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
