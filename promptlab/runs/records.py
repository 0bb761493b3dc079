"""Typed records of the lab's run (encode → decode → score → baseline), as the run service yields them.

The GUI renders them as they come, `promptlab run --json` writes them, tests read them: one
path for all three. Records are plain picklable dataclasses (they cross the GUI's job process
boundary); images and LPIPS maps ride along for the window and are left out of `row()`.
A distributed job (runs/distributed.py) adds its own two: TasksPlanned and TaskDone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from promptlab.engine.records import (
    Started,  # an engine started on the stream: its shape and fixed bytes
)

STAGES = ("encode", "decode", "preview", "baseline")
PROMPTLAB = "promptlab"                   # Summary.method of a fitted stream's reconstruction
PREVIEW = "promptlab preview"             # … and of a preview transcoded from one (runs/preview.py)


@dataclass
class Scoring:
    """Whether quality can be measured, and why not when it cannot."""

    measured: bool            # False: no original to compare with (a .plab opened alone)
    lpips_available: bool
    message: str = ""


@dataclass
class Stage:
    """A stage of the run begins."""

    stage: str                # one of STAGES
    text: str


@dataclass
class Progress:
    fraction: float           # 0..1 over the whole run
    text: str
    eta_s: float | None = None  # seconds left, from this run's measured unit costs (runs/eta.py); None: not known yet


@dataclass
class KeyframeFitted:
    keyframe: int
    frames: list[int]
    record_bytes: int
    loss: float


@dataclass
class FrameResult:
    """One frame of one stage, measured against its original (metrics None when not measured)."""

    index: int
    stage: str
    bytes: float
    gen_ms: float | None = None
    keyframe: int | None = None
    reused: float = 0.0
    lpips: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    ms_ssim: float | None = None
    vmaf: float | None = None   # only when the run asked for VMAF
    draft: bool = False         # an encode frame's first answer (prompt encoder, no iterations); its fitted frame replaces it
    image: np.ndarray | None = field(default=None, repr=False)
    lpips_map: np.ndarray | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        """The numbers only (what the results cache and the JSON keep)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("image", "lpips_map")}


@dataclass
class Encoded:
    total_bytes: int
    kbps: float
    kbps_without_init: float
    elapsed: float


@dataclass
class Summary:
    """A finished reconstruction (promptlab's or the baseline's): its rate and mean quality."""

    method: str               # PROMPTLAB | PREVIEW | "h265" | …
    n_frames: int
    total_bytes: int
    kbps: float
    lpips: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    ms_ssim: float | None = None
    vmaf: float | None = None
    severe_frames: int | None = None
    gen_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ours(self) -> bool:
        """promptlab's reconstruction (fitted or previewed), not a classical codec's."""
        return self.method in (PROMPTLAB, PREVIEW)


@dataclass
class Saved:
    """The run is in the results cache under `key`."""

    key: str
    path: str


@dataclass
class Reused:
    """These settings were run before: the records that follow are the stored result, nothing recomputed."""

    key: str
    path: str


@dataclass
class TasksPlanned:
    """A distributed job (runs/distributed.py) starts: `total` tasks to run, `skipped` finished before."""

    job: str                  # "encode" | "sweep"
    total: int
    skipped: int
    workers: int
    address: str              # the Ray cluster's address, "local" for one started here


@dataclass
class TaskDone:
    """One task of a distributed job finished on a worker (a GOP, a sweep point or its baseline)."""

    job: str
    name: str
    node: str                 # the Ray node it ran on (short id)
    elapsed: float            # seconds on the worker
    done: int                 # tasks finished so far in this run
    total: int


Record = (Scoring | Stage | Progress | Started | KeyframeFitted | FrameResult | Encoded | Summary | Saved
          | Reused)
