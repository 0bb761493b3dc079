"""Write frames as a numbered PNG folder or a video file, atomically.

A folder (`00000.png, 00001.png, ...`) is the lossless exchange format that read_frames reads
back exactly; a video is for watching (.mp4/.mkv/.mov: H.264 yuv420p, .webm: VP9, .gif).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from promptlab.errors import PromptlabError
from promptlab.io.atomic import atomic_dir, atomic_path, check_target
from promptlab.io.video import fps_fraction, to_rgb_uint8

# extension -> (encoder, pixel format, options)
VIDEO_FORMATS: dict[str, tuple[str, str, dict[str, str]]] = {
    ".mp4": ("libx264", "yuv420p", {"crf": "16", "preset": "medium"}),
    ".mkv": ("libx264", "yuv420p", {"crf": "16", "preset": "medium"}),
    ".mov": ("libx264", "yuv420p", {"crf": "16", "preset": "medium"}),
    ".webm": ("libvpx-vp9", "yuv420p", {"crf": "24", "b": "0", "row-mt": "1"}),
    ".gif": ("gif", "rgb8", {}),
}
OTHER_MEDIA_EXTS = (".avi", ".m4v", ".ts", ".flv", ".wmv", ".hevc", ".h264", ".h265", ".265", ".264")


def write_frames(out: str | Path, frames: Iterable[np.ndarray], fps: float, force: bool = False) -> int:
    """Write all frames; return how many. Nothing is left at `out` if anything fails."""
    out = Path(out)
    if not (0 < fps <= 1000):
        raise PromptlabError(f"fps must be in (0, 1000], got {fps}")
    ext = out.suffix.lower()
    if ext in OTHER_MEDIA_EXTS:
        raise PromptlabError(f"cannot write {ext} files; use a folder name, "
                             f"or one of {', '.join(VIDEO_FORMATS)}")
    check_target(out, force)
    if out.exists() and out.is_dir() != (ext not in VIDEO_FORMATS):
        raise PromptlabError(f"{out} exists and is a {'folder' if out.is_dir() else 'file'}; "
                             "choose another output name")
    it = iter(frames)
    if ext in VIDEO_FORMATS:
        with atomic_path(out) as tmp:
            n = _write_video(tmp, it, fps, *VIDEO_FORMATS[ext])
            return n
    with atomic_dir(out) as tmp:
        n = _write_pngs(tmp, it)
        return n


def _checked(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    shape = None
    n = 0
    for f in frames:
        rgb = to_rgb_uint8(f)
        if shape is None:
            shape = rgb.shape
        elif rgb.shape != shape:
            raise PromptlabError(f"frame {n} is {rgb.shape[1]}x{rgb.shape[0]} but frame 0 is "
                                 f"{shape[1]}x{shape[0]}: a clip has one frame size")
        n += 1
        yield rgb
    if n == 0:
        raise PromptlabError("no frames to write")


def _write_pngs(folder: Path, frames: Iterator[np.ndarray]) -> int:
    n = 0
    for rgb in _checked(frames):
        path = folder / f"{n:05d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise PromptlabError(f"could not write {path}")
        n += 1
    return n


def even_size(width: int, height: int) -> tuple[int, int]:
    """The frame size yuv420p takes: odd sides grow by one (see pad_even)."""
    return width + width % 2, height + height % 2


def pad_even(rgb: np.ndarray, fill: tuple[int, int, int] | None = None) -> np.ndarray:
    """yuv420p needs even sizes: pad the bottom/right edge by repeating the last row/column (rather than
    dropping content), or with `fill` where the edge is a flat colour anyway."""
    h, w = rgb.shape[:2]
    ew, eh = even_size(w, h)
    if (ew, eh) == (w, h):
        return rgb
    if fill is None:
        return np.pad(rgb, ((0, eh - h), (0, ew - w), (0, 0)), mode="edge")
    out = np.empty((eh, ew, rgb.shape[2]), rgb.dtype)
    out[:] = fill
    out[:h, :w] = rgb
    return out


def _write_video(path: Path, frames: Iterator[np.ndarray], fps: float, codec: str, pix_fmt: str,
                 options: dict[str, str]) -> int:
    evened = (pad_even(rgb) if pix_fmt == "yuv420p" else rgb for rgb in _checked(frames))
    return encode_video(path, evened, fps, codec, pix_fmt, options)


def encode_video(path: Path, frames: Iterable[np.ndarray], fps: float, codec: str, pix_fmt: str,
                 options: dict[str, str], to_frame: Callable[[np.ndarray], Any] | None = None) -> int:
    """The one PyAV writer loop: RGB uint8 frames of one size -> `path`; returns the frame count.

    `to_frame` turns a frame into an av.VideoFrame where rgb24 is not what the encoder takes (GIF palettes).
    """
    import av

    if codec not in av.codecs_available:
        raise PromptlabError(f"this PyAV/FFmpeg build has no {codec} encoder; write PNG frames instead")
    n = 0
    with av.open(str(path), mode="w") as container:
        stream = None
        for rgb in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=fps_fraction(fps), options=dict(options))
                stream.width, stream.height = rgb.shape[1], rgb.shape[0]
                stream.pix_fmt = pix_fmt
            frame = to_frame(rgb) if to_frame else av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = n
            for packet in stream.encode(frame):
                container.mux(packet)
            n += 1
        if stream is None:
            raise PromptlabError("no frames to write")
        for packet in stream.encode(None):
            container.mux(packet)
    return n
