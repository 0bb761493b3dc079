"""Lay out comparison panes (side-by-side, split, 2×2 grid) with label strips above them.

Labels and per-frame notes are drawn on a strip ABOVE each pane, never on the pictures, so
every pane stays pixel-exact (the frame just becomes taller). The strip height is fixed by
the first frame, so a clip keeps one frame size; output sizes are always even (yuv420p).
Text is OpenCV's Hershey font (ASCII); a "·" separator is drawn as a dot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from promptlab.errors import PromptlabError
from promptlab.io.writer import pad_even

LAYOUTS = ("side-by-side", "split", "grid")
FONT = cv2.FONT_HERSHEY_SIMPLEX
STRIP_BG = (24, 24, 24)
LABEL_FG = (240, 240, 240)
NOTE_FG = (255, 214, 102)
DIVIDER = (255, 255, 0)
SEP = " · "
NOTE_TEMPLATE = "LPIPS 0.000 · 00.00 dB · 0000.0 kbps"


@dataclass(frozen=True)
class Pane:
    """One picture and its texts: `label` is static (method, kbps), `note` changes per frame."""

    image: np.ndarray
    label: str = ""
    note: str = ""


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise PromptlabError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    return layout


# --------------------------------------------------------------------------- text


def font_scale(width: int) -> float:
    """Readable at 128 px panes, not shouting at 512 px."""
    return float(min(0.9, max(0.4, width / 400)))


def _parts(text: str) -> list[str]:
    return text.split("·")


def text_size(text: str, scale: float) -> tuple[int, int]:
    """(width, height) of `text` as put_text draws it."""
    (_, h), _ = cv2.getTextSize("Mg", FONT, scale, 1)
    dot = max(2, int(round(h * 0.5)))
    w = sum(cv2.getTextSize(p, FONT, scale, 1)[0][0] for p in _parts(text) if p)
    return w + dot * (len(_parts(text)) - 1), h


def put_text(img: np.ndarray, text: str, x: int, baseline_y: int, scale: float, color) -> None:
    """cv2.putText that draws "·" (outside the Hershey charset) as a small filled dot."""
    _, h = text_size("Mg", scale)
    dot = max(2, int(round(h * 0.5)))
    parts = _parts(text)
    for i, part in enumerate(parts):
        if part:
            cv2.putText(img, part, (x, baseline_y), FONT, scale, color, 1, cv2.LINE_AA)
            x += cv2.getTextSize(part, FONT, scale, 1)[0][0]
        if i < len(parts) - 1:
            r = max(1, int(round(scale * 2)))
            cv2.circle(img, (x + dot // 2, baseline_y - h // 2), r, color, -1, cv2.LINE_AA)
            x += dot


def wrap(text: str, max_w: int, scale: float) -> list[str]:
    """Break at " · " first, then at spaces, so each line fits `max_w` (a lone long word may not)."""
    if not text:
        return []
    lines: list[str] = []
    for chunk in text.split(SEP):
        if lines and text_size(lines[-1] + SEP + chunk, scale)[0] <= max_w:
            lines[-1] += SEP + chunk
            continue
        cur = ""
        for word in chunk.split(" "):
            cand = f"{cur} {word}" if cur else word
            if cur and text_size(cand, scale)[0] > max_w:
                lines.append(cur)
                cur = word
            else:
                cur = cand
        lines.append(cur)
    return lines


# --------------------------------------------------------------------------- composer


class Composer:
    """Turns an original and its renditions into one comparison image, the same size every frame."""

    def __init__(self, layout: str = "side-by-side", labels: bool = True, notes: bool = False,
                 diff_gain: float = 4.0, note_template: str = NOTE_TEMPLATE) -> None:
        self.layout = check_layout(layout)
        self.labels = labels
        self.notes = notes
        self.diff_gain = float(diff_gain)
        self.note_template = note_template
        self._strip: int | None = None
        self._shape: tuple[int, ...] | None = None

    # cells: (pane, text alignment) in reading order; grid adds the difference cell
    def cells(self, original: Pane, renditions: Sequence[Pane]) -> list[Pane]:
        if not renditions:
            raise PromptlabError("a comparison needs at least one reconstruction")
        for p in renditions:
            if p.image.shape != original.image.shape:
                raise PromptlabError(f"pane sizes differ: {p.image.shape} vs original {original.image.shape}")
        if self.layout == "side-by-side":
            return [original, *renditions]
        if self.layout == "split":
            return [original, renditions[0]]
        blank = Pane(np.zeros_like(original.image), "(no baseline)")
        third = renditions[1] if len(renditions) > 1 else blank
        return [original, renditions[0], third, Pane(self.difference(original.image, renditions[0].image),
                                                     f"abs difference x{self.diff_gain:g}")]

    def difference(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d = np.abs(a.astype(np.int16) - b.astype(np.int16)).astype(np.float32) * self.diff_gain
        return np.clip(d, 0, 255).astype(np.uint8)

    def _text_width(self, pane_w: int) -> int:
        return (pane_w // 2 if self.layout == "split" else pane_w) - 8

    def _lines(self, pane: Pane, pane_w: int, note: str | None = None) -> tuple[list[str], list[str]]:
        s = font_scale(pane_w)
        tw = self._text_width(pane_w)
        label = wrap(pane.label, tw, s) if self.labels else []
        notes = wrap(pane.note if note is None else note, tw, s) if self.notes else []
        return label, notes

    def strip_height(self, cells: Sequence[Pane], pane_w: int) -> int:
        if not (self.labels or self.notes):
            return 0
        _, h = text_size("Mg", font_scale(pane_w))
        line_h = int(round(h * 1.6))
        n_label = max(len(self._lines(c, pane_w, "")[0]) for c in cells)
        n_note = len(wrap(self.note_template, self._text_width(pane_w), font_scale(pane_w))) if self.notes else 0
        strip = (n_label + n_note) * line_h + line_h // 2
        return strip + strip % 2

    def compose(self, original: Pane, renditions: Sequence[Pane]) -> np.ndarray:
        """One comparison image (uint8 RGB); raises if its size would differ from the first one's."""
        cells = self.cells(original, renditions)
        ph, pw = original.image.shape[:2]
        if self._strip is None:
            self._strip = self.strip_height(cells, pw)
        if self.layout == "split":
            out = self._split(cells, ph, pw)
        else:
            blocks = [self._cell(c, ph, pw) for c in cells]
            if self.layout == "side-by-side":
                out = np.concatenate(blocks, axis=1)
            else:
                out = np.concatenate([np.concatenate(blocks[:2], axis=1), np.concatenate(blocks[2:], axis=1)], axis=0)
        out = pad_even(out, STRIP_BG)  # the edge is strip colour
        if self._shape is None:
            self._shape = out.shape
        elif out.shape != self._shape:
            raise PromptlabError(f"comparison frame is {out.shape[1]}x{out.shape[0]} but the first was "
                                 f"{self._shape[1]}x{self._shape[0]}")
        return out

    def _cell(self, pane: Pane, ph: int, pw: int) -> np.ndarray:
        strip = self._strip or 0
        out = np.empty((strip + ph, pw, 3), np.uint8)
        out[:strip] = STRIP_BG
        out[strip:] = pane.image
        if strip:
            self._draw_texts(out, pane, pw, x0=4, right=False)
        return out

    def _split(self, cells: Sequence[Pane], ph: int, pw: int) -> np.ndarray:
        strip = self._strip or 0
        left, right = cells
        out = np.empty((strip + ph, pw, 3), np.uint8)
        out[:strip] = STRIP_BG
        half = pw // 2
        out[strip:, :half] = left.image[:, :half]
        out[strip:, half:] = right.image[:, half:]
        lo = max(0, half - 1)
        out[:, lo:half + 1] = DIVIDER  # a 2-px line on the seam, the full height
        if strip:
            self._draw_texts(out, left, pw, x0=4, right=False)
            self._draw_texts(out, right, pw, x0=pw - 4, right=True)
        return out

    def _draw_texts(self, img: np.ndarray, pane: Pane, pw: int, x0: int, right: bool) -> None:
        s = font_scale(pw)
        _, h = text_size("Mg", s)
        line_h = int(round(h * 1.6))
        labels, notes = self._lines(pane, pw)
        n_label_rows = (self._strip - line_h // 2) // line_h - (
            len(wrap(self.note_template, self._text_width(pw), s)) if self.notes else 0)
        y = line_h
        rows = [(t, LABEL_FG) for t in labels[:max(0, n_label_rows)]]
        rows += [("", None)] * (max(0, n_label_rows) - len(rows))
        rows += [(t, NOTE_FG) for t in notes]
        for text, color in rows:
            if text and y <= self._strip:
                x = x0 - text_size(text, s)[0] if right else x0
                put_text(img, text, x, y, s, color)
            y += line_h
