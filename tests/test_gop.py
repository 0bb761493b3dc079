"""Closed GOPs (format version 2): q6 init coding, every byte counted, seeking by the GOP index,
truncated and damaged streams, version-1 streams, the CLI's --gop and decode --frames, resume.

Container tests use synthetic streams (random factors and init latents: the reader and the
generator do not care whether a prompt was fitted); the end-to-end ones encode a few frames of
the sky clip with the tiny model at 64 px.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from promptlab.cli.info import describe
from promptlab.cli.main import main
from promptlab.codec import rate
from promptlab.codec.container import (
    INIT_BITS,
    KeyframeRecord,
    Stream,
    StreamHeader,
    decode_init,
    encode_init,
    index_size,
    read_gops,
    read_header,
    read_stream,
    stream_bytes,
)
from promptlab.codec.quant import QParams, qparams, quantize
from promptlab.codec.shapes import shape_for
from promptlab.engine import records
from promptlab.engine.decoder import decode
from promptlab.engine.encoder import encode, partial_paths
from promptlab.errors import Cancelled, PromptlabError, StreamError
from promptlab.settings import Settings

V1 = Path(__file__).resolve().parent / "data" / "plab-v1"
N, GOP, INTERVAL = 41, 20, 10  # GOPs of frames 0-19, 20-39 and 40


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def synthetic(n_frames: int = N, gop: int = GOP, interval: int = INTERVAL, init_mode: str = "q6",
              seed: int = 0) -> tuple[StreamHeader, list[torch.Tensor], list[KeyframeRecord]]:
    """A tiny-model stream of random keyframes and init latents (one per GOP)."""
    g = torch.Generator().manual_seed(seed)
    header = StreamHeader(model="tiny", width=64, height=64, fps=30.0, n_frames=n_frames, rank=2, bits=8,
                          interval=interval, seed=88, blend=0.05, context_dim=shape_for("tiny").context_dim,
                          init_mode=init_mode, gop=gop)
    inits = [torch.randn(header.latent_shape, generator=g) for _ in range(header.n_gops)]
    recs = []
    for _ in range(header.n_keyframes):
        u, v = torch.rand(77, 2, generator=g) - 0.3, torch.rand(2, header.context_dim, generator=g) - 0.3
        qu, qv = qparams(float(u.min()), float(u.max())), qparams(float(v.min()), float(v.max()))
        recs.append(KeyframeRecord(quantize(u, qu), quantize(v, qv), qu, qv))
    return header, inits, recs


@pytest.fixture
def gop_file(tmp_path: Path) -> Path:
    header, inits, recs = synthetic()
    path = tmp_path / "gop.plab"
    path.write_bytes(stream_bytes(header, inits, recs))
    return path


def gop_offset(path: Path, g: int) -> int:
    """Byte offset of GOP g's init record, from the index at the end of the file."""
    data = path.read_bytes()
    h = read_header(path)
    return int(np.frombuffer(data[-index_size(h) + 5:-4], "<u8")[g])


def frames_of(job) -> dict[int, np.ndarray]:
    return {r.index: r.image for r in job if isinstance(r, records.Frame)}


def same_records(a: list[KeyframeRecord], b: list[KeyframeRecord]) -> bool:
    return len(a) == len(b) and all(torch.equal(x.u, y.u) and torch.equal(x.v, y.v) and x.u_qp == y.u_qp
                                    and x.v_qp == y.v_qp for x, y in zip(a, b))


# ----------------------------------------------------------------------------- q6 and the byte count

def test_q6_init_round_trip_is_bounded_and_stable() -> None:
    header, _, _ = synthetic(init_mode="q6")
    x = torch.randn(header.latent_shape, generator=torch.Generator().manual_seed(3)) * 2.5 + 0.7
    payload = encode_init(x, header)
    y = decode_init(payload, header)
    step = float(x.max() - x.min()) / ((1 << INIT_BITS) - 1)
    # half a step, plus what rounding the range to float16 moves the ends by
    assert float((y - x).abs().max()) <= step / 2 + 2e-3 * float(x.abs().max())
    assert encode_init(y, header) == payload  # re-coding what a receiver sees gives the same bytes
    f32 = encode_init(x, dataclasses.replace(header, init_mode="f32"))
    assert len(payload) < len(f32) / 4
    const = torch.full(header.latent_shape, 0.25)
    assert torch.equal(decode_init(encode_init(const, header), header), const)  # a flat latent is exact
    with pytest.raises(PromptlabError, match="float16"):
        encode_init(torch.full(header.latent_shape, 1e6), header)


def test_zero_init_sends_nothing_and_starts_from_zeros() -> None:
    header, inits, recs = synthetic(init_mode="zero")
    assert encode_init(inits[0], header) == b""
    assert torch.equal(decode_init(b"", header), torch.zeros(header.latent_shape))
    with pytest.raises(PromptlabError, match="expected none"):
        decode_init(b"\x00", header)
    s = read_stream(stream_bytes(header, inits, recs))
    assert s.init_sizes == [9, 9, 9] and all(torch.equal(z, torch.zeros(header.latent_shape)) for z in s.inits)


@pytest.mark.parametrize("init_mode", ["q6", "f32", "q8", "zero"])
def test_every_byte_is_counted(tmp_path: Path, init_mode: str) -> None:
    header, inits, recs = synthetic(init_mode=init_mode)
    path = tmp_path / "s.plab"
    path.write_bytes(stream_bytes(header, inits, recs))
    s = read_stream(path)
    assert s.complete and s.total_bytes == path.stat().st_size
    assert len(s.init_sizes) == 3 and s.index_bytes == index_size(header)
    info = describe(str(path))
    assert info["total_bytes"] == path.stat().st_size and info["gops"] == 3 and info["gop_frames"] == [0, 20, 40]
    assert info["kbps"] == pytest.approx(rate.kbps(path.stat().st_size, N, 30.0), abs=1e-3)
    est = rate.estimate(header.to_settings(), N, shape_for("tiny"))
    assert est.header_bytes == s.header_bytes
    assert est.init_bytes >= s.init_bytes and est.total_bytes >= s.total_bytes  # the worst case bounds the stream
    assert all(n <= k for n, k in zip(s.keyframe_bytes, est.keyframe_bytes))


def test_gop_must_be_a_multiple_of_the_interval(sky_mp4: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.plab"
    rc = main(["encode", str(sky_mp4), "-o", str(out), "--interval", "10", "--gop", "15"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("promptlab encode: error:") and "gop" in err[0]
    assert not out.exists() and not partial_paths(out)[0].exists()
    with pytest.raises(StreamError, match="multiple of the interval"):
        synthetic(gop=15)


# ----------------------------------------------------------------------------- seeking

def test_seek_reads_nothing_before_its_gop(gop_file: Path, tiny) -> None:
    whole = read_stream(gop_file)
    full = frames_of(decode(gop_file, model=tiny))
    assert sorted(full) == list(range(N))
    part = frames_of(decode(gop_file, model=tiny, frames=(20, 40)))
    assert sorted(part) == list(range(20, 40))
    assert all(np.array_equal(part[i], full[i]) for i in part)
    # every byte of GOP 0 overwritten: GOPs 1 and 2 still read and decode the same
    data = bytearray(gop_file.read_bytes())
    a, b = gop_offset(gop_file, 0), gop_offset(gop_file, 1)
    data[a:b] = b"\xff" * (b - a)
    gop_file.write_bytes(bytes(data))
    with pytest.raises(StreamError):
        read_stream(gop_file)
    s = read_gops(gop_file, 1, 2)
    assert s.first_gop == 1 and len(s.inits) == 2
    assert same_records(s.keyframes, whole.keyframes[3:])
    assert all(torch.equal(x, y) for x, y in zip(s.inits, whole.inits[1:]))
    again = frames_of(decode(gop_file, model=tiny, frames=(25, None)))
    assert sorted(again) == list(range(25, N)) and all(np.array_equal(again[i], full[i]) for i in again)
    with pytest.raises(PromptlabError, match="outside"):
        list(decode(gop_file, model=tiny, frames=(41, 50)))


def test_truncated_last_gop(gop_file: Path) -> None:
    whole = read_stream(gop_file)
    cut = gop_offset(gop_file, 2) + 20  # inside GOP 2's init record; the index is gone with it
    gop_file.write_bytes(gop_file.read_bytes()[:cut])
    with pytest.raises(StreamError, match=r"record 8 \(GOP 2 init latent\) is truncated"):
        read_stream(gop_file)
    partial = read_stream(gop_file, allow_partial=True)
    assert len(partial.inits) == 2 and same_records(partial.keyframes, whole.keyframes[:6])
    s = read_gops(gop_file, 1, 1)  # no index: found by stepping over the chunk headers
    assert same_records(s.keyframes, whole.keyframes[3:6])
    with pytest.raises(StreamError, match=r"record 8 \(GOP 2 init latent\) is truncated"):
        read_gops(gop_file, 2, 2)


def test_a_corrupt_gop_leaves_the_others_decodable(gop_file: Path, tiny) -> None:
    full = frames_of(decode(gop_file, model=tiny))
    whole = read_stream(gop_file)
    data = bytearray(gop_file.read_bytes())
    data[gop_offset(gop_file, 1) + sum(whole.init_sizes[1:2]) + 30] ^= 0x55  # GOP 1's first keyframe
    gop_file.write_bytes(bytes(data))
    with pytest.raises(StreamError, match=r"record 5 \(keyframe 3, GOP 1\) is damaged \(CRC mismatch\)"):
        read_gops(gop_file, 1, 1)
    assert same_records(read_gops(gop_file, 0, 0).keyframes, whole.keyframes[:3])
    assert same_records(read_gops(gop_file, 2, 2).keyframes, whole.keyframes[6:])
    for span in ((0, 20), (40, 41)):
        got = frames_of(decode(gop_file, model=tiny, frames=span))
        assert sorted(got) == list(range(*span)) and all(np.array_equal(got[i], full[i]) for i in got)
    with pytest.raises(StreamError, match="record 5"):
        list(decode(gop_file, model=tiny, frames=(0, 25)))


@pytest.mark.parametrize("damage", ["missing", "crc", "offsets"])
def test_without_a_good_index_the_reader_scans(gop_file: Path, damage: str) -> None:
    whole = read_stream(gop_file)
    data = bytearray(gop_file.read_bytes())
    n = index_size(whole.header)
    if damage == "missing":
        del data[-n:]
    elif damage == "crc":
        data[-n + 5] ^= 1
    else:  # a readable index whose offsets are impossible (not increasing)
        import struct
        import zlib

        body = struct.pack("<BI3Q", 0x58, 24, *reversed([gop_offset(gop_file, g) for g in range(3)]))
        data[-n:] = body + struct.pack("<I", zlib.crc32(body))
    gop_file.write_bytes(bytes(data))
    for g in range(3):
        s = read_gops(gop_file, g, g)
        want = {0: whole.keyframes[:3], 1: whole.keyframes[3:6], 2: whole.keyframes[6:]}[g]
        assert same_records(s.keyframes, want) and torch.equal(s.inits[0], whole.inits[g])


# ----------------------------------------------------------------------------- version 1

@pytest.mark.parametrize("name", ["tiny-64px-f32", "tiny-64px-q8"])
def test_version_1_streams_still_read_and_decode(name: str, tiny) -> None:
    path = V1 / f"{name}.plab"
    want = np.load(V1 / f"{name}.npz")
    assert path.read_bytes()[4] == 1  # the format version byte
    s = read_stream(path)
    h = s.header
    assert (h.gop, h.n_gops, h.n_frames, h.rank, h.interval, h.init_mode) == (0, 1, 5, 2, 2, name.rsplit("-", 1)[1])
    assert s.complete and s.index_bytes == 0 and s.total_bytes == path.stat().st_size
    assert torch.equal(s.init_latent, torch.from_numpy(want["init"]))
    expect = [KeyframeRecord(torch.from_numpy(want[f"u{k}"]), torch.from_numpy(want[f"v{k}"]),
                             QParams(*map(float, want[f"qp{k}"][:2]), 8), QParams(*map(float, want[f"qp{k}"][2:]), 8))
              for k in range(3)]
    assert same_records(s.keyframes, expect)
    assert same_records(read_gops(path, 0, 0).keyframes, expect)  # no index in version 1: scanned
    got = frames_of(decode(path, model=tiny))
    ref = frames_of(decode(Stream(header=h, inits=[torch.from_numpy(want["init"])], keyframes=expect,
                                  keyframe_bytes=s.keyframe_bytes, init_sizes=s.init_sizes), model=tiny))
    assert sorted(got) == list(range(5)) and all(np.array_equal(got[i], ref[i]) for i in got)
    assert describe(str(path))["total_bytes"] == path.stat().st_size


# ----------------------------------------------------------------------------- end to end

SKY_ARGS = ["--size", "64", "--rank", "2", "--interval", str(INTERVAL), "--iters", "2", "--first-iters", "3",
            "--perceptual", "none", "--threads", "1", "--frames", f"0:{N}"]


def pngs(folder: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*.png"))]


@pytest.mark.slow
def test_cli_gop_encode_and_range_decode(sky_mp4: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sky.plab"
    assert main(["encode", str(sky_mp4), "-o", str(out), *SKY_ARGS, "--gop", str(GOP), "--quiet"]) == 0
    assert read_header(out).gop == GOP and describe(str(out))["total_bytes"] == out.stat().st_size
    assert main(["decode", str(out), "-o", str(tmp_path / "full"), "--quiet"]) == 0
    assert main(["decode", str(out), "-o", str(tmp_path / "part"), "--frames", "20:40", "--quiet"]) == 0
    full, part = pngs(tmp_path / "full"), pngs(tmp_path / "part")
    assert len(full) == N and len(part) == 20
    assert all(np.array_equal(a, b) for a, b in zip(full[20:40], part, strict=True))
    capsys.readouterr()
    assert main(["decode", str(out), "-o", str(tmp_path / "none"), "--frames", "50:60"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"promptlab decode: error: frames 50:60 are outside", err[0])


@pytest.mark.slow
def test_interrupted_gop_encode_resumes_byte_identical(sky_mp4: Path, tmp_path: Path, tiny) -> None:
    s = Settings(size=64, rank=2, interval=INTERVAL, gop=GOP, iters=2, first_iters=3, perceptual="none", threads=1)
    ref = tmp_path / "ref.plab"
    list(encode(sky_mp4, s, ref, frames=f"0:{N}", model=tiny))
    out = tmp_path / "cut.plab"
    stop = threading.Event()

    def until_keyframe_3(job):
        for r in job:
            if isinstance(r, records.KeyframeDone) and r.keyframe == 3:  # the first keyframe of GOP 1 is done
                stop.set()

    with pytest.raises(Cancelled):
        until_keyframe_3(encode(sky_mp4, s, out, frames=f"0:{N}", cancel=stop, model=tiny))
    assert not out.exists() and partial_paths(out)[0].exists()
    again = list(encode(sky_mp4, s, out, frames=f"0:{N}", model=tiny))
    assert again[0].resumed_keyframes == 4
    assert out.read_bytes() == ref.read_bytes()
    assert not partial_paths(out)[0].exists()


def test_run_service_decodes_a_bare_streams_range_from_its_gop(gop_file: Path, tiny) -> None:
    """A .plab run alone with frames A:B (the GUI's seek) reads from the GOP holding A; indices start at 0."""
    from promptlab.runs.lab import RunSpec, run_lab
    from promptlab.runs.records import FrameResult

    full = frames_of(decode(gop_file, model=tiny))
    recs = list(run_lab(RunSpec(Settings(threads=1), stream=str(gop_file), frames=(25, 35))))
    started = next(r for r in recs if isinstance(r, records.Started))
    gop1 = len(read_gops(gop_file, 1, 1).keyframes)
    assert started.n_keyframes == gop1 < read_header(gop_file).n_keyframes  # GOP 1 alone was read
    rows = [r for r in recs if isinstance(r, FrameResult)]
    assert [r.index for r in rows] == list(range(10))
    assert all(np.array_equal(r.image, full[25 + r.index]) for r in rows)


def test_the_window_seeks_in_a_stream_opened_alone(gop_file: Path, tiny, qtbot, lab_dirs) -> None:
    """Open a GOP stream with frames 25:35 and Run: the frames shown are those of a full decode,
    although GOP 0 is unreadable (the window read from GOP 1 on)."""
    from promptlab.gui.session import Session
    from promptlab.gui.window import MainWindow

    full = frames_of(decode(gop_file, model=tiny))
    data = bytearray(gop_file.read_bytes())
    a, b = gop_offset(gop_file, 0), gop_offset(gop_file, 1)
    data[a:b] = b"\xff" * (b - a)
    gop_file.write_bytes(bytes(data))
    w = MainWindow(Session(settings=Settings(threads=1)))
    qtbot.addWidget(w)
    assert w.open(str(gop_file), frames="25:35"), w.state.last_error
    assert "GOPs of 20" in w.source_label.text() and w.transport.offset == 25
    with qtbot.waitSignal(w.jobDone, timeout=120_000) as sig:
        w.run()
    assert sig.args == ["finished"], w.state.last_error
    assert sorted(w.viewer.recon) == list(range(10))
    assert all(np.array_equal(w.viewer.recon[i], full[25 + i]) for i in range(10))
    assert not w.open(str(gop_file), frames="45:50") and "outside" in w.state.last_error
    w.close()
