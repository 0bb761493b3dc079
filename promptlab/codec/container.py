"""The .plab stream: a versioned header, then per closed GOP its init latent and keyframe records.

Every chunk carries its length and a CRC32, so a receiver decodes records as they arrive and a
damaged or truncated file is reported at the first bad record while everything before it still
decodes. A finished stream ends with an index of the GOPs' byte offsets, so a reader seeks to the
GOP holding a frame and reads nothing before it (`read_gops`); a damaged GOP leaves the others
decodable. All sizes are bounded by the header before anything is allocated. The byte layout is
specified in docs/format.md; version 1 streams (one GOP, no index) still read.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from promptlab.codec import entropy
from promptlab.codec.prompt import TOKENS
from promptlab.codec.quant import QParams, dequantize, qparams, quantize
from promptlab.codec.schedule import gop_starts, stream_segments
from promptlab.codec.shapes import ModelShape, recorded_name, shape_for
from promptlab.errors import PromptlabError, StreamError
from promptlab.io.video import fps_fraction
from promptlab.settings import (
    CROP_MODES,
    INIT_MODES,
    INTERP_MODES,
    MAX_RANK,
    STAGE_SCALES,
    Settings,
)

MAGIC = b"PLAB"
VERSION = 2  # 2: closed GOPs (the header's GOP length, an init record per GOP, the GOP index); q6 and zero init
READABLE = (1, 2)
# two-stage upsampler the prompts were fitted through (its index is the header byte: append only)
UPSAMPLERS = ("bicubic", "lanczos", "realesrgan-x2", "realesrgan-x4")
TAG_INIT, TAG_KEY, TAG_INDEX = 0x49, 0x4B, 0x58  # 'I', 'K', 'X'
_HDR = struct.Struct("<HHIIIHBHIfBBBBHBHHBB")
_GOP = struct.Struct("<I")  # version 2: the GOP length follows the model name
INIT_BITS = 6  # the compact init coding (q6): chosen by measurement, docs/format.md
LIMITS = {"side": 8192, "rank": MAX_RANK, "dim": 4096, "frames": 10_000_000, "channels": 64}


@dataclass(frozen=True)
class StreamHeader:
    """What a receiver must know before the first record; see docs/format.md."""

    model: str
    width: int
    height: int
    fps: float
    n_frames: int
    rank: int
    bits: int
    interval: int
    seed: int
    blend: float
    crop: str = "center"
    interp: str = "factors"
    init_mode: str = "f32"
    context_dim: int = 1024
    latent_channels: int = 4
    latent_h: int = 0
    latent_w: int = 0
    tokens: int = TOKENS
    upsampler: str = "bicubic"
    gop: int = 0  # closed GOP length in frames; 0 (or the whole clip): one GOP

    def __post_init__(self) -> None:
        lh = self.latent_h or self.height // 8
        lw = self.latent_w or self.width // 8
        object.__setattr__(self, "latent_h", lh)
        object.__setattr__(self, "latent_w", lw)
        if self.gop >= self.n_frames > 0:
            object.__setattr__(self, "gop", 0)  # one GOP however it was asked for: one way to write it
        # what the bytes can hold (float32), as the shortest decimal that is that float32 (0.05, not
        # 0.05000000074505806): a header equals its own round trip and gives back the setting it was given
        object.__setattr__(self, "blend", float(np.format_float_positional(np.float32(self.blend), unique=True)))
        if self.fps > 0:
            object.__setattr__(self, "fps", float(fps_fraction(self.fps)))
        self.check()

    def check(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise StreamError(f"stream header: {what}", record=None)

        need(0 < self.width <= LIMITS["side"] and 0 < self.height <= LIMITS["side"], "bad frame size")
        need(0 < self.rank <= LIMITS["rank"], "bad rank")
        need(2 <= self.bits <= 8, "bad bit depth")
        need(0 < self.interval <= 65535, "bad keyframe interval")
        need(0 < self.n_frames <= LIMITS["frames"], "bad frame count")
        need(0 < self.context_dim <= LIMITS["dim"] and 0 < self.tokens <= 255, "bad context shape")
        need(0 < self.latent_channels <= LIMITS["channels"], "bad latent channels")
        need(0 < self.latent_h <= self.height and 0 < self.latent_w <= self.width, "bad latent size")
        need(self.crop in CROP_MODES and self.interp in INTERP_MODES and self.init_mode in INIT_MODES, "bad mode")
        need(self.upsampler in UPSAMPLERS, f"upsampler must be one of {UPSAMPLERS}")
        need(0 < self.fps <= 1000 and 0.0 <= self.blend <= 1.0, "bad fps or blend")
        need(0 < len(self.model.encode()) <= 255, "bad model name")
        need(self.gop >= 0 and self.gop % self.interval == 0, "GOP length must be a multiple of the interval")

    @classmethod
    def from_settings(cls, settings: Settings, n_frames: int, shape: ModelShape,
                      latent_side: int | None = None) -> StreamHeader:
        """The header an encode of `n_frames` at `settings` writes (`latent_side`: the two-stage latent)."""
        side = latent_side or settings.size // shape.latent_factor
        return cls(
            model=recorded_name(settings.model), width=settings.size, height=settings.size, fps=settings.fps,
            n_frames=n_frames, rank=settings.rank, bits=settings.bits, interval=settings.interval,
            seed=settings.seed, blend=settings.blend, crop=settings.crop, interp=settings.interp,
            init_mode=settings.init_mode, context_dim=shape.context_dim, latent_channels=shape.latent_channels,
            latent_h=side, latent_w=side, upsampler=_recordable_upsampler(settings), gop=settings.gop,
        )

    def settings_fields(self) -> dict[str, Any]:
        """The Settings fields this header records (the inverse of from_settings)."""
        fields: dict[str, Any] = {
            "model": self.model, "size": self.width, "rank": self.rank, "bits": self.bits,
            "interval": self.interval, "fps": self.fps, "seed": self.seed, "blend": self.blend,
            "interp": self.interp, "crop": self.crop, "init_mode": self.init_mode, "upsampler": self.upsampler,
            "gop": self.gop,
        }
        generated = self.latent_w * shape_for(self.model).latent_factor
        if generated and self.width % generated == 0 and self.width // generated in STAGE_SCALES:
            fields["stage_scale"] = self.width // generated
        return fields

    def to_settings(self, base: Settings | None = None) -> Settings:
        """`base` (default Settings()) with what this header records; runtime and inversion fields stay."""
        if self.width != self.height:
            raise PromptlabError(f"the stream holds {self.width}x{self.height} frames; settings describe square frames")
        return (base or Settings()).replace(**self.settings_fields())

    @property
    def n_keyframes(self) -> int:
        return len(self.plan()) - self.n_gops

    @property
    def n_gops(self) -> int:
        return len(gop_starts(self.n_frames, self.gop))

    def plan(self) -> list[tuple[int, int, int]]:
        """The records in stream order: (tag, GOP, keyframe number over the stream or -1 for an init)."""
        out, k, last = [], 0, -1
        for g, _ in stream_segments(self.n_frames, self.interval, self.gop):
            if g != last:
                out.append((TAG_INIT, g, -1))
                last = g
            out.append((TAG_KEY, g, k))
            k += 1
        return out

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        return (1, self.latent_channels, self.latent_h, self.latent_w)

    def keyframe_sizes(self) -> list[int]:
        return [self.tokens * self.rank, self.rank * self.context_dim]

    def to_bytes(self) -> bytes:
        fps = fps_fraction(self.fps)
        model = self.model.encode()
        body = _HDR.pack(
            self.width, self.height, fps.numerator, fps.denominator, self.n_frames,
            self.rank, self.bits, self.interval, self.seed, self.blend,
            CROP_MODES.index(self.crop), INTERP_MODES.index(self.interp), INIT_MODES.index(self.init_mode),
            self.tokens, self.context_dim, self.latent_channels, self.latent_h, self.latent_w,
            UPSAMPLERS.index(self.upsampler), len(model),
        ) + model
        body += _GOP.pack(self.gop)
        head = MAGIC + bytes([VERSION]) + struct.pack("<H", len(body)) + body
        return head + struct.pack("<I", zlib.crc32(head))

    @classmethod
    def from_body(cls, body: bytes, version: int = VERSION) -> StreamHeader:
        if len(body) < _HDR.size:
            raise StreamError("stream header is too short")
        v = _HDR.unpack_from(body)
        name = body[_HDR.size:_HDR.size + v[19]]
        rest = body[_HDR.size + v[19]:]
        if len(name) != v[19] or len(rest) != (_GOP.size if version >= 2 else 0):
            raise StreamError("stream header: model name length mismatch")
        gop = _GOP.unpack(rest)[0] if rest else 0
        try:
            if v[3] == 0:
                raise ValueError("zero fps denominator")
            return cls(
                model=name.decode(), width=v[0], height=v[1], fps=v[2] / v[3], n_frames=v[4],
                rank=v[5], bits=v[6], interval=v[7], seed=v[8], blend=float(v[9]),
                crop=CROP_MODES[v[10]], interp=INTERP_MODES[v[11]], init_mode=INIT_MODES[v[12]],
                tokens=v[13], context_dim=v[14], latent_channels=v[15], latent_h=v[16], latent_w=v[17],
                upsampler=UPSAMPLERS[v[18]], gop=gop,
            )
        except (IndexError, UnicodeDecodeError, ValueError) as exc:
            raise StreamError(f"stream header is invalid ({exc})") from None


def _recordable_upsampler(settings: Settings) -> str:
    """The stream header names the two-stage upsampler; only built-in ones can be recorded."""
    if settings.upsampler in UPSAMPLERS:
        return settings.upsampler
    if settings.stage_scale == 1:
        return UPSAMPLERS[0]  # single stage: no upsampler is used
    raise PromptlabError(f"upsampler {settings.upsampler!r} cannot be recorded in a stream; use one of {UPSAMPLERS}")


@dataclass
class KeyframeRecord:
    """One keyframe's quantised factors: what the sender transmits."""

    u: torch.Tensor  # uint8 (tokens, rank)
    v: torch.Tensor  # uint8 (rank, dim)
    u_qp: QParams
    v_qp: QParams

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Dequantised U, V (float32)."""
        return dequantize(self.u, self.u_qp), dequantize(self.v, self.v_qp)


class _Counted:
    """Byte counts of a stream's parts (a stream read, or one being written): every byte counted."""

    header_bytes: int
    init_sizes: list[int]
    keyframe_bytes: list[int]
    index_bytes: int

    @property
    def init_bytes(self) -> int:
        return sum(self.init_sizes)

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + self.init_bytes + sum(self.keyframe_bytes) + self.index_bytes


@dataclass
class Stream(_Counted):
    """What a reader got: the header and, per GOP read (from `first_gop` on), its init latent and keyframes."""

    header: StreamHeader
    inits: list[torch.Tensor] = field(default_factory=list)
    keyframes: list[KeyframeRecord] = field(default_factory=list)
    header_bytes: int = 0
    init_sizes: list[int] = field(default_factory=list)
    keyframe_bytes: list[int] = field(default_factory=list)
    index_bytes: int = 0
    first_gop: int = 0  # a seeking read (read_gops) starts here; its keyframes start at that GOP's first
    error: StreamError | None = None  # set when a partial read stopped at a bad record

    @property
    def init_latent(self) -> torch.Tensor | None:
        """The first GOP's init latent (the only one of a one-GOP stream)."""
        return self.inits[0] if self.inits else None

    @property
    def complete(self) -> bool:
        return self.error is None and self.first_gop == 0 and len(self.keyframes) == self.header.n_keyframes


def _chunk(tag: int, payload: bytes) -> bytes:
    head = struct.pack("<BI", tag, len(payload))
    return head + payload + struct.pack("<I", zlib.crc32(head + payload))


def _q6_range(x: np.ndarray) -> tuple[np.float16, np.float16]:
    with np.errstate(over="ignore"):  # out of range: inf, refused below
        lo, hi = np.float16(x.min()), np.float16(x.max())  # nearest: an encode of a decode is the same bytes
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise PromptlabError("init latent is outside the float16 range of the q6 coding; use init_mode f32")
    return lo, hi


def _q6_values(codes: np.ndarray, lo: np.float16, hi: np.float16) -> np.ndarray:
    step = (np.float32(hi) - np.float32(lo)) / np.float32((1 << INIT_BITS) - 1)
    return (np.float32(lo) + codes.astype(np.float32) * step).astype(np.float32)


def encode_init(latent: torch.Tensor, header: StreamHeader) -> bytes:
    x = latent.detach().to(torch.float32).cpu().contiguous()
    if tuple(x.shape) != header.latent_shape:
        raise PromptlabError(f"init latent has shape {tuple(x.shape)}, header says {header.latent_shape}")
    if header.init_mode == "zero":
        return b""  # nothing sent: every GOP starts from a zero latent
    if header.init_mode == "f32":
        return x.numpy().astype("<f4").tobytes()
    if header.init_mode == "f16":
        return x.numpy().astype("<f2").tobytes()
    if header.init_mode == "q6":
        a = x.numpy().ravel()
        lo, hi = _q6_range(a)
        qmax = (1 << INIT_BITS) - 1
        step = (np.float32(hi) - np.float32(lo)) / np.float32(qmax)
        codes = np.zeros(a.shape, np.uint8) if step <= 0 else \
            np.clip(np.rint((a - np.float32(lo)) / step), 0, qmax).astype(np.uint8)
        return struct.pack("<ee", lo, hi) + entropy.encode_codes([codes], INIT_BITS)
    qp = qparams(float(x.min()), float(x.max()), 8)
    codes = quantize(x, qp).numpy()
    return struct.pack("<ff", qp.scale, qp.zero_point) + entropy.encode_codes([codes], 8)


def decode_init(payload: bytes, header: StreamHeader) -> torch.Tensor:
    shape = header.latent_shape
    n = int(np.prod(shape))
    mode = header.init_mode
    if mode == "zero":
        if payload:
            raise PromptlabError(f"init latent of mode zero holds {len(payload)} bytes, expected none")
        arr = np.zeros(shape, np.float32)
    elif mode in ("f32", "f16"):
        dt = "<f4" if mode == "f32" else "<f2"
        if len(payload) != n * np.dtype(dt).itemsize:
            raise PromptlabError(f"init latent holds {len(payload)} bytes, expected {n * np.dtype(dt).itemsize}")
        arr = np.frombuffer(payload, dtype=dt).astype(np.float32).reshape(shape)
    elif mode == "q6":
        if len(payload) < 5:
            raise PromptlabError("init latent record is too short")
        lo, hi = np.frombuffer(payload, dtype="<f2", count=2)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi >= lo):
            raise PromptlabError("init latent has an invalid range")
        (codes,) = entropy.decode_codes(payload[4:], [n], INIT_BITS)
        arr = _q6_values(codes, lo, hi).reshape(shape)
    else:
        if len(payload) < 9:
            raise PromptlabError("init latent record is too short")
        scale, zp = struct.unpack_from("<ff", payload)
        (codes,) = entropy.decode_codes(payload[8:], [n], 8)
        arr = dequantize(torch.from_numpy(codes.reshape(shape)), QParams(scale, zp, 8)).numpy()
    if not np.isfinite(arr).all():
        raise PromptlabError("init latent holds non-finite values")
    return torch.from_numpy(arr.copy())


def encode_keyframe(rec: KeyframeRecord, header: StreamHeader) -> bytes:
    u, v = rec.u.cpu(), rec.v.cpu()
    if tuple(u.shape) != (header.tokens, header.rank) or tuple(v.shape) != (header.rank, header.context_dim):
        raise PromptlabError(f"keyframe factors {tuple(u.shape)}, {tuple(v.shape)} do not match the header")
    scales = struct.pack("<ffff", rec.u_qp.scale, rec.u_qp.zero_point, rec.v_qp.scale, rec.v_qp.zero_point)
    return scales + entropy.encode_codes([u.numpy(), v.numpy()], header.bits)


def decode_keyframe(payload: bytes, header: StreamHeader) -> KeyframeRecord:
    if len(payload) < 17:
        raise PromptlabError("keyframe record is too short")
    us, uz, vs, vz = struct.unpack_from("<ffff", payload)
    for s, z in ((us, uz), (vs, vz)):
        if not (np.isfinite(s) and np.isfinite(z)):
            raise PromptlabError("keyframe record has non-finite scales")
    u, v = entropy.decode_codes(payload[16:], header.keyframe_sizes(), header.bits)
    return KeyframeRecord(
        u=torch.from_numpy(u.reshape(header.tokens, header.rank).copy()),
        v=torch.from_numpy(v.reshape(header.rank, header.context_dim).copy()),
        u_qp=QParams(us, uz, header.bits), v_qp=QParams(vs, vz, header.bits),
    )


def max_payload(tag: int, header: StreamHeader) -> int:
    """The largest payload a valid record of this kind can have (raw fallback + parameters)."""
    if tag == TAG_INIT:
        return int(np.prod(header.latent_shape)) * 4
    if tag == TAG_INDEX:
        return 8 * header.n_gops
    return 16 + entropy.max_block_size(sum(header.keyframe_sizes()), header.bits)


def index_size(header: StreamHeader) -> int:
    """Bytes of the GOP index chunk that ends a finished stream."""
    return 9 + 8 * header.n_gops


class StreamWriter(_Counted):
    """Appends records in the header's order to a file object, flushing each: the file is always a valid prefix.

    `finish()` appends the GOP index; a stream cut before it still reads record by record.
    """

    def __init__(self, fh: BinaryIO, header: StreamHeader, init_latent: torch.Tensor | None = None) -> None:
        self.fh = fh
        self.header = header
        self.plan = header.plan()
        self.pos = 0  # records written
        self.offsets: list[int] = []  # byte offset of each GOP's init record
        self.init_sizes: list[int] = []
        self.keyframe_bytes: list[int] = []
        self.index_bytes = 0
        self.header_bytes = self._put(header.to_bytes())
        if init_latent is not None:
            self.write_init(init_latent)

    def _put(self, data: bytes) -> int:
        self.fh.write(data)
        self.fh.flush()
        return len(data)

    def _next(self, tag: int) -> None:
        if self.pos >= len(self.plan):
            raise PromptlabError("stream already holds all its records")
        want = self.plan[self.pos][0]
        if want != tag:
            raise PromptlabError(f"the stream's next record is {'an init latent' if want == TAG_INIT else 'a keyframe'}")
        self.pos += 1

    def write_init(self, latent: torch.Tensor) -> int:
        """The next GOP's init latent (coded as the header says)."""
        self._next(TAG_INIT)
        self.offsets.append(self.total_bytes)
        n = self._put(_chunk(TAG_INIT, encode_init(latent, self.header)))
        self.init_sizes.append(n)
        return n

    def write_keyframe(self, rec: KeyframeRecord) -> int:
        self._next(TAG_KEY)
        n = self._put(_chunk(TAG_KEY, encode_keyframe(rec, self.header)))
        self.keyframe_bytes.append(n)
        return n

    def write_gop(self, data: bytes, init_size: int, keyframe_bytes: list[int]) -> None:
        """A whole GOP already coded elsewhere (`gop_bytes`, e.g. by a worker): the same bytes as writing it here."""
        g = self.plan[self.pos][1] if self.pos < len(self.plan) else -1
        n_keys = sum(1 for tag, gg, _ in self.plan if gg == g and tag == TAG_KEY)
        if self.pos >= len(self.plan) or self.plan[self.pos][0] != TAG_INIT or len(keyframe_bytes) != n_keys \
                or init_size + sum(keyframe_bytes) != len(data):
            raise PromptlabError("a coded GOP does not fit the stream's next records")
        self.offsets.append(self.total_bytes)
        self._put(data)
        self.pos += 1 + n_keys
        self.init_sizes.append(init_size)
        self.keyframe_bytes += keyframe_bytes

    def finish(self) -> int:
        """Append the GOP index (byte offset of every GOP's init record); the stream must be whole."""
        if self.pos != len(self.plan):
            raise PromptlabError(f"the stream is not finished ({self.pos} of {len(self.plan)} records)")
        self.index_bytes = self._put(_chunk(TAG_INDEX, struct.pack(f"<{len(self.offsets)}Q", *self.offsets)))
        return self.index_bytes


def gop_bytes(header: StreamHeader, init_latent: torch.Tensor, records: list[KeyframeRecord]) -> bytes:
    """One GOP's records (init, then keyframes) exactly as a writer appends them."""
    return _chunk(TAG_INIT, encode_init(init_latent, header)) + b"".join(
        _chunk(TAG_KEY, encode_keyframe(r, header)) for r in records)


def stream_bytes(header: StreamHeader, inits: torch.Tensor | list[torch.Tensor],
                 records: list[KeyframeRecord]) -> bytes:
    """A whole stream: `inits` one latent per GOP (a tensor: the one GOP's), `records` all keyframes in order."""
    inits = [inits] if isinstance(inits, torch.Tensor) else list(inits)
    buf = io.BytesIO()
    w = StreamWriter(buf, header)
    it_init, it_key = iter(inits), iter(records)
    for tag, _, _ in w.plan:
        nxt = next(it_key if tag == TAG_KEY else it_init, None)
        if nxt is None:
            break
        if tag == TAG_KEY:
            w.write_keyframe(nxt)  # type: ignore[arg-type]
        else:
            w.write_init(nxt)  # type: ignore[arg-type]
    if w.pos == len(w.plan):
        w.finish()
    return buf.getvalue()


def write_stream(path: str | Path, header: StreamHeader, inits: torch.Tensor | list[torch.Tensor],
                 records: list[KeyframeRecord]) -> int:
    from promptlab.io.atomic import write_bytes_atomic

    data = stream_bytes(header, inits, records)
    write_bytes_atomic(path, data)
    return len(data)


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    return data if data is not None else b""


def _read_header(fh: BinaryIO) -> tuple[StreamHeader, int, int]:
    """(header, its bytes, format version) from the start of `fh`."""
    head = _read_exact(fh, 7)
    if len(head) < 7 or head[:4] != MAGIC:
        raise StreamError("not a .plab stream (bad magic bytes)", record=None)
    if head[4] not in READABLE:
        raise StreamError(f".plab version {head[4]} is not supported (this promptlab reads versions "
                          f"{', '.join(map(str, READABLE))})")
    (blen,) = struct.unpack_from("<H", head, 5)
    body = _read_exact(fh, blen)
    crc = _read_exact(fh, 4)
    if len(body) < blen or len(crc) < 4:
        raise StreamError("stream header is truncated")
    if struct.unpack("<I", crc)[0] != zlib.crc32(head + body):
        raise StreamError("stream header is damaged (CRC mismatch)")
    return StreamHeader.from_body(body, head[4]), 7 + blen + 4, head[4]


def _record_name(header: StreamHeader, number: int, tag: int, gop: int, key: int) -> str:
    if tag == TAG_INDEX:
        return f"record {number} (GOP index)"
    if header.n_gops == 1:
        return f"record {number} ({'init latent' if tag == TAG_INIT else f'keyframe {key}'})"
    return f"record {number} ({f'GOP {gop} init latent' if tag == TAG_INIT else f'keyframe {key}, GOP {gop}'})"


def _records(fh: BinaryIO, header: StreamHeader, version: int, start: int, stop: int,
             offset: int, index: bool = True) -> Iterator[tuple[str, object, int]]:
    """Records plan[start:stop] read from fh's position (`offset` bytes into the file); then, at the
    stream's end in version 2 and with `index`, the index if present (checked against the offsets seen)."""
    plan = header.plan()
    offsets: dict[int, int] = {}
    for number in range(start, len(plan) + 1):
        if number == stop and (stop < len(plan) or not index):
            return
        tag_len = _read_exact(fh, 5)
        if number == len(plan):  # past the last record: the index (version 2), then nothing
            if not tag_len or version < 2:
                if tag_len:
                    raise StreamError(f"record {number}: the stream holds more keyframes than its header allows",
                                      record=number)
                return
            name = _record_name(header, number, TAG_INDEX, -1, -1)
            want, gop, key = TAG_INDEX, -1, -1
        else:
            want, gop, key = plan[number]
            name = _record_name(header, number, want, gop, key)
            if not tag_len:
                if number == 0:
                    raise StreamError("record 0 (init latent) is missing: the stream is truncated", record=0)
                if number == start:
                    raise StreamError(f"{name} is missing: the stream is truncated", record=number)
                return
        if len(tag_len) < 5:
            raise StreamError(f"{name} is truncated", record=number)
        tag, plen = struct.unpack("<BI", tag_len)
        if tag != want:
            if want == TAG_INDEX and tag in (TAG_INIT, TAG_KEY):
                raise StreamError(f"record {number}: the stream holds more keyframes than its header allows",
                                  record=number)
            raise StreamError(f"{name} is damaged (unexpected record type {tag:#04x})", record=number)
        if plen > max_payload(tag, header):
            raise StreamError(f"{name} is damaged (impossible length {plen})", record=number)
        payload = _read_exact(fh, plen)
        crc = _read_exact(fh, 4)
        if len(payload) < plen or len(crc) < 4:
            raise StreamError(f"{name} is truncated", record=number)
        if struct.unpack("<I", crc)[0] != zlib.crc32(tag_len + payload):
            raise StreamError(f"{name} is damaged (CRC mismatch)", record=number)
        if tag == TAG_INIT:
            offsets[gop] = offset
        offset += 9 + plen
        if tag == TAG_INDEX:
            if start == 0 and list(struct.unpack(f"<{plen // 8}Q", payload)) != \
                    [offsets.get(g) for g in range(header.n_gops)]:
                raise StreamError(f"{name} is damaged (offsets do not match the records)", record=number)
            if _read_exact(fh, 1):
                raise StreamError(f"record {number + 1}: data after the GOP index", record=number + 1)
            yield "index", None, 9 + plen
            return
        try:
            value: object = decode_init(payload, header) if tag == TAG_INIT else decode_keyframe(payload, header)
        except StreamError:
            raise
        except PromptlabError as exc:
            raise StreamError(f"{name} is invalid: {exc}", record=number) from None
        yield ("init" if tag == TAG_INIT else "keyframe"), value, 9 + plen


def iter_stream(fh: BinaryIO) -> Iterator[tuple[str, object, int]]:
    """Yield ("header", StreamHeader, n), then per GOP ("init", tensor, n), ("keyframe", KeyframeRecord, n)...,
    and ("index", None, n) when the stream is finished.

    Raises StreamError at the first bad chunk, after yielding every good one before it.
    """
    header, n, version = _read_header(fh)
    yield "header", header, n
    yield from _records(fh, header, version, 0, len(header.plan()), n)


def read_stream(source: str | Path | bytes | BinaryIO, allow_partial: bool = False) -> Stream:
    """Read a whole stream. With allow_partial, a bad tail is kept in .error instead of raised."""
    if isinstance(source, bytes):
        return _read(io.BytesIO(source), allow_partial, "stream")
    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.is_file():
            raise PromptlabError(f"no such stream file: {p}")
        with open(p, "rb") as fh:
            return _read(fh, allow_partial, str(p))
    return _read(source, allow_partial, "stream")


def _collect(stream: Stream, items: Iterator[tuple[str, object, int]]) -> None:
    for kind, value, n in items:
        if kind == "init":
            stream.inits.append(value)  # type: ignore[arg-type]
            stream.init_sizes.append(n)
        elif kind == "keyframe":
            stream.keyframes.append(value)  # type: ignore[arg-type]
            stream.keyframe_bytes.append(n)
        elif kind == "index":
            stream.index_bytes = n


def _read(fh: BinaryIO, allow_partial: bool, name: str) -> Stream:
    stream: Stream | None = None
    try:
        header, n, version = _read_header(fh)
        stream = Stream(header=header, header_bytes=n)
        _collect(stream, _records(fh, header, version, 0, len(header.plan()), n))
    except StreamError as exc:
        if not allow_partial or stream is None or not stream.inits:
            raise StreamError(f"{name}: {exc}", record=exc.record) from None
        stream.error = exc
    assert stream is not None
    if not allow_partial and len(stream.keyframes) < stream.header.n_keyframes:
        plan = stream.header.plan()
        number = len(stream.inits) + len(stream.keyframes)
        raise StreamError(
            f"{name}: {_record_name(stream.header, number, *plan[number])} is missing: "
            f"the stream is truncated ({len(stream.keyframes)} of {stream.header.n_keyframes} keyframes)",
            record=number,
        )
    return stream


def _gop_offsets(fh: BinaryIO, header: StreamHeader, version: int, header_bytes: int) -> list[int] | None:
    """The index's GOP offsets, or None when the stream has none (version 1, unfinished, damaged)."""
    size = fh.seek(0, io.SEEK_END)
    n = index_size(header)
    if version < 2 or size - n < header_bytes:
        return None
    fh.seek(size - n)
    chunk = _read_exact(fh, n)
    tag, plen = struct.unpack_from("<BI", chunk)
    if tag != TAG_INDEX or plen != n - 9 or struct.unpack_from("<I", chunk, n - 4)[0] != zlib.crc32(chunk[:-4]):
        return None
    offsets = list(struct.unpack_from(f"<{header.n_gops}Q", chunk, 5))
    if offsets[0] != header_bytes or offsets != sorted(set(offsets)) or offsets[-1] >= size - n:
        return None
    return offsets


def _scan_offsets(fh: BinaryIO, header: StreamHeader, header_bytes: int, upto: int) -> list[int]:
    """GOP offsets found by stepping over chunk headers (no index): fails at the first impossible chunk."""
    plan, offsets, pos = header.plan(), [], header_bytes
    for tag, gop, key in plan:
        if tag == TAG_INIT:
            offsets.append(pos)
            if gop == upto:
                return offsets
        fh.seek(pos)
        tag_len = _read_exact(fh, 5)
        if len(tag_len) < 5 or tag_len[0] != tag:
            raise StreamError(f"GOP {upto} cannot be found: the stream has no GOP index and "
                              f"{_record_name(header, plan.index((tag, gop, key)), tag, gop, key)} is damaged or missing")
        pos += 9 + struct.unpack_from("<I", tag_len, 1)[0]
    raise StreamError(f"GOP {upto} cannot be found")


def read_header(path: str | Path) -> StreamHeader:
    """Only the header of a stream file (what it holds, before reading any record)."""
    p = Path(path)
    if not p.is_file():
        raise PromptlabError(f"no such stream file: {p}")
    with open(p, "rb") as fh:
        try:
            return _read_header(fh)[0]
        except StreamError as exc:
            raise StreamError(f"{p}: {exc}", record=exc.record) from None


def read_gops(path: str | Path, first: int, last: int) -> Stream:
    """GOPs first..last of a stream, seeking to the first by the GOP index: nothing before it is read.

    Without an index (version 1, an unfinished stream) the chunk headers before it are stepped over.
    The records read are checked as in `read_stream`; a damage elsewhere does not matter.
    """
    p = Path(path)
    if not p.is_file():
        raise PromptlabError(f"no such stream file: {p}")
    with open(p, "rb") as fh:
        try:
            header, n, version = _read_header(fh)
            if not 0 <= first <= last < header.n_gops:
                raise PromptlabError(f"GOPs {first}..{last} are outside 0..{header.n_gops - 1}")
            offsets = _gop_offsets(fh, header, version, n) or _scan_offsets(fh, header, n, first)
            plan = header.plan()
            start = next(i for i, (tag, g, _) in enumerate(plan) if g == first and tag == TAG_INIT)
            stop = next((i for i, (tag, g, _) in enumerate(plan) if g == last + 1), len(plan))
            fh.seek(offsets[first])
            stream = Stream(header=header, header_bytes=n, first_gop=first)
            # the index is not read again: a damaged one must not cost the last GOP
            _collect(stream, _records(fh, header, version, start, stop, offsets[first], index=False))
        except StreamError as exc:
            raise StreamError(f"{p}: {exc}", record=exc.record) from None
    want = sum(1 for tag, g, _ in plan[start:stop] if tag == TAG_KEY)
    if len(stream.keyframes) < want:
        raise StreamError(f"{p}: GOP {first + len(stream.inits) - 1} is truncated", record=None)
    return stream
