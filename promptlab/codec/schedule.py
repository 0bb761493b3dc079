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


def gop_starts(n_frames: int, gop: int) -> list[int]:
    """First frame of every closed GOP (`gop` frames each, the last one shorter; 0: one GOP)."""
    if n_frames < 1:
        raise PromptlabError("a stream needs at least one frame")
    return list(range(0, n_frames, gop or n_frames))


def gop_of(frame: int, gop: int) -> int:
    """The GOP that holds `frame` (0 when the stream is one GOP)."""
    return frame // gop if gop else 0


def stream_segments(n_frames: int, interval: int, gop: int = 0) -> list[tuple[int, Segment]]:
    """(GOP, segment) of a whole stream in order; frames are the clip's, `index` counts within the GOP.

    Each closed GOP restarts the schedule at its first frame (its own init latent, its keyframe 0
    alone), so a GOP is coded exactly like a clip of its length and needs nothing before it.
    """
    out = []
    for g, start in enumerate(gop_starts(n_frames, gop)):
        length = min(gop or n_frames, n_frames - start)
        out += [(g, Segment(s.index, s.start + start, s.keyframe + start)) for s in segments(length, interval)]
    return out
