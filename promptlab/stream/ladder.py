"""The measured rate ladder of one clip: prompt rungs from one fitted stream, H.265 at the same segments.

One encode (the lab's run, `runs.lab.run_lab`, so it shares the results cache with the window
and `promptlab run`) fits the clip in closed GOPs of `gop` frames: a GOP is one streaming
segment. Every prompt rung is that stream transcoded (`codec.transcode`: rank truncation,
requantised factors, no re-fit), decoded as the receiver does and scored frame by frame. The
classical codec's rung r is the same clip rate-controlled to prompt rung r's achieved rate, in
closed GOPs of the same length (`baselines.encode_baseline(gop=...)`), so both ladders are cut
at the same boundaries. Every rung is one results-cache entry (its stream, frames, LPIPS and
baseline), so a second build recomputes nothing.

Segment bytes, prompts: the stream header (it carries the rank and bits, so a segment at any
rung decodes alone) + the GOP's init record + its keyframe records; the file's GOP index is
for seeking and is not sent. H.265: the GOP's access units (its IDR repeats VPS/SPS/PPS).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptlab.codec.container import TAG_KEY, Stream, read_stream
from promptlab.codec.transcode import transcode
from promptlab.errors import PromptlabError
from promptlab.io.atomic import write_bytes_atomic
from promptlab.runs.lab import RunSpec, run_lab
from promptlab.runs.records import FrameResult, Progress, Reused, Scoring, Stage, Summary
from promptlab.runs.results import ResultsCache, source_stamp
from promptlab.settings import Settings
from promptlab.stream.records import Ladder, LaddersReady, Rung, RungMeasured

LADDER_TAG = "stream-ladder-1"   # part of every rung's results-cache name: a new layout, new names
FIT_SHARE = 0.6                   # of the progress bar when the top stream must be fitted


def default_rungs(rank: int, bits: int) -> list[tuple[int, int]]:
    """Ranks halving from the fitted one down to 1 at the fitted bits, plus rank 1 at 2 bits."""
    ranks = sorted({max(1, rank >> k) for k in range(8)})
    out = [(r, bits) for r in ranks]
    if bits > 2:
        out.insert(0, (1, 2))
    return out


def parse_rungs(text: str) -> list[tuple[int, int]]:
    """"8x3,4x3,2x3": rank×bits pairs."""
    out = []
    for part in text.split(","):
        try:
            r, b = part.lower().split("x")
            out.append((int(r), int(b)))
        except ValueError:
            raise PromptlabError(f"--rungs: {part!r} is not RANKxBITS (e.g. 8x3,4x3,2x3)") from None
    if not out:
        raise PromptlabError("--rungs: no rung given")
    return out


@dataclass
class LadderSpec:
    """What to measure. `settings.gop` is the segment length in frames (a multiple of the interval)."""

    settings: Settings
    source: str
    frames: tuple[int, int]                       # [A, B) of the source; B − A a multiple of the GOP
    rungs: list[tuple[int, int]] = field(default_factory=list)   # (rank, bits); default_rungs if empty
    baseline: str | None = "h265"
    lpips_net: str = "alex"
    cache_root: str | None = None
    stream: str | None = None                     # an already fitted .plab of `source`: no fit

    def check(self) -> None:
        s, (a, b) = self.settings, self.frames
        if self.stream:
            from promptlab.codec.container import read_header

            h = read_header(self.stream)
            if h.n_frames != b - a:
                raise PromptlabError(f"{Path(self.stream).name} holds {h.n_frames} frames but the original's range "
                                     f"has {b - a}; give --frames A:B of the clip it was fitted to")
            if h.gop == 0 and h.n_frames > 1:
                raise PromptlabError(f"{Path(self.stream).name} is one GOP: streaming needs closed GOPs "
                                     "(encode it with --gop N)")
        if s.gop <= 0:
            raise PromptlabError("streaming needs closed GOPs: give --gop N (frames per segment, "
                                 f"a multiple of the keyframe interval {s.interval})")
        if (b - a) < s.gop or (b - a) % s.gop:
            whole = (b - a) // s.gop * s.gop
            hint = f"e.g. --frames {a}:{a + whole}" if whole else f"a --gop of at most {b - a}"
            raise PromptlabError(f"the clip's {b - a} frames are not a whole number of {s.gop}-frame segments; "
                                 f"use {hint}")
        for r, bits in self.rungs:
            if not 1 <= r <= s.rank or not 2 <= bits <= 8:
                raise PromptlabError(f"rung {r}x{bits}: rank must be 1..{s.rank} (the fitted rank), bits 2..8")

    def rung_list(self) -> list[tuple[int, int]]:
        return sorted(set(self.rungs or default_rungs(self.settings.rank, self.settings.bits)))


def rung_key(base_key: str, rank: int, bits: int, baseline: str | None, gop: int) -> str:
    payload = f"{LADDER_TAG}|{base_key}|r{rank}|b{bits}|{baseline}|g{gop}"
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def segment_bytes(stream: Stream) -> list[int]:
    """Bytes a receiver needs for each closed GOP on its own: header + init record + keyframe records."""
    h = stream.header
    out = [stream.header_bytes] * h.n_gops
    for g, n in enumerate(stream.init_sizes):
        out[g] += n
    keys = iter(stream.keyframe_bytes)
    for tag, g, _ in h.plan():
        if tag == TAG_KEY:
            out[g] += next(keys)
    return out


def _kbps(n_bytes: int, n_frames: int, fps: float) -> float:
    return n_bytes * 8 / (n_frames / fps) / 1000


def build_ladders(spec: LadderSpec, cancel: Any = None) -> Iterator[Any]:
    """Yield Stage / Progress / RungMeasured records, then LaddersReady (prompt rungs cheapest first)."""
    from promptlab.metrics import lpips_status

    spec.check()
    ok, why = lpips_status(spec.lpips_net)
    if not ok:
        raise PromptlabError(f"the ladder's quality is per-frame LPIPS, which is unavailable: {why}")
    s, gop = spec.settings, spec.settings.gop
    cache = ResultsCache(spec.cache_root)
    top = RunSpec(settings=s, source=spec.source, frames=spec.frames, lpips_net=spec.lpips_net,
                  cache_root=spec.cache_root)
    assert top.key is not None
    rungs = spec.rung_list()
    share = 0.0
    if spec.stream:  # a stream fitted elsewhere: its rungs are named by its file and the original's frames
        base_key = hashlib.sha256(f"{source_stamp(spec.stream)}|{top.key}".encode()).hexdigest()[:20]
        src = read_stream(spec.stream)
    else:
        base_key = top.key
        share = 0.0 if cache.has(top.key) else FIT_SHARE
        yield Stage("encode", "fitting the top rung (the one stream every prompt rung is transcoded from)")
        for rec in run_lab(top, cancel=cancel):
            if isinstance(rec, Progress) and share:
                yield Progress(share * rec.fraction, rec.text)
        src = read_stream(cache.path(top.key) / "stream.plab")
    prompt: list[Rung] = []
    base: list[Rung] = []
    for i, (rank, bits) in enumerate(rungs):
        key = rung_key(base_key, rank, bits, spec.baseline, gop)
        path = cache.path(key) / "stream.plab"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, transcode(src, rank, bits).data)
        run = RunSpec(settings=s.replace(rank=rank, bits=bits), source=spec.source, frames=spec.frames,
                      stream=str(path), key=key, baseline=spec.baseline, baseline_gop=gop,
                      lpips_net=spec.lpips_net, cache_root=spec.cache_root)
        yield Stage("decode", f"rung r{rank} b{bits}: decoding, scoring"
                    + (f" and {spec.baseline.upper()} at its rate" if spec.baseline else ""))
        rows: dict[str, list[FrameResult]] = {"decode": [], "baseline": []}
        summaries: dict[str, Summary] = {}
        reused = False
        for rec in run_lab(run, cancel=cancel):
            if isinstance(rec, Reused):
                reused = True
            elif isinstance(rec, Scoring) and not rec.lpips_available:
                raise PromptlabError(f"rung r{rank} b{bits}: LPIPS unavailable ({rec.message})")
            elif isinstance(rec, FrameResult) and rec.stage in rows:
                rows[rec.stage].append(rec)
            elif isinstance(rec, Summary):
                summaries["baseline" if not rec.ours else "promptlab"] = rec
            elif isinstance(rec, Progress):
                yield Progress(share + (1 - share) * (i + rec.fraction) / len(rungs), rec.text)
        seg = segment_bytes(read_stream(path))
        n = len(rows["decode"])
        ours = Rung("promptlab", f"r{rank} b{bits}", _kbps(sum(seg), n, s.fps), seg,
                    [float(r.lpips) for r in rows["decode"]], key, rank=rank, bits=bits)
        prompt.append(ours)
        yield RungMeasured(ours, i, len(rungs), reused)
        if spec.baseline:
            b = summaries["baseline"]
            if b.extra.get("gop") != gop:
                raise PromptlabError(f"the stored {spec.baseline} rung of {key} is not cut at {gop}-frame GOPs")
            fb = [int(r.bytes) for r in rows["baseline"]]
            bseg = [sum(fb[j:j + gop]) for j in range(0, len(fb), gop)]
            theirs = Rung(spec.baseline, f"{b.kbps:.1f} kbps", _kbps(sum(bseg), len(fb), s.fps), bseg,
                          [float(r.lpips) for r in rows["baseline"]], key, target_kbps=ours.kbps,
                          within_tolerance=bool(b.extra.get("within_tolerance", True)))
            base.append(theirs)
            yield RungMeasured(theirs, i, len(rungs), reused)
    yield Progress(1.0, "ladders measured")

    def ladder(codec: str, rs: list[Rung]) -> Ladder:
        """Cheapest first; a rung that is another's very stream (H.265 pinned at its coarsest
        quantiser below its floor rate) is one rung, so a 'switch' between them is not counted."""
        out: list[Rung] = []
        for r in sorted(rs, key=lambda r: (sum(r.segment_bytes), r.label)):
            if not any(o.segment_bytes == r.segment_bytes and o.frame_lpips == r.frame_lpips for o in out):
                out.append(r)
        return Ladder(codec, gop, s.fps, out)

    yield LaddersReady(ladder("promptlab", prompt), ladder(spec.baseline, base) if spec.baseline else None)


def recon_path(cache_root: str | Path | None, rung: Rung) -> Path:
    """The rung's reconstruction in the results cache (recon.npz, or baseline.npz for a baseline rung)."""
    name = "recon.npz" if rung.codec == "promptlab" else "baseline.npz"
    return ResultsCache(cache_root).path(rung.key) / name
