"""The comparison methods' table: one entry per method, parsed lists, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from promptlab.errors import PromptlabError
from promptlab.runs import methods


def test_every_method_is_registered_once_with_a_label_and_a_tolerance() -> None:
    names = methods.names()
    assert {"h265", "h264", "vae"} <= set(names)
    for n in names:
        m = methods.get(n)
        assert m.name == n and m.label and 0 < m.tolerance < 1


def test_parse_reads_lists_and_refuses_unknown_or_repeated_names() -> None:
    assert methods.parse("h265, vae") == ["h265", "vae"]
    assert methods.parse("none") == [] and methods.parse("") == []
    with pytest.raises(PromptlabError, match="unknown baseline 'x266'"):
        methods.parse("h265,x266")
    with pytest.raises(PromptlabError, match="twice"):
        methods.parse("h265,h265")


def test_encode_goes_through_the_table_and_counts_every_byte() -> None:
    rng = np.random.default_rng(0)
    frames = [np.clip(rng.normal(128, 30, (32, 32, 3)), 0, 255).astype(np.uint8) for _ in range(6)]
    out = methods.encode("h264", frames, 10.0, 60.0, tolerance=0.5)
    assert out.codec == "h264" and out.bytes == len(out.stream) and len(out.recon) == 6
    assert abs(out.kbps - out.bytes * 8 / 1000 / (6 / 10.0)) < 1e-6
