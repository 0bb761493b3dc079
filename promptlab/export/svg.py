"""Small, dependency-free SVG line and point plots for the HTML report.

Every plot has labelled axes with units, a legend and a "lower/higher is better" note, which
is what users of comparison tools keep asking for. Missing values (None) break a line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")
Series = tuple[str, Sequence[float], Sequence[float | None]]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        lo, hi = lo - 0.5 if lo == hi else hi, hi + 0.5
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 0.5 and len(ticks) < 50:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def line_plot(series: Sequence[Series], *, title: str, xlabel: str, ylabel: str, note: str = "",
              markers: bool = False, lines: bool = True, width: int = 720, height: int = 280) -> str:
    """One inline <svg> element; the legend sits in a band above the plot, so no point can hide it."""
    ml, mr, mb = 64, 16, 44
    legend, rows = _legend_layout([name for name, _, _ in series], ml, width - mr)
    mt = 34 + 16 * rows
    pw, ph = width - ml - mr, height - mt - mb
    xs = [float(x) for _, sx, _ in series for x in sx]
    ys = [float(y) for _, _, sy in series for y in sy if y is not None and math.isfinite(y)]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{ml}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>']
    if note:
        out.append(f'<text x="{width - mr}" y="20" text-anchor="end" fill="#555">{escape(note)}</text>')
    if not xs or not ys:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#888">no data</text></svg>')
        return "".join(out)
    xt, yt = nice_ticks(min(xs), max(xs)), nice_ticks(min(ys), max(ys))
    x0, x1 = min(xt[0], min(xs)), max(xt[-1], max(xs))
    y0, y1 = min(yt[0], min(ys)), max(yt[-1], max(ys))
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1

    def px(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return mt + ph - (y - y0) / (y1 - y0) * ph

    for t in yt:
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#e5e5e5"/>'
                   f'<text x="{ml - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t in xt:
        out.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{mt + ph}" y2="{mt + ph + 4}" stroke="#333"/>'
                   f'<text x="{px(t):.1f}" y="{mt + ph + 17}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{ml + pw / 2}" y="{height - 6}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text transform="translate(14,{mt + ph / 2}) rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>')
    for k, (name, sx, sy) in enumerate(series):
        color = COLORS[k % len(COLORS)]
        if lines:
            for seg in _segments(sx, sy):
                pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in seg)
                out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.6"/>')
        if markers:
            for x, y in zip(sx, sy):
                if y is not None and math.isfinite(y):
                    out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{color}">'
                               f'<title>{escape(name)}: {_fmt(float(x))}, {_fmt(float(y))}</title></circle>')
        lx, ly = legend[k]
        out.append(f'<rect x="{lx}" y="{ly - 4}" width="12" height="4" fill="{color}"/>'
                   f'<text x="{lx + 18}" y="{ly}">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _legend_layout(names: Sequence[str], left: float, right: float) -> tuple[list[tuple[float, float]], int]:
    """Legend entries left to right in rows between the title and the plot: positions and row count."""
    pos: list[tuple[float, float]] = []
    x, row = left, 0
    for name in names:
        w = 18 + 7 * len(name) + 16  # swatch, text at ~7 px per character, gap
        if x > left and x + w > right:
            x, row = left, row + 1
        pos.append((x, 34 + 12 + 16 * row))
        x += w
    return pos, (row + 1 if names else 0)


def _segments(xs: Sequence[float], ys: Sequence[float | None]) -> list[list[tuple[float, float]]]:
    segs: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, ys):
        if y is None or not math.isfinite(y):
            if segs[-1]:
                segs.append([])
        else:
            segs[-1].append((float(x), float(y)))
    return [s for s in segs if s]
