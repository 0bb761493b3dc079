"""Streams are byte-identical to those recorded before a refactor (tests/data/stream-checksums.json).

The checksums were made by `python tests/stream_cases.py --write` on the code before the structural
changes of the codec/registry work; any change to what a stream holds shows here. A new stream
format is a deliberate change: re-record and say so in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stream_cases import CASES, CHECKSUMS, digest, encode, environment

RECORD = json.loads(CHECKSUMS.read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_stream_has_its_recorded_bytes(name: str, tmp_path: Path) -> None:
    if environment() != RECORD["environment"]:
        pytest.skip(f"checksums recorded with {RECORD['environment']}, this is {environment()}")
    assert digest(encode(name, tmp_path)) == RECORD["sha256"][name], f"{name}: the stream's bytes changed"


def test_every_case_has_a_checksum() -> None:
    assert set(RECORD["sha256"]) == set(CASES)
