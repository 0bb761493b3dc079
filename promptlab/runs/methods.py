"""Every comparison method by name: one table read by `baseline`, the sweep, the run and compare.

A method codes a list of frames at a target bitrate and returns an `Outcome` (the bytes it
wrote, every one counted, and its reconstruction). The classical codecs live in
baselines/h26x.py and the learned ones in baselines/latent.py with their autoencoder from
models/; this table sits above both layers, so adding a method is one `register` call here and
nothing else in the CLI, the sweep or the run changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from promptlab.errors import PromptlabError


class Outcome(Protocol):
    """What every method returns (baselines.BaselineResult, baselines.latent.LatentResult)."""

    codec: str
    target_kbps: float
    kbps: float
    bytes: int
    frame_bytes: list[int]
    recon: list[np.ndarray]
    converged: bool
    note: str
    params: dict
    stream: bytes

    def summary(self) -> dict: ...


@dataclass(frozen=True)
class Options:
    """Settings a method may honour: x26x's preset, closed GOPs of `gop` frames (0: the method's own)."""

    preset: str = "medium"
    gop: int = 0


Encode = Callable[[Sequence[np.ndarray], float, float, float, Options], Outcome]


@dataclass(frozen=True)
class Method:
    name: str
    label: str           # what tables and legends call it
    tolerance: float     # default allowed relative error of the achieved rate
    encode: Encode       # (frames, fps, kbps, tolerance, options) -> Outcome


_METHODS: dict[str, Method] = {}


def register(method: Method) -> None:
    """Add a method to the table (one place per method)."""
    _METHODS[method.name] = method


def names() -> list[str]:
    return list(_METHODS)


def get(name: str) -> Method:
    if name not in _METHODS:
        raise PromptlabError(f"unknown baseline {name!r} (one of {', '.join(_METHODS)})")
    return _METHODS[name]


def parse(text: str) -> list[str]:
    """A comma-separated list of method names ("h265,vae"); "none" or "" is no baseline."""
    items = [t.strip() for t in text.split(",") if t.strip() and t.strip() != "none"]
    for t in items:
        get(t)
    if len(set(items)) != len(items):
        raise PromptlabError(f"baseline {text!r} names a method twice")
    return items


def encode(name: str, frames: Sequence[np.ndarray], fps: float, kbps: float, *,
           tolerance: float | None = None, options: Options | None = None) -> Outcome:
    """Code `frames` with method `name` at (nearly) `kbps`."""
    m = get(name)
    return m.encode(frames, fps, kbps, m.tolerance if tolerance is None else tolerance, options or Options())


def _h26x(codec: str) -> Encode:
    def run(frames: Sequence[np.ndarray], fps: float, kbps: float, tolerance: float, options: Options) -> Outcome:
        from promptlab.baselines import encode_baseline

        return encode_baseline(frames, fps, kbps, codec=codec, tolerance=tolerance, preset=options.preset,
                               gop=options.gop)
    return run


def _vae(frames: Sequence[np.ndarray], fps: float, kbps: float, tolerance: float, options: Options) -> Outcome:
    from promptlab.baselines.latent import encode_latent_baseline
    from promptlab.models.taef2 import baseline_autoencoder

    return encode_latent_baseline(frames, fps, kbps, baseline_autoencoder(), tolerance=tolerance)


def _thumbnail(frames: Sequence[np.ndarray], fps: float, kbps: float, tolerance: float,
               options: Options) -> Outcome:
    from promptlab.baselines.latent import encode_best
    from promptlab.engine.thumbnail import thumbnail_autoencoders

    return encode_best(frames, fps, kbps, thumbnail_autoencoders(), tolerance=tolerance)


register(Method("h265", "H.265", 0.05, _h26x("h265")))
register(Method("h264", "H.264", 0.05, _h26x("h264")))
register(Method("vae", "VAE (TAEF2 latents)", 0.10, _vae))
register(Method("thumbnail", "thumbnail (area-downscaled keyframes, bicubic)", 0.10, _thumbnail))
