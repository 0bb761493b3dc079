"""The .plab stream: a versioned header, the init latent, one record per keyframe.

Every chunk carries its length and a CRC32, so a receiver decodes records as they arrive and a
damaged or truncated file is reported at the first bad record while everything before it still
decodes. All sizes are bounded by the header before anything is allocated. The byte layout is
specified in docs/format.md.
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
from promptlab.codec.schedule import keyframes
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
VERSION = 1
UPSAMPLERS = ("bicubic", "lanczos")  # two-stage upsampler the prompts were fitted through
TAG_INIT, TAG_KEY = 0x49, 0x4B  # 'I', 'K'
_HDR = struct.Struct("<HHIIIHBHIfBBBBHBHHBB")
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

    def __post_init__(self) -> None:
        lh = self.latent_h or self.height // 8
        lw = self.latent_w or self.width // 8
        object.__setattr__(self, "latent_h", lh)
        object.__setattr__(self, "latent_w", lw)
        # store exactly what the bytes can hold, so a header equals its own round trip
        object.__setattr__(self, "blend", float(np.float32(self.blend)))
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
            latent_h=side, latent_w=side, upsampler=_recordable_upsampler(settings),
        )

    def settings_fields(self) -> dict[str, Any]:
        """The Settings fields this header records (the inverse of from_settings)."""
        fields: dict[str, Any] = {
            "model": self.model, "size": self.width, "rank": self.rank, "bits": self.bits,
            "interval": self.interval, "fps": self.fps, "seed": self.seed, "blend": self.blend,
            "interp": self.interp, "crop": self.crop, "init_mode": self.init_mode, "upsampler": self.upsampler,
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
        return len(keyframes(self.n_frames, self.interval))

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
        head = MAGIC + bytes([VERSION]) + struct.pack("<H", len(body)) + body
        return head + struct.pack("<I", zlib.crc32(head))

    @classmethod
    def from_body(cls, body: bytes) -> StreamHeader:
        if len(body) < _HDR.size:
            raise StreamError("stream header is too short")
        v = _HDR.unpack_from(body)
        name = body[_HDR.size:]
        if len(name) != v[19]:
            raise StreamError("stream header: model name length mismatch")
        try:
            if v[3] == 0:
                raise ValueError("zero fps denominator")
            return cls(
                model=name.decode(), width=v[0], height=v[1], fps=v[2] / v[3], n_frames=v[4],
                rank=v[5], bits=v[6], interval=v[7], seed=v[8], blend=float(np.float32(v[9])),
                crop=CROP_MODES[v[10]], interp=INTERP_MODES[v[11]], init_mode=INIT_MODES[v[12]],
                tokens=v[13], context_dim=v[14], latent_channels=v[15], latent_h=v[16], latent_w=v[17],
                upsampler=UPSAMPLERS[v[18]],
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


@dataclass
class Stream:
    header: StreamHeader
    init_latent: torch.Tensor | None
    keyframes: list[KeyframeRecord] = field(default_factory=list)
    header_bytes: int = 0
    init_bytes: int = 0
    keyframe_bytes: list[int] = field(default_factory=list)
    error: StreamError | None = None  # set when a partial read stopped at a bad record

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + self.init_bytes + sum(self.keyframe_bytes)

    @property
    def complete(self) -> bool:
        return self.error is None and len(self.keyframes) == self.header.n_keyframes


def _chunk(tag: int, payload: bytes) -> bytes:
    head = struct.pack("<BI", tag, len(payload))
    return head + payload + struct.pack("<I", zlib.crc32(head + payload))


def encode_init(latent: torch.Tensor, header: StreamHeader) -> bytes:
    x = latent.detach().to(torch.float32).cpu().contiguous()
    if tuple(x.shape) != header.latent_shape:
        raise PromptlabError(f"init latent has shape {tuple(x.shape)}, header says {header.latent_shape}")
    if header.init_mode == "f32":
        return x.numpy().astype("<f4").tobytes()
    if header.init_mode == "f16":
        return x.numpy().astype("<f2").tobytes()
    qp = qparams(float(x.min()), float(x.max()), 8)
    codes = quantize(x, qp).numpy()
    return struct.pack("<ff", qp.scale, qp.zero_point) + entropy.encode_codes([codes], 8)


def decode_init(payload: bytes, header: StreamHeader) -> torch.Tensor:
    shape = header.latent_shape
    n = int(np.prod(shape))
    mode = header.init_mode
    if mode in ("f32", "f16"):
        dt = "<f4" if mode == "f32" else "<f2"
        if len(payload) != n * np.dtype(dt).itemsize:
            raise PromptlabError(f"init latent holds {len(payload)} bytes, expected {n * np.dtype(dt).itemsize}")
        arr = np.frombuffer(payload, dtype=dt).astype(np.float32).reshape(shape)
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
    return 16 + entropy.max_block_size(sum(header.keyframe_sizes()), header.bits)


class StreamWriter:
    """Appends records to a file object, flushing each, so the file is always a valid prefix."""

    def __init__(self, fh: BinaryIO, header: StreamHeader, init_latent: torch.Tensor) -> None:
        self.fh = fh
        self.header = header
        self.header_bytes = self._put(header.to_bytes())
        self.init_bytes = self._put(_chunk(TAG_INIT, encode_init(init_latent, header)))
        self.keyframe_bytes: list[int] = []

    def _put(self, data: bytes) -> int:
        self.fh.write(data)
        self.fh.flush()
        return len(data)

    def write_keyframe(self, rec: KeyframeRecord) -> int:
        if len(self.keyframe_bytes) >= self.header.n_keyframes:
            raise PromptlabError("stream already holds all its keyframes")
        n = self._put(_chunk(TAG_KEY, encode_keyframe(rec, self.header)))
        self.keyframe_bytes.append(n)
        return n


def stream_bytes(header: StreamHeader, init_latent: torch.Tensor, records: list[KeyframeRecord]) -> bytes:
    buf = io.BytesIO()
    w = StreamWriter(buf, header, init_latent)
    for r in records:
        w.write_keyframe(r)
    return buf.getvalue()


def write_stream(path: str | Path, header: StreamHeader, init_latent: torch.Tensor,
                 records: list[KeyframeRecord]) -> int:
    from promptlab.io.atomic import write_bytes_atomic

    data = stream_bytes(header, init_latent, records)
    write_bytes_atomic(path, data)
    return len(data)


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    return data if data is not None else b""


def iter_stream(fh: BinaryIO) -> Iterator[tuple[str, object, int]]:
    """Yield ("header", StreamHeader, n), ("init", tensor, n), ("keyframe", KeyframeRecord, n)...

    Raises StreamError at the first bad chunk, after yielding every good one before it.
    """
    head = _read_exact(fh, 7)
    if len(head) < 7 or head[:4] != MAGIC:
        raise StreamError("not a .plab stream (bad magic bytes)", record=None)
    if head[4] != VERSION:
        raise StreamError(f".plab version {head[4]} is not supported (this promptlab reads version {VERSION})")
    (blen,) = struct.unpack_from("<H", head, 5)
    body = _read_exact(fh, blen)
    crc = _read_exact(fh, 4)
    if len(body) < blen or len(crc) < 4:
        raise StreamError("stream header is truncated")
    if struct.unpack("<I", crc)[0] != zlib.crc32(head + body):
        raise StreamError("stream header is damaged (CRC mismatch)")
    header = StreamHeader.from_body(body)
    yield "header", header, 7 + blen + 4
    n_key = header.n_keyframes
    index = 0  # record 0 is the init latent, record k+1 is keyframe k
    while True:
        tag_len = _read_exact(fh, 5)
        if not tag_len:
            if index == 0:
                raise StreamError("record 0 (init latent) is missing: the stream is truncated", record=0)
            return
        what = "init latent" if index == 0 else f"keyframe {index - 1}"
        name = f"record {index} ({what})"
        if len(tag_len) < 5:
            raise StreamError(f"{name} is truncated", record=index)
        tag, plen = struct.unpack("<BI", tag_len)
        expected = TAG_INIT if index == 0 else TAG_KEY
        if tag != expected:
            raise StreamError(f"{name} is damaged (unexpected record type {tag:#04x})", record=index)
        if index > n_key:
            raise StreamError(f"{name}: the stream holds more keyframes than its header allows", record=index)
        if plen > max_payload(tag, header):
            raise StreamError(f"{name} is damaged (impossible length {plen})", record=index)
        payload = _read_exact(fh, plen)
        crc = _read_exact(fh, 4)
        if len(payload) < plen or len(crc) < 4:
            raise StreamError(f"{name} is truncated", record=index)
        if struct.unpack("<I", crc)[0] != zlib.crc32(tag_len + payload):
            raise StreamError(f"{name} is damaged (CRC mismatch)", record=index)
        try:
            value: object = decode_init(payload, header) if index == 0 else decode_keyframe(payload, header)
        except StreamError:
            raise
        except PromptlabError as exc:
            raise StreamError(f"{name} is invalid: {exc}", record=index) from None
        yield ("init" if index == 0 else "keyframe"), value, 5 + plen + 4
        index += 1


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


def _read(fh: BinaryIO, allow_partial: bool, name: str) -> Stream:
    stream: Stream | None = None
    try:
        for kind, value, n in iter_stream(fh):
            if kind == "header":
                stream = Stream(header=value, init_latent=None, header_bytes=n)  # type: ignore[arg-type]
            elif kind == "init":
                stream.init_latent, stream.init_bytes = value, n  # type: ignore[union-attr,assignment]
            else:
                stream.keyframes.append(value)  # type: ignore[union-attr,arg-type]
                stream.keyframe_bytes.append(n)  # type: ignore[union-attr]
    except StreamError as exc:
        if not allow_partial or stream is None or stream.init_latent is None:
            raise StreamError(f"{name}: {exc}", record=exc.record) from None
        stream.error = exc
    assert stream is not None
    if not allow_partial and len(stream.keyframes) < stream.header.n_keyframes:
        raise StreamError(
            f"{name}: record {len(stream.keyframes) + 1} (keyframe {len(stream.keyframes)}) is missing: "
            f"the stream is truncated ({len(stream.keyframes)} of {stream.header.n_keyframes} keyframes)",
            record=len(stream.keyframes) + 1,
        )
    return stream
