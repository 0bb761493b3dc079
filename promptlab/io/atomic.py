"""Atomic writes: a reader (or a crash) never sees a half-written file at the target path."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from promptlab.errors import PromptlabError


def check_target(path: str | os.PathLike, force: bool) -> Path:
    """Refuse to overwrite what the user made unless asked to."""
    p = Path(path)
    if p.exists() and not force:
        raise PromptlabError(f"{p} already exists (use --force to overwrite)")
    if not p.parent.exists():
        raise PromptlabError(f"output folder {p.parent} does not exist")
    check_writable(p.parent)
    return p


def check_writable(folder: str | os.PathLike) -> Path:
    """Refuse up front a folder we cannot write into (read-only disk, permissions), before any work.

    Tries what the writers do (a temporary file beside the target), so what passes here can be written.
    """
    d = Path(folder)
    if not d.is_dir():
        raise PromptlabError(f"output folder {d} is not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".promptlab-write-check.", dir=d)
    except OSError as exc:
        raise PromptlabError(f"cannot write into {d}: {exc.strerror or exc}; choose another output folder") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return d


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    The temporary name keeps the extension (writers such as PyAV pick the format from it).
    On any exception the temporary file or folder is removed and `path` is untouched.
    """
    target = Path(path)
    ext = suffix if suffix is not None else target.suffix
    clean_stale(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.{os.getpid()}.", suffix=f".part{ext}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets normal permissions
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        if target.is_dir() and not tmp.is_dir():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(target: Path) -> list[Path]:
    """Remove temporaries that a killed writer of `target` left behind (their PID is gone)."""
    removed = []
    for pattern in (f".{target.stem}.*.part*", f".{target.name}.*.part"):
        for p in target.parent.glob(pattern):
            parts = p.name.split(".")
            pid = next((int(x) for x in parts[2:3] if x.isdigit()), None)
            if pid is None or _alive(pid):
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            removed.append(p)
    return removed


def _umask() -> int:
    """The process umask, read without setting it: os.umask sets it process-wide, racing other threads'
    file creation while the GUI exports. Linux reports it in /proc; elsewhere the value read at import."""
    mask = _proc_umask()
    return _UMASK_AT_IMPORT if mask is None else mask


def _proc_umask() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_at_import() -> int:
    mask = _proc_umask()
    if mask is None:  # no /proc: read it once, at import, before any thread of ours writes files
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_at_import()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_dir(path: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """Like atomic_path, for an output folder (e.g. a folder of PNG frames)."""
    return _atomic_dir(Path(path))


@contextlib.contextmanager
def _atomic_dir(target: Path) -> Iterator[Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".part", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
