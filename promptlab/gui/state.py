"""The lab window's state, without Qt: what is open, with which settings, what is shown, where the user looks.

The window renders and this object remembers. Every record of a run, live from the job process
or replayed from the results cache, goes through `apply`, so a cached result leaves exactly
the state a live run leaves; tests drive it without a window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from promptlab.engine.records import Started
from promptlab.runs.records import FrameResult, Record, Scoring, Summary
from promptlab.settings import Settings

FrameRange = tuple[int, int | None]
MARK_PREVIEW, MARK_STALE, MARK_PARTIAL = "PREVIEW", "STALE", "PARTIAL"
# how each mark is drawn, on the banner, the viewer and the plots alike: background, then what it says
MARKS = {MARK_PREVIEW: ("#1d4f7a", "PREVIEW — a transcode of the fitted stream, not a fit of these settings"),
         MARK_STALE: ("#664400", "STALE — fitted for other settings: Run (Ctrl+R) to update"),
         MARK_PARTIAL: ("#5a2d6a", "PARTIAL — a cancelled run's first frames, not saved: Run (Ctrl+R) to finish")}


@dataclass
class LabState:
    """The window's state between and during runs (the controls edit `settings`, the viewer `index`)."""

    settings: Settings = field(default_factory=Settings)
    source: str | None = None                 # video or image folder
    stream: str | None = None                 # a .plab opened without its source
    frames: FrameRange | None = None          # the frame range read from `source`
    view_mode: str = "side"
    index: int = 0                            # the frame shown
    shown_key: str | None = None              # results-cache name of the result shown (None: none, or partial)
    running_key: str | None = None
    fitted_stream: str | None = None          # the fitted stream behind what is shown: what a preview transcodes
    partial: bool = False                     # the frames shown are a cancelled run's (never saved)
    previewing: bool = False                  # the frames shown are a preview (transcoded, not fitted)
    abandoned: bool = False                   # the running job's records no longer belong to the window
    last_error: str = ""
    # the result shown, as its records left it
    scoring: Scoring | None = None
    model_label: str = ""
    init_bytes: int | None = None
    header_bytes: int = 0
    rows: dict[int, FrameResult] = field(default_factory=dict)       # promptlab's frames (encode, then decode)
    base_rows: dict[int, FrameResult] = field(default_factory=dict)  # the baseline codec's frames
    summary: Summary | None = None
    baseline: Summary | None = None

    def current_key(self) -> str | None:
        """The results-cache name of what Run would compute now (None for a bare .plab: never stored)."""
        if self.stream or not self.source:
            return None
        from promptlab.runs.results import result_key

        return result_key(self.source, self.settings, self.run_frames())

    def run_frames(self) -> tuple[int, int] | None:
        """The frame range as the run service takes it."""
        return None if self.frames is None else (self.frames[0], self.frames[1])  # type: ignore[return-value]

    def is_stale(self) -> bool:
        """A finished result is shown but the settings (or source) now name another one."""
        return self.shown_key is not None and self.current_key() != self.shown_key

    def mark(self) -> str:
        """What views and plots must say about the result they show: "PREVIEW" (a transcode of a
        fitted stream, decoded without a fit), "STALE" (fitted, but for other settings) or ""."""
        if self.previewing:
            return MARK_PREVIEW
        if self.partial:
            return MARK_PARTIAL
        return MARK_STALE if self.is_stale() else ""

    def clear_results(self) -> None:
        self.scoring, self.model_label, self.init_bytes, self.header_bytes = None, "", None, 0
        self.rows, self.base_rows = {}, {}
        self.summary = self.baseline = None
        self.shown_key = None
        self.previewing = self.partial = False

    def apply(self, rec: Record) -> None:
        """Remember what a record says about the result shown (records it does not concern are ignored)."""
        if isinstance(rec, Scoring):
            self.scoring = rec
        elif isinstance(rec, Started):
            self.model_label = rec.model
            self.init_bytes, self.header_bytes = rec.init_bytes, rec.header_bytes
        elif isinstance(rec, FrameResult):
            (self.base_rows if rec.stage == "baseline" else self.rows)[rec.index] = rec
        elif isinstance(rec, Summary) and rec.ours:
            self.summary = rec
            ex = rec.extra
            self.model_label = ex.get("model", self.model_label)
            if ex.get("init_bytes") is not None:
                self.init_bytes, self.header_bytes = int(ex["init_bytes"]), int(ex.get("header_bytes", 0))
        elif isinstance(rec, Summary):
            self.baseline = rec

    def cache_label(self) -> str:
        """The cache policy the shown generation times were measured with ("" before any)."""
        return str(self.summary.extra.get("cache", "")) if self.summary is not None else ""
