"""The bundled evaluation clips are unseen by the model: none can become training data, under any name or folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from promptlab.errors import PromptlabError
from promptlab.paths import EVALUATION_CLIPS, evaluation_clips, sample_clip
from promptlab.train.data import find_videos


def test_the_bundled_clip_is_refused_wherever_it_is(tmp_path: Path, make_clip, ramp) -> None:
    clip = sample_clip()
    assert clip is not None
    with pytest.raises(PromptlabError, match="evaluation clip"):
        find_videos([clip])
    clips = evaluation_clips()
    assert [p.stem for p in clips] == list(EVALUATION_CLIPS)
    for other in clips[1:]:
        with pytest.raises(PromptlabError, match="evaluation clip"):
            find_videos([other])
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(clips[-1], folder / "holiday.mp4")
    with pytest.raises(PromptlabError, match="evaluation clip"):
        find_videos([folder])
    # another video in the same folder is fine once the copy is gone
    (folder / "holiday.mp4").unlink()
    other = make_clip(folder / "ramp.mp4", ramp(3, 48, 64), codec="libx264", pix_fmt="yuv420p")
    assert find_videos([folder]) == [other]
