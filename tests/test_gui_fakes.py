"""Fake job pipelines for the GUI tests: imported by the job's child process (no Qt here).

They yield the run service's own records (runs/records.py), as the real job does, to exercise
the window's handling of failures that the real engines should never produce on demand (a
crash, an engine error) and of long or quick runs. The acceptance tests use the real engine.
"""

from __future__ import annotations

import os
import time

import numpy as np

from promptlab.engine.records import Started
from promptlab.errors import Cancelled, PromptlabError
from promptlab.runs.records import FrameResult, Scoring, Stage, Summary


def failing_pipeline(job, cancel, cache_control=None):
    yield Stage("encode", "about to fail")
    raise PromptlabError("simulated engine error: the stream is damaged")


def crashing_pipeline(job, cancel, cache_control=None):
    yield Stage("encode", "about to crash")
    os._exit(3)


def slow_pipeline(job, cancel, cache_control=None):
    """Frames every 50 ms until cancelled, checking the cancel event like an engine does."""
    for i in range(10_000):
        if cancel.is_set():
            raise Cancelled("cancelled")
        img = np.full((16, 16, 3), i % 255, np.uint8)
        yield FrameResult(index=i, stage="decode", bytes=10.0, gen_ms=1.0, psnr=20.0, ssim=0.5, ms_ssim=0.5, image=img)
        time.sleep(0.05)


def quick_pipeline(job, cancel, cache_control=None):
    """A whole run in a blink: one frame per original (64 px), every record type the window renders."""
    n = int(job.extra.get("frames", 8))
    yield Scoring(measured=True, lpips_available=False, message="fake")
    yield Started(job="decode", n_frames=n, n_keyframes=1, width=64, height=64, fps=30.0, model="fake",
                  header_bytes=50, init_bytes=400)
    for i in range(n):
        img = np.full((64, 64, 3), (7 * i) % 255, np.uint8)
        yield FrameResult(index=i, stage="decode", bytes=450.0 if i == 0 else 40.0, gen_ms=1.0, psnr=20.0 + i,
                          ssim=0.5, ms_ssim=0.5, image=img)
    yield Summary(method="promptlab", n_frames=n, total_bytes=450 + 40 * (n - 1), kbps=10.0,
                  extra={"model": "fake", "cache": "none"})
