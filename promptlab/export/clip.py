"""Write comparison clips (MP4/WebM/GIF) and single comparison frames (PNG), atomically.

MP4 is H.264 yuv420p so it plays everywhere; its quality is high (CRF 10, see docs/export.md) because an export
must not add artefacts of its own to the ones being compared. GIF frames get their own
256-colour palette (Pillow's octree quantiser, no dithering) rather than a fixed one.
Frames are encoded as they are composed; a cancel, error or kill leaves nothing at the target.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from promptlab.errors import PromptlabError
from promptlab.export.comparison import (
    CancelFlag,
    Comparison,
    Progress,
    check_cancel,
    note_template,
)
from promptlab.export.compose import Composer
from promptlab.io.atomic import atomic_path, check_target, write_bytes_atomic
from promptlab.io.writer import encode_video

# extension -> (encoder, pixel format, options)
CLIP_FORMATS: dict[str, tuple[str, str, dict[str, str]]] = {
    ".mp4": ("libx264", "yuv420p", {"crf": "10", "preset": "medium"}),
    ".webm": ("libvpx-vp9", "yuv420p", {"crf": "20", "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"}),
    ".gif": ("gif", "pal8", {}),
}


def clip_format(out: str | Path) -> str:
    ext = Path(out).suffix.lower()
    if ext not in CLIP_FORMATS:
        raise PromptlabError(f"cannot write a clip as {ext or 'a file without extension'}: "
                             f"use {', '.join(CLIP_FORMATS)}")
    return ext


def write_file(out: str | Path, data: bytes) -> Path:
    write_bytes_atomic(out, data)
    return Path(out)


def write_clip(out: str | Path, frames: Iterable[np.ndarray], fps: float, *, force: bool = False,
               total: int | None = None, progress: Progress | None = None, cancel: CancelFlag | None = None,
               crf: int | None = None) -> int:
    """Encode RGB uint8 frames (one size, even sides) to `out`; return the frame count."""
    ext = clip_format(out)
    out = check_target(out, force)
    codec, pix_fmt, options = CLIP_FORMATS[ext]
    options = dict(options)
    if crf is not None and "crf" in options:
        options["crf"] = str(int(crf))

    def checked() -> Iterator[np.ndarray]:
        shape = None
        for n, rgb in enumerate(frames):
            check_cancel(cancel)
            if shape is None:
                shape = rgb.shape
                if pix_fmt == "yuv420p" and (shape[0] % 2 or shape[1] % 2):
                    raise PromptlabError(f"{shape[1]}x{shape[0]} frames cannot be yuv420p (odd size)")
            elif rgb.shape != shape:
                raise PromptlabError(f"frame {n} is {rgb.shape[1]}x{rgb.shape[0]}, frame 0 {shape[1]}x{shape[0]}")
            yield rgb
            if progress:
                progress("clip", n + 1, total or n + 1)

    with atomic_path(out) as tmp:
        return encode_video(tmp, checked(), fps, codec, pix_fmt, options,
                            to_frame=_gif_frame if pix_fmt == "pal8" else None)


def _gif_frame(rgb: np.ndarray):
    """One frame with its own 256-colour palette."""
    import av
    from PIL import Image

    img = Image.fromarray(rgb).quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    idx = np.asarray(img, dtype=np.uint8)
    pal = np.asarray(img.getpalette()[: 256 * 3], dtype=np.uint8).reshape(-1, 3)
    argb = np.zeros((256, 4), np.uint8)
    argb[:, 0] = 255
    argb[: len(pal), 1:] = pal
    return av.VideoFrame.from_ndarray((np.ascontiguousarray(idx), argb), format="pal8")


def comparison_frames(comp: Comparison, composer: Composer, overlay: Sequence[str] = (),
                      size: int | None = None, frames: Iterable[int] | None = None):
    """Composed comparison images, one per frame index (lazily, so clips stream)."""
    for i in (range(comp.n_frames) if frames is None else frames):
        original, others = comp.panes(i, overlay, size)
        yield composer.compose(original, others)


def export_clip(out: str | Path, comp: Comparison, *, layout: str = "side-by-side", labels: bool = True,
                overlay: Sequence[str] = (), size: int | None = None, force: bool = False,
                progress: Progress | None = None, cancel: CancelFlag | None = None, crf: int | None = None) -> int:
    """The comparison clip: original | reconstruction [| baseline], labelled, per-frame notes optional."""
    composer = Composer(layout, labels=labels, notes=bool(overlay), note_template=note_template(overlay))
    return write_clip(out, comparison_frames(comp, composer, overlay, size), comp.fps, force=force,
                      total=comp.n_frames, progress=progress, cancel=cancel, crf=crf)


def encode_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise PromptlabError("could not encode PNG")
    return buf.tobytes()


def write_png(out: str | Path, rgb: np.ndarray, force: bool = False) -> Path:
    """One RGB image as PNG, atomically."""
    out = check_target(out, force)
    if out.suffix.lower() != ".png":
        raise PromptlabError(f"{out}: a frame is written as .png")
    write_file(out, encode_png(rgb))
    return out


def export_frame(out: str | Path, comp: Comparison, index: int, *, layout: str = "side-by-side",
                 labels: bool = True, overlay: Sequence[str] = (), size: int | None = None,
                 force: bool = False) -> Path:
    """PNG of one frame with all its panes (the GUI's "current frame")."""
    if not 0 <= index < comp.n_frames:
        raise PromptlabError(f"frame {index} is outside the exported range 0..{comp.n_frames - 1}")
    composer = Composer(layout, labels=labels, notes=bool(overlay), note_template=note_template(overlay))
    original, others = comp.panes(index, overlay, size)
    return write_png(out, composer.compose(original, others), force)
