"""Which frames are keyframes, and which frames each keyframe's segment covers.

Keyframes sit every `interval` frames from frame 0. If the clip does not end on one, the last
frame becomes a keyframe too and its (shorter) segment uses a = s/L for its own length L, so
every frame is covered and the last frame is reproduced from its own prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from promptlab.errors import PromptlabError


@dataclass(frozen=True)
class Segment:
    """Keyframe `index` at frame `keyframe`; it covers frames (start .. keyframe], prev keyframe excluded.

    Segment 0 is keyframe 0 alone (start == keyframe == 0).
    """

    index: int
    start: int
    keyframe: int

    @property
    def frames(self) -> range:
        return range(self.start, self.keyframe + 1)

    @property
    def length(self) -> int:
        return self.keyframe - self.start + 1

    def alphas(self) -> torch.Tensor:
        """Interpolation fractions of the segment's frames, ending at 1 on the keyframe."""
        if self.index == 0:
            return torch.ones(1)
        n = self.length
        return torch.arange(1, n + 1, dtype=torch.float32) / n


def keyframes(n_frames: int, interval: int) -> list[int]:
    if n_frames < 1:
        raise PromptlabError("a stream needs at least one frame")
    if interval < 1:
        raise PromptlabError(f"keyframe interval must be >= 1, got {interval}")
    ks = list(range(0, n_frames, interval))
    if ks[-1] != n_frames - 1:
        ks.append(n_frames - 1)
    return ks


def segments(n_frames: int, interval: int) -> list[Segment]:
    ks = keyframes(n_frames, interval)
    out = [Segment(0, 0, 0)]
    for i in range(1, len(ks)):
        out.append(Segment(i, ks[i - 1] + 1, ks[i]))
    return out


def segment_of(frame: int, n_frames: int, interval: int) -> Segment:
    """The segment that contains `frame` (arithmetic, no list: a long clip's frame is found in O(1))."""
    if interval < 1:
        raise PromptlabError(f"keyframe interval must be >= 1, got {interval}")
    if not 0 <= frame < n_frames:
        raise PromptlabError(f"frame {frame} is outside 0..{n_frames - 1}")
    if frame == 0:
        return Segment(0, 0, 0)
    i = -(-frame // interval)  # the first keyframe at or after `frame`
    return Segment(i, (i - 1) * interval + 1, min(i * interval, n_frames - 1))
