"""Weights files without loading them: is a .safetensors file whole, and which weights are these.

A safetensors file is an 8-byte little-endian header length, a JSON header naming every
tensor's dtype, shape and byte range, then the data. Reading the header costs milliseconds
even for a 5 GB checkpoint, and it is enough to refuse a truncated download or a file that is
not safetensors at all before any model is built. The fingerprint names the weights actually
used (so a cached result or a resumed encode is never served for other weights): a hash of
each file's size and its first and last MiB, content-based so a copied folder keeps its name.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from promptlab.errors import PromptlabError

MIB = 1 << 20
_MAX_HEADER = 100 * MIB  # safetensors' own limit
_fingerprints: dict[tuple[str, int, int], str] = {}


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file; PromptlabError (one line) if it is damaged or truncated."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise PromptlabError(f"{path} is not a safetensors file ({size} bytes): re-download it")
            (n,) = struct.unpack("<Q", raw)
            if n > min(_MAX_HEADER, size - 8):
                raise PromptlabError(f"{path} is not a safetensors file, or is truncated: re-download it")
            header = json.loads(fh.read(n))
    except OSError as exc:
        raise PromptlabError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise PromptlabError(f"{path} is not a safetensors file (its header is not JSON): re-download it") from None
    if not isinstance(header, dict):
        raise PromptlabError(f"{path} is not a safetensors file: re-download it")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(entry["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise PromptlabError(f"{path} has a damaged header (tensor {name}): re-download it") from None
    if size < 8 + n + end:
        raise PromptlabError(f"{path} is truncated ({size} bytes, its header needs {8 + n + end}): "
                             "the download did not finish; re-download it")
    return header


def tensor_shape(header: dict[str, Any], name: str) -> list[int] | None:
    """The shape a safetensors header gives for one tensor, or None when it has no such tensor."""
    entry = header.get(name)
    return list(entry["shape"]) if isinstance(entry, dict) and "shape" in entry else None


def fingerprint(paths: list[Path]) -> str:
    """A short stable name for a set of weights files: sizes plus the first and last MiB of each."""
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda q: q.name):
        h.update(f"{p.name}|".encode())
        h.update(_file_digest(p).encode())
    return h.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _fingerprints:
        h = hashlib.sha256(str(st.st_size).encode())
        with open(path, "rb") as fh:
            h.update(fh.read(MIB))
            if st.st_size > 2 * MIB:
                fh.seek(-MIB, 2)
                h.update(fh.read(MIB))
            else:
                h.update(fh.read())
        _fingerprints[key] = h.hexdigest()
    return _fingerprints[key]
