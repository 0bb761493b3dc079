"""Progress records that engines yield.

One stream of plain dataclasses feeds the CLI progress bar, the GUI signals and the tests, so
all three exercise the same code path. Images are uint8 RGB numpy arrays (H, W, 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Started:
    """A job began: what it will do, so a progress bar or plot can size itself."""

    job: str                  # "encode" | "decode"
    n_frames: int
    n_keyframes: int
    width: int
    height: int
    fps: float
    model: str                # model identity, including "random weights" when that is the case
    header_bytes: int = 0
    init_bytes: int = 0
    resumed_keyframes: int = 0


@dataclass
class Iteration:
    """One optimiser iteration of one keyframe's fit."""

    keyframe: int             # keyframe (segment) index
    frames: list[int]         # absolute frame indices of the segment
    iteration: int            # 1-based
    iterations: int           # budget for this keyframe
    loss: float               # mean loss over the segment this iteration
    best_loss: float
    frame_losses: list[float]
    lr: float
    elapsed: float            # seconds since the job started
    recon: np.ndarray | None = None   # (N, H, W, 3) on request


@dataclass
class KeyframeDone:
    """A keyframe's record is final (written to the stream)."""

    keyframe: int
    frames: list[int]
    record_bytes: int
    loss: float
    first_loss: float
    elapsed: float


@dataclass
class Frame:
    """One reconstructed frame, as the receiver produces it."""

    index: int
    image: np.ndarray
    gen_ms: float             # generation time attributed to this frame
    bytes: float              # stream bytes attributed to this frame (see docs/metrics.md)
    reused: float = 0.0       # fraction of UNet work served from cache
    keyframe: int = 0
    draft: bool = False       # the first answer (the start's prompt, no iterations); the fitted frame follows


@dataclass
class Done:
    """A job finished."""

    job: str
    path: str | None
    total_bytes: int
    kbps: float
    kbps_without_init: float
    elapsed: float
    extra: dict = field(default_factory=dict)
