"""Fake job pipelines for the GUI tests: imported by the job's child process (no Qt here).

They exercise the window's handling of failures that the real engines should never produce
on demand (a crash, an engine error). The acceptance tests use the real engine.
"""

from __future__ import annotations

import os
import time

import numpy as np

from promptlab.errors import PromptlabError


def failing_pipeline(spec, cancel):
    yield ("stage", {"stage": "encode", "text": "about to fail"})
    raise PromptlabError("simulated engine error: the stream is damaged")


def crashing_pipeline(spec, cancel):
    yield ("stage", {"stage": "encode", "text": "about to crash"})
    os._exit(3)


def slow_pipeline(spec, cancel):
    """Frames every 50 ms until cancelled, checking the cancel event like an engine does."""
    from promptlab.errors import Cancelled

    for i in range(10_000):
        if cancel.is_set():
            raise Cancelled("cancelled")
        img = np.full((16, 16, 3), i % 255, np.uint8)
        yield ("frame", {"index": i, "image": img, "bytes": 10.0, "gen_ms": 1.0, "lpips": None,
                         "psnr": 20.0, "ssim": 0.5, "ms_ssim": 0.5})
        time.sleep(0.05)


def test_fakes_module_is_importable():
    assert callable(slow_pipeline)


def busy_pipeline(spec, cancel):
    """Torch work like an inversion (a second of matmuls per 'iteration'), then 64 px frames."""
    import torch

    from promptlab.errors import Cancelled

    a = torch.randn(512, 512)
    for it in range(int(spec.extra.get("iters", 20))):
        if cancel.is_set():
            raise Cancelled("cancelled")
        for _ in range(20):
            a = torch.tanh(a @ a)
        yield ("progress", {"fraction": it / 40, "text": f"keyframe 1/1 iteration {it + 1}"})
    for i in range(11):
        img = np.random.randint(0, 255, (64, 64, 3), np.uint8)
        yield ("frame", {"index": i, "image": img, "bytes": 100.0, "gen_ms": 1.0, "lpips": None,
                         "psnr": 20.0, "ssim": 0.5, "ms_ssim": 0.5})


def quick_pipeline(spec, cancel):
    """A whole run in a blink: one frame per original (64 px), every message kind the window reads."""
    n = int(spec.extra.get("frames", 8))
    yield ("metric", {"lpips_available": False, "lpips_message": "fake", "quality_measured": True})
    yield ("started", {"model": "fake", "init_bytes": 400, "header_bytes": 50, "n_frames": n})
    for i in range(n):
        img = np.full((64, 64, 3), (7 * i) % 255, np.uint8)
        yield ("frame", {"index": i, "image": img, "bytes": 450.0 if i == 0 else 40.0, "gen_ms": 1.0,
                         "lpips": None, "psnr": 20.0 + i, "ssim": 0.5, "ms_ssim": 0.5})
    yield ("summary", {"kbps": 10.0, "total_bytes": 450 + 40 * (n - 1), "model": "fake", "cache": "none"})
