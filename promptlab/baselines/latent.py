"""Keyframe-latent baselines (VAE, thumbnail): an autoencoder's keyframe latents, quantised and entropy coded.

The honest ablation of the prompt path: the same decoder, no prompt, no generator. Keyframes
(frames 0, k, 2k, … and always the last frame) are encoded to latents and quantised by the
autoencoder's `Quantiser` at one of its levels (the uniform one: clipped to [-range, range],
`level` bits per value; another `Quantiser`, e.g. a codebook's indices, plugs in the same way); each keyframe's codes are one block of the project's entropy coder
(codec/entropy.py, ANS under one discretised Gaussian per keyframe). Frames between keyframes
decode from linearly interpolated latents. The stream is real bytes (header + length-prefixed
blocks) and every byte is counted in kbps.

The autoencoder is passed in (`Autoencoder`: encode/decode callables and a quantiser), so this
module imports no model: the layer that owns the model (models/taef2, engine/thumbnail) builds it.

Rate control: every (level, interval) pair is coded (cheap: one encoder pass over the
keyframe candidates, then quantise + ANS); pairs within the tolerance of the target (the MAX_DECODED closest) are
decoded and the one with the lowest mean squared error kept. A target below the cheapest
pair (the lowest level, keyframes at the first and last frame only) returns that pair with a note naming
the floor; above the dearest, the dearest with a note.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from promptlab.codec import rate
from promptlab.codec.entropy import decode_codes, encode_codes
from promptlab.errors import PromptlabError

MAGIC = b"PLVA"
VERSION = 1
_HEAD = struct.Struct("<4sBBHIHHHf")  # magic, version, bits, interval, frames, C, h, w, range
BITS = tuple(range(1, 9))
MAX_DECODED = 4  # in-tolerance candidates decoded to pick the best (the closest to the target first)
INTERVALS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 60, 80, 120)


@dataclass(frozen=True)
class Quantiser:
    """How one keyframe's latent (C, h, w) becomes uint8 codes at a level (bits per code) and back.

    code(z, level) → uint8 codes of `count(shape)` values, each < 2**level;
    decode(codes, level, shape) → the latent they stand for; describe(level): words for messages.
    """

    name: str
    levels: tuple[int, ...]
    code: Callable[[np.ndarray, int], np.ndarray]
    decode: Callable[[np.ndarray, int, tuple[int, int, int]], np.ndarray]
    count: Callable[[tuple[int, int, int]], int]
    describe: Callable[[int], str]


def uniform_quantiser(lim: float) -> Quantiser:
    """Every latent value clipped to [-lim, lim] and rounded to `level` bits."""
    return Quantiser("uniform", BITS, lambda z, b: quantise(z, b, lim),
                     lambda c, b, shape: dequantise(c, b, lim).reshape(shape),
                     lambda shape: shape[0] * shape[1] * shape[2], lambda b: f"{b} bit{'s' if b > 1 else ''}")


@dataclass
class Autoencoder:
    """encode: uint8 RGB frames (N, H, W, 3) → float latents (N, C, h, w); decode: the inverse.

    `codec` names the method (the result's and the stream file's), `magic` its stream; the
    quantiser defaults to the uniform one over [-latent_range, latent_range].
    """

    name: str
    encode: Callable[[np.ndarray], np.ndarray]
    decode: Callable[[np.ndarray], np.ndarray]
    latent_range: float = 3.0
    quantiser: Quantiser | None = None
    codec: str = "vae"
    magic: bytes = MAGIC
    factor: int = 8  # frame sides must be multiples of it

    def __post_init__(self) -> None:
        if self.quantiser is None:
            self.quantiser = uniform_quantiser(self.latent_range)


@dataclass
class LatentResult:
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
    params: dict = field(default_factory=dict)
    trace: list[dict] = field(default_factory=list)
    converged: bool = True
    note: str = ""

    def summary(self) -> dict:
        """JSON-friendly facts (no pixels, no stream), the same keys as BaselineResult.summary."""
        return {"codec": self.codec, "target_kbps": self.target_kbps, "kbps": self.kbps, "bytes": self.bytes,
                "frames": self.n_frames, "fps": self.fps, "width": self.width, "height": self.height,
                "frame_bytes": self.frame_bytes, "params": self.params, "search": self.trace,
                "within_tolerance": self.converged, "note": self.note}


def keyframes(n: int, interval: int) -> list[int]:
    """Frames coded as latents: every `interval`-th frame and the last one."""
    ks = list(range(0, n, interval))
    return ks if ks[-1] == n - 1 else ks + [n - 1]


def quantise(z: np.ndarray, bits: int, lim: float) -> np.ndarray:
    q = (1 << bits) - 1
    return np.rint((np.clip(z, -lim, lim) + lim) / (2 * lim) * q).astype(np.uint8)


def dequantise(codes: np.ndarray, bits: int, lim: float) -> np.ndarray:
    return codes.astype(np.float32) / ((1 << bits) - 1) * (2 * lim) - lim


def write_stream(latents: dict[int, np.ndarray], n: int, bits: int, interval: int,
                 ae: Autoencoder) -> tuple[bytes, list[int]]:
    """The coded stream and its bytes per frame (header charged to frame 0); `bits`: the quantiser's level."""
    shape = next(iter(latents.values())).shape
    head = _HEAD.pack(ae.magic, VERSION, bits, interval, n, *shape, ae.latent_range)
    frame_bytes = [0] * n
    frame_bytes[0] = len(head)
    parts = [head]
    for k in keyframes(n, interval):
        block = encode_codes([ae.quantiser.code(latents[k], bits)], bits)
        parts.append(struct.pack("<I", len(block)) + block)
        frame_bytes[k] += 4 + len(block)
    return b"".join(parts), frame_bytes


def read_stream(data: bytes, ae: Autoencoder | None = None) -> tuple[int, np.ndarray]:
    """(frames, latent of every frame): keyframes dequantised, the rest interpolated.

    `ae` gives the stream's quantiser and magic (default: the VAE baseline's uniform one)."""
    magic_ok = MAGIC if ae is None else ae.magic
    if len(data) < _HEAD.size:
        raise PromptlabError("latent stream is shorter than its header")
    magic, version, bits, interval, n, c, h, w, lim = _HEAD.unpack_from(data)
    if magic != magic_ok or version != VERSION:
        raise PromptlabError(f"not a promptlab {magic_ok.decode()} stream (bad magic or version)")
    if not (1 <= bits <= 8 and interval >= 1 and n >= 1 and c * h * w > 0 and 0 < lim < 1e3):
        raise PromptlabError("latent stream header holds invalid values")
    q = uniform_quantiser(lim) if ae is None else ae.quantiser
    if bits not in q.levels:
        raise PromptlabError(f"latent stream level {bits} is not one of the {q.name} quantiser's")
    pos, size = _HEAD.size, q.count((c, h, w))
    keys = keyframes(n, interval)
    coded = {}
    for k in keys:
        if pos + 4 > len(data):
            raise PromptlabError("latent stream is truncated")
        (m,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if pos + m > len(data):
            raise PromptlabError("latent stream is truncated")
        coded[k] = q.decode(decode_codes(data[pos:pos + m], [size], bits)[0], bits, (c, h, w))
        pos += m
    if pos != len(data):
        raise PromptlabError("latent stream has trailing data")
    out = np.empty((n, c, h, w), np.float32)
    for a, b in zip(keys, keys[1:] + [keys[-1]]):
        for i in range(a, b + 1):
            t = 0.0 if b == a else (i - a) / (b - a)
            out[i] = (1 - t) * coded[a] + t * coded[b]
    return n, out


def decode_latent_stream(data: bytes, ae: Autoencoder) -> list[np.ndarray]:
    """Decode a stream written by encode_latent_baseline back to uint8 RGB frames."""
    _, z = read_stream(data, ae)
    return list(ae.decode(z))


def _check(frames: Sequence[np.ndarray], fps: float, kbps: float, tolerance: float, ae: Autoencoder) -> None:
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
    f = ae.factor
    if shape[0] % f or shape[1] % f or shape[0] < f or shape[1] < f:
        raise PromptlabError(f"frames of {shape[1]}x{shape[0]}: the {ae.codec} baseline needs sides that are "
                             f"multiples of {f}")


def encode_latent_baseline(frames: Sequence[np.ndarray], fps: float, kbps: float, ae: Autoencoder,
                           tolerance: float = 0.10) -> LatentResult:
    """Code `frames` through `ae` at (nearly) `kbps`: see the module docstring for the search."""
    _check(frames, fps, kbps, tolerance, ae)
    n = len(frames)
    height, width = frames[0].shape[:2]
    target = kbps * 1000.0 / 8.0 * n / fps
    intervals = sorted({min(i, max(n - 1, 1)) for i in INTERVALS})
    needed = sorted({k for i in intervals for k in keyframes(n, i)})
    z = ae.encode(np.stack([frames[k] for k in needed]))
    latents = {k: z[j] for j, k in enumerate(needed)}
    trace, coded = [], {}
    q = ae.quantiser
    for bits in q.levels:
        for interval in intervals:
            stream, fb = write_stream(latents, n, bits, interval, ae)
            coded[(bits, interval)] = (stream, fb)
            trace.append({"bits": bits, "interval": interval, "bytes": len(stream),
                          "error": round(len(stream) / target - 1, 5)})
    within = sorted((k for k, (s, _) in coded.items() if abs(len(s) / target - 1) <= tolerance),
                    key=lambda k: abs(len(coded[k][0]) / target - 1))[:MAX_DECODED]
    src = np.stack(frames).astype(np.float32)
    note, ok = "", bool(within)
    if within:
        best, best_mse = None, float("inf")
        for key in within:
            rec = np.stack(decode_latent_stream(coded[key][0], ae)).astype(np.float32)
            mse = float(((rec - src) ** 2).mean())
            next(t for t in trace if (t["bits"], t["interval"]) == key)["mse"] = round(mse, 3)
            if mse < best_mse:
                best, best_mse = key, mse
    else:
        lo = min(coded, key=lambda k: len(coded[k][0]))
        hi = max(coded, key=lambda k: len(coded[k][0]))
        floor = rate.kbps(len(coded[lo][0]), n, fps)
        if len(coded[lo][0]) > target:
            best = lo
            note = (f"{kbps:g} kbps is below the {ae.name} baseline's floor of {floor:.2f} kbps "
                    f"({q.describe(lo[0])}, keyframes every {lo[1]} frames)")
        else:
            best = min(coded, key=lambda k: abs(len(coded[k][0]) - target))
            top = rate.kbps(len(coded[hi][0]), n, fps)
            note = (f"no setting within ±{tolerance:.0%} of {kbps:g} kbps "
                    f"(floor {floor:.2f}, ceiling {top:.2f} kbps); closest one kept")
    stream, frame_bytes = coded[best]
    recon = decode_latent_stream(stream, ae)
    params = {"autoencoder": ae.name, "quantiser": q.name, "bits": best[0], "level": q.describe(best[0]),
              "keyframe_interval": best[1], "keyframes": len(keyframes(n, best[1])), "latent_range": ae.latent_range,
              "entropy_coder": "promptlab ANS (one discretised Gaussian per keyframe)",
              "between_keyframes": "linear latent interpolation", "encodes": len(coded)}
    return LatentResult(codec=ae.codec, target_kbps=float(kbps), kbps=rate.kbps(len(stream), n, fps),
                        bytes=len(stream), frame_bytes=frame_bytes, recon=recon, fps=float(fps), n_frames=n,
                        width=width, height=height, stream=stream, params=params, trace=trace,
                        converged=ok, note=note)


def encode_best(frames: Sequence[np.ndarray], fps: float, kbps: float, aes: Sequence[Autoencoder],
                tolerance: float = 0.10) -> LatentResult:
    """The best of several autoencoders (e.g. thumbnail scales) at `kbps`: the lowest MSE among those
    within the tolerance; when none is, the one whose rate is closest to the target (its note kept)."""
    fits = [ae for ae in aes if frames and not (frames[0].shape[0] % ae.factor or frames[0].shape[1] % ae.factor)]
    if not fits:
        _check(frames, fps, kbps, tolerance, aes[0])
    results = [encode_latent_baseline(frames, fps, kbps, ae, tolerance) for ae in fits]
    src = np.stack(frames).astype(np.float32)
    ok = [r for r in results if r.converged]
    if ok:
        best = min(ok, key=lambda r: float(((np.stack(r.recon).astype(np.float32) - src) ** 2).mean()))
    else:
        best = min(results, key=lambda r: abs(r.kbps - kbps))
        if all(r.kbps > kbps for r in results):
            best = min(results, key=lambda r: r.kbps)
    best.params["candidates"] = [{"autoencoder": r.params["autoencoder"], "kbps": round(r.kbps, 3),
                                  "within_tolerance": r.converged} for r in results]
    best.params["encodes"] = sum(r.params["encodes"] for r in results)
    return best
