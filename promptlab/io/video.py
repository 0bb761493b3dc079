"""Read clips as a stream of square RGB frames: videos (PyAV), numbered image folders, one image.

Everything downstream (engines, metrics, baselines, GUI) sees the same thing: uint8 RGB
arrays of shape (size, size, 3), produced one at a time so that a long clip never sits in
memory. Frame ranges are half-open ("A:B" = frames A..B-1), counted from 0 in decode order.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from promptlab.errors import PromptlabError
from promptlab.io import CROP_MODES

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# what a folder of clips (a sweep's sources) is scanned for; any single file PyAV opens is read as a video
VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".y4m", ".mpg", ".mpeg", ".ts")
DEFAULT_IMAGE_FPS = 30.0

FrameRange = tuple[int, int | None]


@dataclass(frozen=True)
class VideoInfo:
    """Cheap facts about a source; frame_count is None when the container does not say."""

    path: str
    kind: str  # "video" | "images"
    width: int
    height: int
    fps: float
    frame_count: int | None


# --------------------------------------------------------------------------- arguments


def parse_frames(spec: str | None) -> FrameRange | None:
    """Parse "A:B", ":B", "A:" (A inclusive, B exclusive); None or "" means the whole clip."""
    if spec is None:
        return None
    text = str(spec).strip()
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", text)
    if not m:
        raise PromptlabError(f"bad frame range {spec!r}: use A:B (A inclusive, B exclusive), A: or :B")
    start = int(m.group(1)) if m.group(1) else 0
    stop = int(m.group(2)) if m.group(2) else None
    if stop is not None and stop <= start:
        raise PromptlabError(f"bad frame range {spec!r}: the end ({stop}) must be greater than the start ({start})")
    return (start, stop)


def check_size(size: int | None) -> None:
    """The models work on 8-pixel latent blocks, so sizes are multiples of 8."""
    if size is None:
        return
    if not isinstance(size, int | np.integer) or size < 8 or size % 8 != 0:
        raise PromptlabError(f"--size must be a positive multiple of 8, got {size}")


def _check_crop(crop: str) -> None:
    if crop not in CROP_MODES:
        raise PromptlabError(f"crop mode must be one of {', '.join(CROP_MODES)}, got {crop!r}")


# --------------------------------------------------------------------------- sources


def _frame_number(path: Path) -> tuple[float, str]:
    nums = re.findall(r"\d+", path.stem)
    return (int(nums[-1]) if nums else math.inf, path.name)


def _list_images(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS
             and not p.name.startswith(".")]
    if not files:
        raise PromptlabError(f"{folder} contains no images ({', '.join(IMAGE_EXTS)}): zero frames")
    return sorted(files, key=_frame_number)


def _source(src: str | os.PathLike) -> tuple[Path, str]:
    """Classify a path as "images" (folder or one image file) or "video"."""
    p = Path(src).expanduser()
    if not p.exists():
        raise PromptlabError(f"{p} does not exist")
    if p.is_dir():
        return p, "images"
    if p.suffix.lower() in IMAGE_EXTS:
        return p, "images"
    return p, "video"


def _image_files(p: Path) -> list[Path]:
    return _list_images(p) if p.is_dir() else [p]


MAX_PIXELS = 100_000_000  # ~16K x 6K: larger frames are refused before decoding, never half-read


def check_pixels(w: int, h: int, where: object) -> None:
    """Refuse frames too large to hold safely, with the fix, before any pixel is decoded."""
    if w * h > MAX_PIXELS:
        raise PromptlabError(
            f"{where}: frames are {w}x{h} ({w * h / 1e6:.0f} MP), over promptlab's {MAX_PIXELS // 1_000_000} MP "
            "limit per frame; downscale the source first (e.g. ffmpeg -i IN -vf scale=3840:-2 OUT)")


def _image_size(path: Path) -> tuple[int, int] | None:
    """Width and height as shown (EXIF orientation applied) from the file header alone (None if Pillow cannot tell)."""
    try:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # our own limit applies, with a clear message
        with Image.open(path) as im:
            w, h = im.size
            turned = im.getexif().get(0x0112) in (5, 6, 7, 8)
            return (h, w) if turned else (w, h)
    except Exception:  # noqa: BLE001 - cv2 below reports damaged files in one line
        return None


def load_image(path: Path) -> np.ndarray:
    """One image file as RGB uint8 (gray, alpha and 16-bit converted; EXIF orientation applied)."""
    size = _image_size(path)
    if size is not None:
        check_pixels(size[0], size[1], path)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if img is None:
        raise PromptlabError(f"cannot read image {path} (damaged or not an image)")
    return to_rgb_uint8(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def to_rgb_uint8(img: np.ndarray) -> np.ndarray:
    """Gray, gray+alpha, RGBA, 16-bit or float [0,1] arrays to contiguous RGB uint8."""
    a = np.asarray(img)
    if a.dtype == np.uint16:
        a = ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif a.dtype.kind == "f":
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise PromptlabError(f"unsupported pixel type {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise PromptlabError(f"unsupported frame shape {a.shape}")
    if a.shape[2] in (1, 2):
        a = np.repeat(a[:, :, :1], 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    return np.ascontiguousarray(a)


def _open_video(p: Path):  # -> (container, stream)
    import av

    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise PromptlabError(f"{p} is not a video or image folder PyAV can read ({_short(exc)})") from None
    if not container.streams.video:
        container.close()
        raise PromptlabError(f"{p} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _short(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _rotation_k(frame) -> int:
    """Quarter turns (counter-clockwise) that the display matrix asks for."""
    try:
        rot = frame.rotation or 0
    except Exception:  # noqa: BLE001 - older PyAV or odd side data: show as stored
        return 0
    return int(round(rot / 90.0)) % 4


def _decode_rgb(frame) -> np.ndarray:
    """A decoded PyAV frame to RGB uint8, upright (10-bit, gray and alpha formats via swscale)."""
    check_pixels(frame.width, frame.height, "video")
    rgb = frame.to_ndarray(format="rgb24")
    k = _rotation_k(frame)
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


# --------------------------------------------------------------------------- probe


def probe(src: str | os.PathLike, fps: float | None = None) -> VideoInfo:
    """Size, rate and (if known) length without decoding the clip; `fps` overrides the rate."""
    if fps is not None and not (0 < fps <= 1000):
        raise PromptlabError(f"--fps must be in (0, 1000], got {fps}")
    p, kind = _source(src)
    if kind == "images":
        files = _image_files(p)
        first = load_image(files[0])
        h, w = first.shape[:2]
        return VideoInfo(str(p), "images", w, h, float(fps or DEFAULT_IMAGE_FPS), len(files))
    container, stream = _open_video(p)
    try:
        w, h = stream.codec_context.width, stream.codec_context.height
        if not w or not h:
            raise PromptlabError(f"{p} has a video stream without a frame size")
        check_pixels(w, h, p)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        rate_f = float(rate) if rate else 0.0
        if fps is None and not (0 < rate_f <= 1000):
            rate_f = DEFAULT_IMAGE_FPS
        rotated = _stream_rotation_k(stream) % 2 == 1
        count = int(stream.frames) if stream.frames and stream.frames > 0 else None
        if rotated:
            w, h = h, w
        return VideoInfo(str(p), "video", int(w), int(h), float(fps or rate_f), count)
    finally:
        container.close()


def _stream_rotation_k(stream) -> int:
    """Rotation from the first decoded frame (PyAV exposes the display matrix per frame)."""
    try:
        for frame in stream.container.decode(stream):
            return _rotation_k(frame)
    except Exception:  # noqa: BLE001 - a broken first frame shows up properly when reading
        return 0
    return 0


# --------------------------------------------------------------------------- counting


@functools.lru_cache(maxsize=64)
def _video_length(path: str, mtime_ns: int, nbytes: int) -> int:
    """Exact number of decodable frames (decodes, no pixel conversion); cached per file version."""
    container, stream = _open_video(Path(path))
    n = 0
    try:
        for _ in container.decode(stream):
            n += 1
    except Exception as exc:  # noqa: BLE001 - corrupt tail: count what decodes
        if n == 0:
            raise PromptlabError(f"{path}: cannot decode any frame ({_short(exc)})") from None
    finally:
        container.close()
    return n


def clip_length(src: str | os.PathLike) -> int:
    """Exact frame count of the whole source."""
    p, kind = _source(src)
    if kind == "images":
        return len(_image_files(p))
    st = p.stat()
    return _video_length(str(p.resolve()), st.st_mtime_ns, st.st_size)


def count_frames(src: str | os.PathLike, frames: FrameRange | None = None) -> int:
    """Exactly how many frames read_frames(src, frames=frames) yields (0 for an empty range)."""
    total = clip_length(src)
    start, stop = frames if frames is not None else (0, None)
    end = total if stop is None else min(stop, total)
    return max(0, end - start)


def checked_count(src: str | os.PathLike, frames: FrameRange | None = None) -> tuple[int, list[str]]:
    """How many frames a range gives, refusing an empty one, with a note for each silent change.

    Notes: a range that runs past the clip's end (it is cut at the end), and a video whose
    container declares more frames than decode (a damaged or truncated file: the frames that
    decode are used). Callers print the notes so that nothing changes without a word.
    """
    total = clip_length(src)
    start, stop = frames if frames is not None else (0, None)
    n = count_frames(src, frames)
    if n < 1:
        raise PromptlabError(_empty_range_msg(Path(src), start, stop, total))
    notes = []
    declared = probe(src).frame_count
    if declared is not None and declared > total:
        notes.append(f"{src} declares {declared} frames but only {total} decode (damaged or truncated file?): "
                     f"using those {total}")
    if stop is not None and stop > total:
        notes.append(f"frame range {start}:{stop} runs past the end of {src} ({total} frames): "
                     f"using {start}:{total} ({n} frames)")
    return n, notes


# --------------------------------------------------------------------------- reading


def read_frames(src: str | os.PathLike, *, frames: FrameRange | None = None, size: int | None = None,
                crop: str = "center", fps: float | None = None) -> Iterator[np.ndarray]:
    """Stream RGB uint8 frames, each prepared to (size, size, 3) (or untouched if size is None).

    Argument and source errors are raised here, before the first frame is asked for; `fps`
    only labels timing (frames are never resampled) and is validated like probe's.
    """
    check_size(size)
    _check_crop(crop)
    info = probe(src, fps=fps)
    _check_big_enough(info.width, info.height, size, crop)
    start, stop = frames if frames is not None else (0, None)
    if start < 0 or (stop is not None and stop <= start):
        raise PromptlabError(f"bad frame range {start}:{stop}")
    p, kind = _source(src)
    if kind == "images":
        files = _image_files(p)
        if start >= len(files):
            raise PromptlabError(_empty_range_msg(p, start, stop, len(files)))
        _check_one_size(files[start:stop])
        return _read_images(files[start:stop], size, crop)
    return _read_video(p, start, stop, size, crop)


def _empty_range_msg(p: Path, start: int, stop: int | None, total: int) -> str:
    rng = f"{start}:{'' if stop is None else stop}"
    return f"frame range {rng} of {p} is empty: the clip has {total} frames"


def _check_big_enough(w: int, h: int, size: int | None, crop: str) -> None:
    if size is None:
        return
    need = max(w, h) if crop == "pad" else min(w, h)
    if need < size:
        raise PromptlabError(f"frames are {w}x{h} but --size {size} needs at least {size} px "
                             f"({'longer' if crop == 'pad' else 'shorter'} side); use a smaller --size")


def _check_one_size(files: list[Path]) -> None:
    """Refuse a folder of mixed frame sizes from the file headers, before any frame is decoded."""
    first = _image_size(files[0])
    for f in files[1:]:
        wh = _image_size(f)
        if first is not None and wh is not None and wh != first:
            raise PromptlabError(f"{f.name} is {wh[0]}x{wh[1]} but {files[0].name} is {first[0]}x{first[1]}: "
                                 "all frames of a folder must have one size")


def _read_images(files: list[Path], size: int | None, crop: str) -> Iterator[np.ndarray]:
    shape = None
    for f in files:
        img = load_image(f)
        if shape is None:
            shape = img.shape
        elif img.shape != shape:
            raise PromptlabError(f"{f.name} is {img.shape[1]}x{img.shape[0]} but the first frame is "
                                 f"{shape[1]}x{shape[0]}: all frames of a folder must have one size")
        yield img if size is None else prepare(img, size, crop)


def _read_video(p: Path, start: int, stop: int | None, size: int | None, crop: str) -> Iterator[np.ndarray]:
    container, stream = _open_video(p)
    i = 0
    yielded = 0
    try:
        try:
            for frame in container.decode(stream):
                if stop is not None and i >= stop:
                    break
                if i >= start:
                    rgb = _decode_rgb(frame)
                    yielded += 1
                    yield rgb if size is None else prepare(rgb, size, crop)
                i += 1
        except PromptlabError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoder errors become one clear line
            if yielded == 0:
                raise PromptlabError(f"{p}: cannot decode video ({_short(exc)})") from None
            return  # a damaged tail ends the clip where decoding stops
    finally:
        container.close()
    if yielded == 0:
        raise PromptlabError(_empty_range_msg(p, start, stop, i))


# --------------------------------------------------------------------------- geometry


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    if (img.shape[1], img.shape[0]) == (w, h):
        return img
    shrinking = w <= img.shape[1] and h <= img.shape[0]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(img, (w, h), interpolation=interp)


def prepare(frame: np.ndarray, size: int, crop: str) -> np.ndarray:
    """Make one frame square: "center" crop (the reference), "squash" resize, or "pad" letterbox."""
    check_size(size)
    _check_crop(crop)
    img = to_rgb_uint8(frame)
    h, w = img.shape[:2]
    if crop == "center":
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        return np.ascontiguousarray(_resize(img[top:top + s, left:left + s], size, size))
    if crop == "squash":
        return np.ascontiguousarray(_resize(img, size, size))
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = _resize(img, nw, nh)
    out = np.zeros((size, size, 3), np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = small
    return out


def fps_fraction(fps: float) -> Fraction:
    """A frame rate as the exact fraction codecs want (29.97 -> 2997/100, 30000/1001 kept)."""
    return Fraction(fps).limit_denominator(1001)
