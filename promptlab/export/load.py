"""Build a Comparison from files: the source clip and either a .plab stream (decoded here) or an
already decoded clip, plus an optional H.265/H.264 run at the same bitrate.

Frame alignment: frame 0 of the stream is source frame A of `frames=(A, B)` (the range given
to `promptlab encode`); a shorter range exports only the first B-A frames of the stream.
"""

from __future__ import annotations

import os
from pathlib import Path

from promptlab.errors import PromptlabError
from promptlab.export.comparison import CancelFlag, Comparison, Progress, Rendition, check_cancel
from promptlab.io.video import FrameRange, probe, read_frames

BASELINES = {"h265": "H.265", "h264": "H.264"}


def is_stream(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".plab"


def _stop(frames: FrameRange | None, n: int) -> tuple[int, int]:
    start, stop = frames if frames is not None else (0, None)
    if stop is not None:
        n = min(n, stop - start)
    return start, n


def _decode_stream(stream: str | Path, frames: FrameRange | None, device: str,
                   progress: Progress | None, cancel: CancelFlag | None) -> tuple[Rendition, dict, int, float]:
    from promptlab.codec.container import read_stream
    from promptlab.codec.rate import kbps
    from promptlab.engine import records
    from promptlab.engine.decoder import decode

    s = read_stream(stream)
    h = s.header
    if h.width != h.height:
        raise PromptlabError(f"{stream} holds {h.width}x{h.height} frames; export expects square frames")
    start, n = _stop(frames, h.n_frames)
    images, nbytes, gen_ms = [], [], []
    model_name = h.model
    for rec in decode(stream, device=device, cancel=cancel):
        check_cancel(cancel)
        if isinstance(rec, records.Started):
            model_name = rec.model or model_name
        elif isinstance(rec, records.Frame):
            images.append(rec.image)
            nbytes.append(float(rec.bytes))
            gen_ms.append(float(rec.gen_ms))
            if progress:
                progress("decode", len(images), n)
            if len(images) >= n:
                break
    if len(images) < n:
        raise PromptlabError(f"{stream} decoded to {len(images)} frames, expected {n}")
    rate = kbps(s.total_bytes, h.n_frames, h.fps)
    info = {"stream": str(stream), "model": model_name, "stream_bytes": s.total_bytes,
            "settings": {**h.settings_fields(), "frames in stream": h.n_frames}}
    r = Rendition("promptlab", f"promptlab {h.model} r{h.rank} · {rate:.0f} kbps", images, rate,
                  frame_bytes=nbytes, gen_ms=gen_ms, info={"model": model_name, "total_bytes": s.total_bytes})
    return r, info, h.width, h.fps


def _read_recon(recon: str | Path, frames: FrameRange | None, kbps: float | None, label: str | None,
                fps: float | None, cancel: CancelFlag | None) -> tuple[Rendition, dict, int, float]:
    info_v = probe(recon, fps=fps)
    if info_v.width != info_v.height:
        raise PromptlabError(f"{recon} frames are {info_v.width}x{info_v.height}; export expects square frames")
    images = []
    limit = _stop(frames, 10**9)[1]
    for img in read_frames(recon, fps=fps):
        check_cancel(cancel)
        images.append(img)
        if len(images) >= limit:
            break
    text = label or "reconstruction"
    if kbps is not None:
        text += f" · {kbps:.0f} kbps"
    r = Rendition("recon", text, images, kbps, info={"path": str(recon)})
    return r, {"reconstruction": str(recon)}, info_v.width, info_v.fps


def load_comparison(src: str | Path, recon: str | Path, *, frames: FrameRange | None = None,
                    baseline: str | None = None, kbps: float | None = None, label: str | None = None,
                    fps: float | None = None, device: str = "auto", progress: Progress | None = None,
                    cancel: CancelFlag | None = None) -> Comparison:
    """Original frames, the reconstruction (decoding a .plab) and optionally a baseline at its rate."""
    if baseline is not None and baseline not in BASELINES:
        raise PromptlabError(f"unknown baseline {baseline!r}: use {', '.join(BASELINES)} or none")
    if is_stream(recon):
        if kbps is not None:
            raise PromptlabError("--kbps is for decoded clips; a .plab stream's rate is measured from its bytes")
        rend, info, size, clip_fps = _decode_stream(recon, frames, device, progress, cancel)
        crop = info["settings"]["crop"]
    else:
        rend, info, size, clip_fps = _read_recon(recon, frames, kbps, label, fps, cancel)
        crop = "center"
    if label and rend.name == "promptlab":
        rend.label = f"{label} · {rend.kbps:.0f} kbps"
    start = frames[0] if frames is not None else 0
    n = len(rend.frames)
    if frames is not None and frames[1] is not None and frames[1] - start > n:
        raise PromptlabError(f"--frames {start}:{frames[1]} asks for {frames[1] - start} frames "
                             f"but the reconstruction holds {n}")
    originals = []
    for img in read_frames(src, frames=(start, start + n), size=size, crop=crop):
        check_cancel(cancel)
        originals.append(img)
    if len(originals) < n:
        raise PromptlabError(f"the source gives {len(originals)} frames from frame {start} "
                             f"but the reconstruction has {n}; check --frames")
    info = {"source": str(src), **info}
    comp_fps = fps or clip_fps
    renditions = [rend]
    if baseline:
        renditions.append(run_baseline(originals, comp_fps, rend.kbps, baseline, progress))
    return Comparison(originals, renditions, comp_fps, first_frame=start, info=info)


def run_baseline(originals, fps: float, kbps: float | None, codec: str, progress: Progress | None = None) -> Rendition:
    """The classical codec on the same frames at the same rate (every byte counted)."""
    from promptlab.baselines import encode_baseline

    if kbps is None:
        raise PromptlabError("a baseline needs the reconstruction's rate: export from a .plab or pass --kbps")
    if progress:
        progress("baseline", 0, 1)
    res = encode_baseline(originals, fps, kbps, codec=codec)
    if progress:
        progress("baseline", 1, 1)
    info = {"target_kbps": round(res.target_kbps, 3), "kbps": round(res.kbps, 3), "bytes": res.bytes,
            **res.params, **({"note": res.note} if res.note else {})}
    return Rendition(codec, f"{BASELINES[codec]} · {res.kbps:.0f} kbps", list(res.recon), res.kbps,
                     frame_bytes=[float(b) for b in res.frame_bytes], info=info)
