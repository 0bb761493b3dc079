import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptlab.codec import entropy
from promptlab.codec.container import (
    KeyframeRecord,
    StreamHeader,
    StreamWriter,
    index_size,
    iter_stream,
    read_stream,
    stream_bytes,
)
from promptlab.codec.quant import RunningRange, quantize
from promptlab.codec.rate import estimate, kbps, keyframe_record_max, solve_rank, steady_kbps
from promptlab.codec.shapes import shape_for
from promptlab.errors import PromptlabError, StreamError
from promptlab.settings import Settings


def make_stream(rank=4, bits=8, dim=32, n_frames=21, interval=10, init_mode="f32", seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    header = StreamHeader(model="tiny", width=64, height=64, fps=30.0, n_frames=n_frames, rank=rank,
                          bits=bits, interval=interval, seed=88, blend=0.05, context_dim=dim,
                          init_mode=init_mode)
    init = torch.randn(header.latent_shape, generator=g)
    recs = []
    for _ in range(header.n_keyframes):
        u = torch.randn(77, rank, generator=g) * spread
        v = torch.randn(rank, dim, generator=g) * spread
        ru, rv = RunningRange(bits), RunningRange(bits)
        qu, qv = ru.update(u), rv.update(v)
        recs.append(KeyframeRecord(quantize(u, qu), quantize(v, qv), qu, qv))
    return header, init, recs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rank=st.integers(1, 64), bits=st.integers(2, 8), dim=st.sampled_from([8, 32, 128]),
       n_frames=st.integers(1, 30), interval=st.integers(1, 12), mode=st.sampled_from(["f32", "f16", "q8"]),
       seed=st.integers(0, 2**16), spread=st.floats(0.01, 100))
def test_container_roundtrip(rank, bits, dim, n_frames, interval, mode, seed, spread):
    header, init, recs = make_stream(rank, bits, dim, n_frames, interval, mode, seed, spread)
    data = stream_bytes(header, init, recs)
    s = read_stream(data)
    assert s.header == header
    assert s.complete and len(s.keyframes) == header.n_keyframes
    for a, b in zip(s.keyframes, recs):
        assert torch.equal(a.u, b.u) and torch.equal(a.v, b.v)
        assert np.float32(a.u_qp.scale) == np.float32(b.u_qp.scale)
        assert a.v_qp.zero_point == b.v_qp.zero_point
    if mode == "f32":
        assert torch.equal(s.init_latent, init)
    elif mode == "f16":
        assert torch.equal(s.init_latent, init.half().float())
    else:
        step = float(init.max() - init.min()) / 255
        assert float((s.init_latent - init).abs().max()) <= step + 1e-5
    assert s.total_bytes == len(data)
    # the worst-case rate arithmetic is an upper bound on every record
    assert all(n <= keyframe_record_max(rank, bits, dim) for n in s.keyframe_bytes)


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=3), bits=st.integers(2, 8),
       seed=st.integers(0, 2**16), kind=st.sampled_from(["uniform", "gauss", "const"]))
def test_entropy_coder_roundtrip(sizes, bits, seed, kind):
    rng = np.random.default_rng(seed)
    qmax = (1 << bits) - 1
    arrays = []
    for n in sizes:
        if kind == "uniform":
            a = rng.integers(0, qmax + 1, n)
        elif kind == "gauss":
            a = np.clip(np.round(rng.normal(qmax / 2, qmax / 8, n)), 0, qmax)
        else:
            a = np.full(n, rng.integers(0, qmax + 1))
        arrays.append(a.astype(np.uint8))
    block = entropy.encode_codes(arrays, bits)
    assert len(block) <= entropy.max_block_size(sum(sizes), bits)
    out = entropy.decode_codes(block, sizes, bits)
    for a, b in zip(arrays, out):
        assert np.array_equal(a, b)


def test_entropy_coding_beats_raw_on_gaussian_codes():
    rng = np.random.default_rng(0)
    codes = np.clip(np.round(rng.normal(128, 30, 8808)), 0, 255).astype(np.uint8)
    assert len(entropy.encode_codes([codes], 8)) < 0.9 * codes.size


def test_incremental_decoding_as_bytes_arrive():
    header, init, recs = make_stream(n_frames=41)
    buf = io.BytesIO()
    w = StreamWriter(buf, header, init)
    for i, r in enumerate(recs):
        w.write_keyframe(r)
        s = read_stream(buf.getvalue(), allow_partial=True)
        assert len(s.keyframes) == i + 1
        assert torch.equal(s.keyframes[i].v, r.v)
    assert read_stream(buf.getvalue()).complete


def test_every_cut_and_bitflip_gives_prefix_or_named_error():
    header, init, recs = make_stream(rank=2, dim=16, n_frames=31, init_mode="q8")
    data = stream_bytes(header, init, recs)
    good = read_stream(data)
    rng = np.random.default_rng(0)
    positions = sorted(set(range(0, len(data), 7)) | {len(data) - 1})
    cases = [data[:p] for p in positions]
    for p in positions:
        flipped = bytearray(data)
        flipped[p] ^= 1 << int(rng.integers(0, 8))
        cases.append(bytes(flipped))
    errors = 0
    for case in cases:
        try:
            s = read_stream(case, allow_partial=True)
        except StreamError as exc:
            errors += 1
            assert str(exc)
            continue
        # whatever is returned as valid must equal the original prefix
        assert s.header == good.header
        assert torch.equal(s.init_latent, good.init_latent)
        for a, b in zip(s.keyframes, good.keyframes):
            assert torch.equal(a.u, b.u) and torch.equal(a.v, b.v) and a.u_qp == b.u_qp and a.v_qp == b.v_qp
        if len(s.keyframes) < header.n_keyframes:
            assert not s.complete
            # a strict read names the first missing or bad record
            with pytest.raises(StreamError, match=rf"record ({len(s.keyframes) + 1}|0)\b"):
                read_stream(case)
        else:
            # whole: the very bytes, or cut or damaged only in the GOP index that ends the stream
            assert case == data or s.error is None or "GOP index" in str(s.error)
    assert errors > 0


def test_foreign_and_future_files_are_refused():
    with pytest.raises(StreamError, match="not a .plab"):
        read_stream(b"RIFF....")
    header, init, recs = make_stream()
    data = bytearray(stream_bytes(header, init, recs))
    data[4] = 9
    with pytest.raises(StreamError, match="version 9"):
        read_stream(bytes(data))
    whole = stream_bytes(header, init, recs)
    unfinished = whole[:-index_size(header)]  # no GOP index yet: a record more is one keyframe too many
    with pytest.raises(StreamError, match="more keyframes"):
        read_stream(unfinished + _extra_record(header, recs[0]))
    with pytest.raises(StreamError, match="data after the GOP index"):
        read_stream(whole + _extra_record(header, recs[0]))


def _extra_record(header, rec):
    from promptlab.codec.container import TAG_KEY, _chunk, encode_keyframe

    return _chunk(TAG_KEY, encode_keyframe(rec, header))


def test_iter_stream_yields_sizes_that_add_up():
    header, init, recs = make_stream()
    data = stream_bytes(header, init, recs)
    total = sum(n for _, _, n in iter_stream(io.BytesIO(data)))
    assert total == len(data)


def test_rate_arithmetic():
    # the reference figure: rank 8, interval 10, 30 fps -> 264.24*8/10 kbps of codes; we add scales and framing
    codes_only = 1101 * 8 * 8 * 30 / 10 / 1000
    assert abs(codes_only - 211.39) < 0.01
    assert steady_kbps(8, 10, 30) == pytest.approx((1101 * 8 + 16 + 9 + 1) * 8 * 3 / 1000)
    s = Settings(model="sd-turbo", size=512, init_mode="f32")
    est = estimate(s, 141)
    assert est.init_bytes == 9 + 4 * 4 * 64 * 64
    assert est.total_bytes == est.header_bytes + est.init_bytes + sum(est.keyframe_bytes) + 9 + 8  # the GOP index
    q6 = estimate(s.replace(init_mode="q6", gop=70), 141)  # three GOPs, each its init latent, the index 3 offsets
    assert q6.init_bytes == 3 * (9 + 4 + 1 + 4 * 64 * 64 * 6 // 8)
    assert q6.total_bytes == q6.header_bytes + q6.init_bytes + sum(q6.keyframe_bytes) + 9 + 8 * 3
    assert est.kbps == pytest.approx(kbps(est.total_bytes, 141, 30))
    # solved ranks fit the target and are the largest that do
    for target in (150, 300, 600):
        r = solve_rank(target, s, 141)
        assert estimate(s.replace(rank=r), 141).kbps <= target < estimate(s.replace(rank=r + 1), 141).kbps
    assert solve_rank(300, s, 141, include_init=False) > solve_rank(300, s, 141)
    # worst case matches a real raw-coded stream exactly
    header, init, recs = make_stream(rank=8, dim=1024, n_frames=21, spread=1.0)
    s2 = Settings(model="x" * len("tiny"), size=64, rank=8, interval=10)
    est2 = estimate(s2, 21)
    data = stream_bytes(header, init, recs)
    assert len(data) <= est2.total_bytes
    assert read_stream(data).header_bytes == est2.header_bytes


def test_header_records_the_two_stage_upsampler():
    h = StreamHeader(model="tiny", width=128, height=128, fps=30.0, n_frames=5, rank=2, bits=8, interval=5,
                     seed=88, blend=0.05, context_dim=16, latent_h=8, latent_w=8, upsampler="lanczos")
    s = read_stream(stream_bytes(h, torch.zeros(h.latent_shape), []), allow_partial=True)
    assert s.header.upsampler == "lanczos" and s.header.latent_h == 8
    with pytest.raises(StreamError, match="upsampler"):
        StreamHeader(model="tiny", width=64, height=64, fps=30.0, n_frames=5, rank=2, bits=8, interval=5,
                     seed=88, blend=0.05, context_dim=16, upsampler="magic")


def test_header_maps_to_and_from_settings():
    s = Settings(model="tiny", size=64, rank=5, bits=6, interval=7, fps=29.97, seed=3, blend=0.25, interp="slerp",
                 crop="pad", init_mode="q8", stage_scale=2, upsampler="lanczos", iters=9, device="cpu")
    h = StreamHeader.from_settings(s, 12, shape_for("tiny"), latent_side=4)
    assert (h.model, h.n_frames, h.context_dim, h.latent_h, h.upsampler) == ("tiny", 12, 128, 4, "lanczos")
    back = read_stream(stream_bytes(h, torch.zeros(h.latent_shape), []), allow_partial=True).header.to_settings()
    assert back == s.replace(fps=h.fps, iters=Settings().iters, device=Settings().device)
    assert h.to_settings(s) == s.replace(fps=h.fps)  # fields the header does not record come from the base
    # weights from a path are recorded as SD-Turbo; an unrecordable upsampler is refused in one line
    assert StreamHeader.from_settings(s.replace(model="w/sd.safetensors"), 12, shape_for("x")).model == "sd-turbo"
    with pytest.raises(PromptlabError, match="cannot be recorded"):
        StreamHeader.from_settings(s.replace(upsampler="learned"), 12, shape_for("tiny"), latent_side=4)


def test_header_bytes_follow_the_documented_layout():
    """docs/format.md: 57 + L bytes; model-name length at offset 48, the name at 49, the GOP length, CRC32 last."""
    import struct
    import zlib

    h = StreamHeader(model="sd-turbo", width=512, height=512, fps=30.0, n_frames=141, rank=8, bits=8,
                     interval=10, seed=88, blend=0.05, gop=70)
    hb = h.to_bytes()
    assert len(hb) == 57 + 8 and hb[:5] == b"PLAB\x02"
    assert struct.unpack_from("<H", hb, 5)[0] == 46 + 8
    assert struct.unpack_from("<HH", hb, 7) == (512, 512) and struct.unpack_from("<H", hb, 23)[0] == 8
    assert struct.unpack_from("<H", hb, 40)[0] == 1024 and hb[42] == 4
    assert struct.unpack_from("<HH", hb, 43) == (64, 64) and hb[47] == 0
    assert hb[48] == 8 and hb[49:57] == b"sd-turbo"
    assert struct.unpack_from("<I", hb, 57)[0] == 70
    assert struct.unpack_from("<I", hb, 61)[0] == zlib.crc32(hb[:61])
