"""H.265/H.264 baselines at a target bitrate, with every byte of the elementary stream counted.

Rate control: constant-quality (CRF) encodes with a bisection search on the CRF value until
the bytes written land within the tolerance of the target; the whole clip is re-encoded at
each step, which is what a two-pass encode approximates. If CRF cannot get there (a quality
plateau around the target) the search falls back to ABR with a bisection on the bitrate
parameter. The stream is raw Annex-B (VPS/SPS/PPS in-band in the first access unit), without
encoder-banner SEIs (x265 `info=0`; x264's SEI removed; see annexb.py). Bytes per frame are
the access-unit (packet) sizes mapped to frames by presentation timestamp, so the parameter
sets are charged to frame 0 and the per-frame bytes sum exactly to the stream size.

Repeatable bytes: one encoder thread (x264's output depends on its thread count) and the
settings of `repeatable_params`, without which both encoders (x264 165, x265 4.2, measured)
write different bytes from run to run at the same CRF. With them, the same frames and
settings give the same bytes in every run and process, so the CRF search lands on the same
setting and the same stream too.
"""

from __future__ import annotations

import io
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from promptlab.baselines.annexb import strip_banner_sei
from promptlab.codec import rate
from promptlab.errors import PromptlabError
from promptlab.io.video import fps_fraction
from promptlab.io.writer import even_size, pad_even

CODECS: dict[str, tuple[str, str]] = {"h265": ("libx265", "hevc"), "h264": ("libx264", "h264")}
QUIET = {"libx265": {"x265-params": "info=0:log-level=none"}, "libx264": {"x264-params": "log=-1"}}


def closed_gop_params(encoder: str, gop: int) -> dict[str, str]:
    """Closed GOPs of exactly `gop` frames, each starting with an IDR that carries the parameter
    sets: every GOP decodes alone, as a streaming segment must (x264 repeats SPS/PPS by itself)."""
    if gop <= 0:
        return {}
    fixed = {"keyint": str(gop), "min-keyint": str(gop), "scenecut": "0", "open-gop": "0"}
    return {**fixed, "repeat-headers": "1"} if encoder == "libx265" else fixed


@dataclass
class BaselineResult:
    codec: str
    target_kbps: float
    kbps: float
    bytes: int
    frame_bytes: list[int]
    recon: list[np.ndarray]
    fps: float
    n_frames: int
    width: int
    height: int
    stream: bytes = field(repr=False)
    packets: list[Packet] = field(default_factory=list, repr=False)
    params: dict = field(default_factory=dict)
    trace: list[dict] = field(default_factory=list)
    converged: bool = True
    note: str = ""

    def summary(self) -> dict:
        """JSON-friendly facts (no pixels, no stream)."""
        return {"codec": self.codec, "target_kbps": self.target_kbps, "kbps": self.kbps, "bytes": self.bytes,
                "frames": self.n_frames, "fps": self.fps, "width": self.width, "height": self.height,
                "frame_bytes": self.frame_bytes, "params": self.params, "search": self.trace,
                "within_tolerance": self.converged, "note": self.note}


def _check(frames: Sequence[np.ndarray], fps: float, kbps: float, codec: str, tolerance: float) -> None:
    if codec not in CODECS:
        raise PromptlabError(f"unknown baseline codec {codec!r}: use h265 or h264")
    import av

    if CODECS[codec][0] not in av.codecs_available:
        raise PromptlabError(f"this PyAV/FFmpeg build has no {CODECS[codec][0]} encoder")
    if not frames:
        raise PromptlabError("no frames to encode")
    if not (0 < fps <= 1000):
        raise PromptlabError(f"fps must be in (0, 1000], got {fps}")
    if not (kbps > 0):
        raise PromptlabError(f"--kbps must be > 0, got {kbps}")
    if not (0 < tolerance < 1):
        raise PromptlabError(f"tolerance must be in (0, 1), got {tolerance}")
    shape = frames[0].shape
    for i, f in enumerate(frames):
        if f.shape != shape or f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise PromptlabError(f"frame {i} is {f.shape} {f.dtype}; all frames must be uint8 RGB of one size")
    if shape[0] < 16 or shape[1] < 16:
        raise PromptlabError(f"frames of {shape[1]}x{shape[0]} are too small for {codec}")


X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def repeatable_params(encoder: str, width: int, height: int) -> dict[str, str]:
    """Encoder parameters that make a `width`×`height` encode write the same bytes every time.

    x264: its AVX-512 kernels read memory they did not write (the bytes follow the heap's
    leftover contents: MALLOC_PERTURB_ changes them, at 42 of 51 sizes from 16 to 256 px wide), and its
    SSSE3/AVX2 kernels round differently from its C code. On x86 its SIMD is pinned to SSE2,
    which every x86-64 CPU has and which writes the C code's bytes: repeatable, and the same
    on every x86 machine, for 5–20 % more encode time (measured).
    x265: a picture exactly one CTU wide (64 px at the default CTU, 32 px at ultrafast's) gets
    different inter-frame bytes from run to run, even with no threads at all (pools=none); any
    other width repeats. Up to 64 px wide the CTU is the largest that fits the picture (x265
    refuses a smaller picture) and is not its width; a 16 px wide picture has none.
    """
    if encoder == "libx264":
        return {"asm": "MMX2,SSE2"} if X86 else {}
    if width > 64:
        return {}
    fits = [c for c in (64, 32, 16) if c <= min(width, height) and c != width]
    return {"ctu": str(fits[0])} if fits else {}


@dataclass
class Packet:
    """One access unit as the encoder emitted it (decode order), banner SEI removed."""

    pts: int
    dts: int
    data: bytes
    keyframe: bool


def _encode(frames: Sequence[np.ndarray], fps: float, codec: str,
            opts: dict[str, str], gop: int = 0) -> tuple[bytes, list[int], list[Packet]]:
    """One encode: (Annex-B stream, bytes per frame in presentation order, packets)."""
    import av

    encoder = CODECS[codec][0]
    frame_rate = fps_fraction(fps)
    ctx = av.CodecContext.create(encoder, "w")
    w, h = even_size(frames[0].shape[1], frames[0].shape[0])
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuv420p"
    ctx.time_base = 1 / frame_rate
    ctx.framerate = frame_rate
    options = {**QUIET[encoder], **opts}
    key = next(iter(QUIET[encoder]))  # the x264-params / x265-params option
    extra = {**repeatable_params(encoder, w, h), **closed_gop_params(encoder, gop)}
    options[key] = ":".join([options[key], *(f"{k}={v}" for k, v in extra.items())])
    ctx.options = options
    packets: list[Packet] = []

    def take(pkts) -> None:
        for p in pkts:
            if p.pts is None:
                raise PromptlabError(f"{encoder} produced a packet without a timestamp")
            dts = int(p.dts) if p.dts is not None else int(p.pts)
            packets.append(Packet(int(p.pts), dts, strip_banner_sei(bytes(p), codec), bool(p.is_keyframe)))

    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(pad_even(f), format="rgb24").reformat(format="yuv420p")
        vf.pts = i
        take(ctx.encode(vf))
    take(ctx.encode(None))
    if sorted(p.pts for p in packets) != list(range(len(frames))):
        raise PromptlabError(f"{encoder} returned {len(packets)} packets for {len(frames)} frames")
    frame_bytes = [0] * len(frames)
    for p in packets:
        frame_bytes[p.pts] = len(p.data)
    return b"".join(p.data for p in packets), frame_bytes, packets


def decode_stream(data: bytes, codec: str, n_frames: int, width: int, height: int) -> list[np.ndarray]:
    """Decode an Annex-B stream back to RGB frames (cropped to the original size)."""
    import av

    out = []
    with av.open(io.BytesIO(data), format=CODECS[codec][1]) as container:
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24")[:height, :width].copy())
    if len(out) != n_frames:
        raise PromptlabError(f"decoded {len(out)} frames from the {codec} stream, expected {n_frames}")
    return out


def _bisect(evaluate: Callable[[float], int], lo: float, hi: float, target: int, tol: float,
            increasing: bool, steps: int, trace: list[dict], label: str) -> tuple[float, bool, float]:
    """Find x in [lo, hi] with evaluate(x) close to target; bytes are (nearly) monotone in x.

    Aims at a quarter of the tolerance (so results sit near the target, not at the edge of
    the band) and stops there; returns the closest x seen and whether it is within `tol`.
    """
    best_x, best_err = (lo + hi) / 2, float("inf")
    for _ in range(steps):
        x = (lo + hi) / 2
        n = evaluate(x)
        err = n / target - 1.0
        trace.append({label: round(x, 4), "bytes": n, "error": round(err, 5)})
        if abs(err) < best_err:
            best_x, best_err = x, abs(err)
        if abs(err) <= tol / 4:
            break
        too_big = n > target
        if too_big == increasing:
            hi = x
        else:
            lo = x
    return best_x, best_err <= tol, best_err


def encode_baseline(frames: Sequence[np.ndarray], fps: float, kbps: float, codec: str = "h265",
                    tolerance: float = 0.05, preset: str = "medium", threads: int = 1,
                    gop: int = 0) -> BaselineResult:
    """Encode `frames` with x265/x264 so that the bytes written are within `tolerance` of `kbps`.

    gop > 0: closed GOPs of `gop` frames (each an independently decodable segment, see
    `closed_gop_params`); 0: the encoder's own GOP structure.

    threads=1 by default because x264's output depends on its thread count: one thread (and
    repeatable_params) makes the bytes, and so the comparison, the same in every run.
    """
    _check(frames, fps, kbps, codec, tolerance)
    n = len(frames)
    height, width = frames[0].shape[:2]
    target = kbps * 1000.0 / 8.0 * n / fps
    trace: list[dict] = []
    cache: dict[tuple, tuple[bytes, list[int], list[Packet]]] = {}

    def run(opts: dict[str, str]) -> tuple[bytes, list[int], list[Packet]]:
        key = tuple(sorted(opts.items()))
        if key not in cache:
            cache[key] = _encode(frames, fps, codec, {"preset": preset, "threads": str(threads), **opts}, gop)
        return cache[key]

    def crf_opts(x: float) -> dict[str, str]:
        return {"crf": f"{x:.4f}"}

    def abr_opts(x: float) -> dict[str, str]:
        return {"b": str(int(round(x * 1000)))}  # libavcodec bit_rate, bits per second

    method, x, ok = "crf", None, False
    lo_bytes = len(run(crf_opts(51.0))[0])
    hi_bytes = len(run(crf_opts(0.0))[0])
    trace += [{"crf": 51.0, "bytes": lo_bytes, "error": round(lo_bytes / target - 1, 5)},
              {"crf": 0.0, "bytes": hi_bytes, "error": round(hi_bytes / target - 1, 5)}]
    note = ""
    if lo_bytes > target * (1 + tolerance):
        x, ok = 51.0, False
        note = f"{kbps:g} kbps is below what {codec} reaches at its coarsest quantiser (CRF 51)"
    elif hi_bytes < target * (1 - tolerance):
        x, ok = 0.0, False
        note = f"{kbps:g} kbps is above what {codec} spends even at CRF 0"
    else:
        x, ok, crf_err = _bisect(lambda c: len(run(crf_opts(c))[0]), 0.0, 51.0, int(target), tolerance,
                                 increasing=False, steps=24, trace=trace, label="crf")
        if not ok:
            xb, ok, abr_err = _bisect(lambda b: len(run(abr_opts(b))[0]), kbps / 8, kbps * 8, int(target),
                                      tolerance, increasing=True, steps=24, trace=trace, label="bitrate_kbps")
            if ok or abr_err < crf_err:
                method, x = "abr", xb
            if not ok:
                note = f"no setting within ±{tolerance:.1%} of {kbps:g} kbps; closest one kept"
    opts = crf_opts(x) if method == "crf" else abr_opts(x)
    stream, frame_bytes, packets = run(opts)
    recon = decode_stream(stream, codec, n, width, height)
    params = {"encoder": CODECS[codec][0], "preset": preset, "rate_control": method,
              **({"crf": round(x, 4)} if method == "crf" else {"bitrate_kbps": round(x, 3)}),
              "pix_fmt": "yuv420p", "threads": threads, "encodes": len(cache),
              **repeatable_params(CODECS[codec][0], *even_size(width, height)),
              **({"gop": gop} if gop > 0 else {})}
    return BaselineResult(codec=codec, target_kbps=float(kbps), kbps=rate.kbps(len(stream), n, fps),
                          bytes=len(stream), frame_bytes=frame_bytes, recon=recon, fps=float(fps), n_frames=n,
                          width=width, height=height, stream=stream, packets=packets, params=params, trace=trace,
                          converged=ok, note=note)
