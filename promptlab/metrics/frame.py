"""Per-frame quality of a reconstruction against its reference, and honest summaries.

Per frame: LPIPS (lower is better; None when its weights are absent), PSNR in dB over all
RGB samples (higher is better; identical frames report the 100 dB cap), SSIM and MS-SSIM
(higher is better, 1 = identical; see ssim.py), and on request VMAF v0.6.1 (0–100, higher is
better; None when not requested; see vmaf.py). Summaries keep the per-frame view: means,
percentiles, the worst frame and the severe-frame ratio (LPIPS above a threshold).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

import numpy as np
import torch

from promptlab.device import resolve_device
from promptlab.errors import MissingWeightsError, PromptlabError
from promptlab.metrics.perceptual import load_lpips, to_lpips_tensor
from promptlab.metrics.ssim import ms_ssim, ssim
from promptlab.metrics.weights import lpips_status
from promptlab.settings import SEVERE_LPIPS

METRICS = ("lpips", "psnr", "ssim", "ms_ssim", "vmaf")
HIGHER_IS_BETTER = {"lpips": False, "psnr": True, "ssim": True, "ms_ssim": True, "vmaf": True}
PSNR_CAP = 100.0
PERCENTILES = (5, 50, 95)


def psnr(ref: np.ndarray, dist: np.ndarray) -> float:
    """PSNR in dB for uint8 frames (peak 255), capped at 100 dB for identical frames."""
    mse = float(np.mean((ref.astype(np.float64) - dist.astype(np.float64)) ** 2))
    if mse <= 255.0**2 * 10 ** (-PSNR_CAP / 10):
        return PSNR_CAP
    return 10.0 * math.log10(255.0**2 / mse)


class FrameMetrics:
    """Computes all metrics for aligned uint8 RGB frame pairs; LPIPS only from real weights.

    `vmaf`: also VMAF (needs the vmaf-torch package; a one-line error names the extra otherwise).
    """

    def __init__(self, lpips_net: str = "alex", device: str = "cpu", need_lpips: bool = True,
                 require_lpips: bool = False, vmaf: bool = False) -> None:
        self.lpips_net = lpips_net
        self.device = str(resolve_device(device))
        self.vmaf = None
        if vmaf:
            from promptlab.metrics.vmaf import Vmaf

            self.vmaf = Vmaf(self.device)
        self.lpips_model = None
        self.lpips_note: str | None = None
        if need_lpips or require_lpips:
            try:
                self.lpips_model = load_lpips(lpips_net, self.device)
            except MissingWeightsError as exc:
                if require_lpips:
                    raise
                self.lpips_note = str(exc)
        else:
            self.lpips_note = "LPIPS not requested"

    @property
    def has_lpips(self) -> bool:
        return self.lpips_model is not None

    def compute(self, ref: np.ndarray, dist: np.ndarray) -> dict[str, float | None]:
        """Metrics of one frame pair: keys lpips (None if unavailable), psnr, ssim, ms_ssim, vmaf."""
        return self.compute_batch([ref], [dist])[0]

    @torch.no_grad()
    def compute_batch(self, refs: Sequence[np.ndarray], dists: Sequence[np.ndarray],
                      maps: bool = False, prev_ref: np.ndarray | None = None,
                      next_ref: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Metrics of aligned frame pairs; with `maps`, also "lpips_map" (uint8 H×W, None without LPIPS).

        The map comes from the same LPIPS pass as the value: the per-layer distances are
        averaged for the value and upsampled for the map, as lpips does with spatial off and on.
        `prev_ref`/`next_ref`: the reference frames around the batch (VMAF's motion feature).
        """
        if len(refs) != len(dists):
            raise PromptlabError(f"{len(refs)} reference frames but {len(dists)} distorted frames")
        for i, (r, d) in enumerate(zip(refs, dists, strict=True)):
            if r.shape != d.shape or r.ndim != 3 or r.shape[2] != 3:
                raise PromptlabError(f"frame {i}: shapes {r.shape} and {d.shape} differ or are not RGB")
            if r.dtype != np.uint8 or d.dtype != np.uint8:
                raise PromptlabError(f"frame {i}: metrics expect uint8 frames, got {r.dtype}/{d.dtype}")
        if not refs:
            return []
        tr = to_lpips_tensor(list(refs), self.device)
        td = to_lpips_tensor(list(dists), self.device)
        lp: list[float | None] = [None] * len(refs)
        lmaps: list[np.ndarray | None] = [None] * len(refs)
        if self.lpips_model is not None:
            values, spatial = lpips_pass(self.lpips_model, tr, td, maps)
            lp = [float(v) for v in values.cpu()]
            if spatial is not None:
                lmaps = [(np.clip(m, 0.0, 1.0) * 255).astype(np.uint8) for m in spatial.cpu().numpy()]
        tr64, td64 = tr.double() if tr.device.type == "cpu" else tr, td.double() if td.device.type == "cpu" else td
        ss = ssim(tr64, td64, value_range=(-1.0, 1.0)).cpu().tolist()
        ms = ms_ssim(tr64, td64, value_range=(-1.0, 1.0)).cpu().tolist()
        vm: list[float | None] = ([None] * len(refs) if self.vmaf is None
                                  else self.vmaf.scores(refs, dists, prev_ref, next_ref))
        rows: list[dict[str, Any]] = [
            {"lpips": lp[i], "psnr": psnr(refs[i], dists[i]), "ssim": float(ss[i]), "ms_ssim": float(ms[i]),
             "vmaf": vm[i]}
            for i in range(len(refs))]
        if maps:
            for row, m in zip(rows, lmaps, strict=True):
                row["lpips_map"] = m
        return rows


def score(metrics: FrameMetrics, refs: Iterable[np.ndarray], dists: Iterable[np.ndarray], *, batch: int = 8,
          on_batch: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Per-frame metrics of two aligned clips (iterables, read lazily), in batches: the one scoring loop.

    Refuses clips of different lengths or frame shapes with one line; `on_batch(frames_done)` runs
    after each batch (progress bars, cancel checks). The reference is read one frame ahead, so
    each batch is scored knowing its neighbouring reference frames (VMAF's motion feature).
    """
    ref_it, dist_it = iter(refs), iter(dists)
    rows: list[dict[str, Any]] = []
    prev: np.ndarray | None = None
    ahead = list(islice(ref_it, batch + 1))
    while True:
        a, nxt = ahead[:batch], (ahead[batch] if len(ahead) > batch else None)
        b = list(islice(dist_it, batch))
        if len(a) != len(b):
            raise PromptlabError(f"clips ended at different frames ({len(rows) + len(a)} vs {len(rows) + len(b)})")
        if not a:
            return rows
        if a[0].shape != b[0].shape:
            raise PromptlabError(f"frame shapes differ: {a[0].shape} and {b[0].shape}; prepare both to one size")
        rows += metrics.compute_batch(a, b, prev_ref=prev, next_ref=nxt)
        prev = a[-1]
        ahead = ([] if nxt is None else [nxt]) + list(islice(ref_it, batch))
        if on_batch is not None:
            on_batch(len(rows))


def lpips_pass(model: Any, t0: torch.Tensor, t1: torch.Tensor,
               maps: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """LPIPS values (N,) and, with `maps`, the spatial maps (N, H, W) from one network pass.

    Mirrors lpips.LPIPS.forward: the value is the sum over layers of each layer's spatial mean,
    the map the sum of each layer's map upsampled (bilinear) to the input size.
    """
    import lpips

    x0, x1 = (model.scaling_layer(t0), model.scaling_layer(t1)) if model.version == "0.1" else (t0, t1)
    f0, f1 = model.net.forward(x0), model.net.forward(x1)
    value = torch.zeros(t0.shape[0], device=t0.device)
    spatial = torch.zeros(t0.shape[0], *t0.shape[2:], device=t0.device) if maps else None
    for k in range(model.L):
        d = (lpips.normalize_tensor(f0[k]) - lpips.normalize_tensor(f1[k])) ** 2
        d = model.lins[k](d) if model.lpips else d.sum(dim=1, keepdim=True)
        value += d.mean(dim=(1, 2, 3))
        if spatial is not None:
            spatial += torch.nn.functional.interpolate(d, size=tuple(t0.shape[2:]), mode="bilinear",
                                                       align_corners=False)[:, 0]
    return value, spatial


def summarize(rows: Iterable[dict], severe: float = SEVERE_LPIPS) -> dict:
    """Means, percentiles, worst frame per metric and the severe ratio (None without LPIPS)."""
    rows = list(rows)
    mean: dict[str, float | None] = {}
    pct: dict[str, dict[str, float] | None] = {}
    worst: dict[str, dict | None] = {}
    for m in METRICS:
        vals = [r.get(m) for r in rows]
        if not rows or any(v is None for v in vals):
            mean[m], pct[m], worst[m] = None, None, None
            continue
        arr = np.asarray(vals, dtype=np.float64)
        mean[m] = float(arr.mean())
        pct[m] = {f"p{q}": float(np.percentile(arr, q)) for q in PERCENTILES}
        i = int(np.argmax(arr) if not HIGHER_IS_BETTER[m] else np.argmin(arr))
        worst[m] = {"frame": rows[i].get("frame", i), "value": float(arr[i])}
    severe_ratio = None
    severe_count = None
    if mean["lpips"] is not None:
        severe_count = sum(1 for r in rows if r["lpips"] > severe)
        severe_ratio = severe_count / len(rows)
    mean["severe_ratio"] = severe_ratio
    return {"n_frames": len(rows), "mean": mean, "percentiles": pct, "worst": worst,
            "severe_threshold": severe, "severe_count": severe_count}


__all__ = ["FrameMetrics", "score", "summarize", "psnr", "lpips_status", "METRICS", "HIGHER_IS_BETTER", "SEVERE_LPIPS"]
