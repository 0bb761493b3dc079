"""The sky clip is the unseen demo: it can never become training data, under any name or folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from promptlab.errors import PromptlabError
from promptlab.paths import sample_clip
from promptlab.train.data import find_videos


def test_the_bundled_clip_is_refused_wherever_it_is(tmp_path: Path, make_clip, ramp) -> None:
    clip = sample_clip()
    assert clip is not None
    with pytest.raises(PromptlabError, match="unseen demo"):
        find_videos([clip])
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(clip, folder / "holiday.mp4")
    with pytest.raises(PromptlabError, match="unseen demo"):
        find_videos([folder])
    # another video in the same folder is fine once the copy is gone
    (folder / "holiday.mp4").unlink()
    other = make_clip(folder / "ramp.mp4", ramp(3, 48, 64), codec="libx264", pix_fmt="yuv420p")
    assert find_videos([folder]) == [other]
