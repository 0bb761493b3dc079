"""Instant previews while a slider moves: the current result's stream, transcoded, decoded only.

A new rank, quantiser width or target rate comes from transcoding the fitted stream
(codec/transcode), a new keyframe interval from re-keying it (factors interpolated from the
fitted ones); the frames come from the receiver's decoder alone. No optimiser step runs, so the
latency depends only on the decoder. The records are the run service's own (stage "preview",
Summary.method "promptlab preview"), so the window renders them with its one handler; a real
fit at the new settings replaces them when it finishes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from promptlab.codec.container import Stream, read_stream
from promptlab.codec.transcode import Transcoded, rekey, transcode, transcode_to_rate
from promptlab.runs.lab import RunSpec, run_lab
from promptlab.runs.records import PREVIEW, FrameResult, Record, Stage, Summary
from promptlab.settings import Settings


@dataclass
class PreviewSpec:
    """A preview of `settings` derived from the fitted stream `stream` (plain data, picklable)."""

    stream: str
    settings: Settings
    kbps: float | None = None                 # a target rate instead of the settings' rank
    source: str | None = None
    frames: tuple[int, int] | None = None
    lpips_net: str = "alex"


def derive(stream: Stream, settings: Settings, kbps: float | None = None) -> Transcoded:
    """The stream the settings ask for, from `stream` without fitting: interval, then rank or rate, bits.

    A rank above the stream's is capped at the stream's (a transcode cannot add detail).
    """
    keyed = rekey(stream, settings.interval)
    if kbps is not None:
        return transcode_to_rate(keyed, kbps, settings.bits)
    return transcode(keyed, min(settings.rank, keyed.header.rank), settings.bits)


def preview(spec: PreviewSpec, cancel: Any = None) -> Iterator[Record]:
    """Yield the preview's records: Scoring, Stage("preview"), Started, FrameResult(stage="preview")…, Summary."""
    derived = derive(read_stream(spec.stream), spec.settings, spec.kbps)
    h = derived.header
    with tempfile.TemporaryDirectory(prefix="promptlab-preview-") as folder:
        path = Path(folder) / "preview.plab"
        path.write_bytes(derived.data)
        run = RunSpec(spec.settings, source=spec.source, frames=spec.frames, stream=str(path),
                      lpips_net=spec.lpips_net)
        for rec in run_lab(run, cancel):
            if isinstance(rec, Stage):
                rec = Stage("preview", f"preview: rank {h.rank}, {h.bits} bits, interval {h.interval} "
                                       "(transcoded from the fitted stream, no fit)")
            elif isinstance(rec, FrameResult):
                rec = replace(rec, stage="preview")
            elif isinstance(rec, Summary):
                rec = replace(rec, method=PREVIEW, extra={**rec.extra, "preview": True, "rank": h.rank,
                                                          "bits": h.bits, "interval": h.interval})
            yield rec
