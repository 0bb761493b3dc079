"""Measurements for the model card: PSNR of reconstructions and the same-size thumbnail bar.

The thumbnail baseline sends, per frame, an 8-bit RGB thumbnail with about as many values as
one rank-r prompt ((77 + D)·r), upsampled bicubically: a codec that loses to it is not worth
sending. `amortised_psnr` scores the prompt encoder's own prompts (no inversion), a diagnostic
of the prompt space the generator learned.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from promptlab.codec.prompt import TOKENS
from promptlab.metrics.frame import psnr


def thumbnail_side(rank: int, dim: int) -> int:
    """Side of a square RGB thumbnail with about (77 + dim)·rank 8-bit values."""
    return max(1, round(math.sqrt((TOKENS + dim) * rank / 3)))


def thumbnail(frame: np.ndarray, side: int) -> np.ndarray:
    """Area-downsample to side×side uint8, then bicubic back to the frame's size."""
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA)
    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def thumbnail_psnr(frames: list[np.ndarray], rank: int, dim: int) -> float:
    """Mean per-frame PSNR of the same-size thumbnail baseline."""
    side = thumbnail_side(rank, dim)
    return float(np.mean([psnr(thumbnail(f, side), f) for f in frames]))


def amortised_psnr(model, frames: list[np.ndarray], rank: int, seed: int = 88) -> float:
    """Mean PSNR of frames generated from the prompt encoder's quantised rank-r prompts."""
    from promptlab.engine.encoder import to_tensor
    from promptlab.engine.generator import fixed_noise, forward, to_uint8
    from promptlab.train.loop import compose_ranked, masked_prompt

    penc = model.parts["prompt"]
    x = to_tensor(frames)
    with torch.no_grad():
        lat = model.parts["encoder"](x)
        u, v = penc(lat)
        r = torch.full((len(frames),), rank)
        u, v = masked_prompt(u, v, r)
        ctx = compose_ranked(u, v, r)
        noise = fixed_noise(seed, tuple(lat[:1].shape))
        z = 0.05 * lat[:1] + 0.95 * noise
        _, images = forward(model, z, ctx)
    out = to_uint8(images)
    return float(np.mean([psnr(o, f) for o, f in zip(out, frames)]))


def keyframe_psnr(model, frame: np.ndarray, settings) -> float:
    """PSNR of keyframe 0 (one frame) after inversion with `settings`, through the real inverter.

    The rank sweep of the model card and its test: the same path `encode` takes for a clip's
    first keyframe (init latent, quantised factors, the settings' start and loss).
    """
    from promptlab.codec.schedule import segments
    from promptlab.engine.encoder import to_tensor
    from promptlab.engine.generator import (
        fixed_noise,
        generate_segment,
        segment_contexts,
        segment_input,
    )
    from promptlab.engine.inverter import fit_segment
    from promptlab.engine.losses import make_loss

    x = to_tensor([frame])
    lat = model.encode_init(x).cpu()
    z = segment_input(lat, fixed_noise(settings.seed, tuple(lat.shape)), settings.blend)
    seg = segments(1, settings.interval)[0]
    job = fit_segment(model, seg, x, z, None, settings, make_loss(settings, model.device))
    while True:
        try:
            next(job)
        except StopIteration as stop:
            fit = stop.value
            break
    u, v = fit.record.factors()
    ctx = segment_contexts(seg, (u.to(model.device), v.to(model.device)), None, settings.interp)
    return psnr(generate_segment(model, z, ctx)[1][0], frame)


def comparison_grid(rows: list[tuple[str, list[np.ndarray]]], originals: list[np.ndarray],
                    captions: list[str]) -> np.ndarray:
    """Rows of frames (original row first), each frame captioned with its PSNR: the model card's figure."""
    tiles = []
    for name, frames in [("original", originals), *rows]:
        row = []
        for i, f in enumerate(frames):
            tile = cv2.copyMakeBorder(f, 18, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255))
            text = captions[i] if name == "original" else f"{name} {psnr(f, originals[i]):.1f} dB"
            cv2.putText(tile, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (0, 0, 0), 1, cv2.LINE_AA)
            row.append(tile)
        tiles.append(np.concatenate(row, axis=1))
    return np.concatenate(tiles, axis=0)
