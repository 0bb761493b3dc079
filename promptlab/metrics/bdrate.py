"""Bjøntegaard delta rate: the average bitrate difference at equal quality between two RD curves.

log-rate is fitted as a polynomial of quality (cubic with ≥ 4 points, as in VCEG-M33; lower
degree with fewer) and integrated over the quality range both curves cover. A negative
BD-rate means the test method needs fewer bits than the anchor for the same quality.
For a lower-is-better metric such as LPIPS, quality is taken as −LPIPS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def bd_rate(anchor_kbps: Sequence[float], anchor_q: Sequence[float],
            test_kbps: Sequence[float], test_q: Sequence[float]) -> float | None:
    """Percent bitrate change of test vs anchor at equal quality; None when the curves don't overlap."""
    a = _clean(anchor_kbps, anchor_q)
    t = _clean(test_kbps, test_q)
    if a is None or t is None:
        return None
    (ra, qa), (rt, qt) = a, t
    lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
    if not hi > lo:
        return None
    ia = _integral(qa, np.log(ra), lo, hi)
    it = _integral(qt, np.log(rt), lo, hi)
    return float((math.exp((it - ia) / (hi - lo)) - 1) * 100)


def _clean(kbps: Sequence[float], q: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    pts = sorted({(float(qq), float(r)) for r, qq in zip(kbps, q)
                  if r is not None and qq is not None and r > 0 and math.isfinite(r) and math.isfinite(qq)})
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return None
    qs = np.array([p[0] for p in pts])
    rs = np.array([p[1] for p in pts])
    return rs, qs


def _integral(q: np.ndarray, logr: np.ndarray, lo: float, hi: float) -> float:
    deg = min(3, len(q) - 1)
    poly = np.polyint(np.polyfit(q, logr, deg))
    return float(np.polyval(poly, hi) - np.polyval(poly, lo))
