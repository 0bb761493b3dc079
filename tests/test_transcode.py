"""transcode: lower rank / fewer bits from a stream without re-fitting, every byte counted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from promptlab.cli.main import main
from promptlab.codec.container import KeyframeRecord, StreamHeader, read_stream, stream_bytes
from promptlab.codec.prompt import compose, interpolate
from promptlab.codec.quant import qparams, quantize
from promptlab.codec.transcode import refactor, transcode, transcode_to_rate
from promptlab.errors import PromptlabError

RANK, DIM, FRAMES = 8, 128, 21


def record(u: torch.Tensor, v: torch.Tensor, bits: int = 8) -> KeyframeRecord:
    up = qparams(float(u.min()), float(u.max()), bits)
    vp = qparams(float(v.min()), float(v.max()), bits)
    return KeyframeRecord(quantize(u, up), quantize(v, vp), up, vp)


def make_stream(seed: int = 0, frames: int = FRAMES):
    """A tiny-model stream whose keyframes share a slowly drifting prompt, as fitted streams do."""
    g = torch.Generator().manual_seed(seed)
    h = StreamHeader(model="tiny", width=64, height=64, fps=30.0, n_frames=frames, rank=RANK, bits=8,
                     interval=10, seed=0, blend=0.05, context_dim=DIM)
    u = torch.randn(77, RANK, generator=g)
    v = torch.randn(RANK, DIM, generator=g)
    recs = []
    for _ in range(h.n_keyframes):
        recs.append(record(u, v))
        u = u + 0.1 * torch.randn(77, RANK, generator=g)
        v = v + 0.1 * torch.randn(RANK, DIM, generator=g)
    init = torch.randn(h.latent_shape, generator=g)
    return read_stream(stream_bytes(h, init, recs))


def test_refactor_at_full_rank_keeps_every_prompt() -> None:
    s = make_stream()
    for rec, (u, v) in zip(s.keyframes, refactor(s.keyframes, RANK), strict=True):
        assert torch.allclose(compose(*rec.factors()), compose(u, v), atol=1e-4)


@pytest.mark.parametrize("rank", [1, 2, 4])
def test_refactor_gives_the_best_low_rank_prompt(rank: int) -> None:
    s = make_stream()
    for rec, (u, v) in zip(s.keyframes, refactor(s.keyframes, rank), strict=True):
        c = compose(*[f.double() for f in rec.factors()])
        a, sv, bt = torch.linalg.svd(c, full_matrices=False)
        best = (a[:, :rank] * sv[:rank]) @ bt[:rank]
        assert u.shape == (77, rank) and v.shape == (rank, DIM)
        assert torch.allclose(compose(u, v).double(), best, atol=1e-4)
        # and it is better than simply dropping the sender's trailing columns
        fu, fv = rec.factors()
        dropped = compose(fu[:, :rank], fv[:rank]).double()
        assert (compose(u, v).double() - c).norm() < (dropped - c).norm()


def test_keyframes_are_aligned_so_factor_interpolation_stays_smooth() -> None:
    # the same prompt at both keyframes, written with differently rotated and sign-flipped factors:
    g = torch.Generator().manual_seed(3)
    u, v = torch.randn(77, RANK, generator=g), torch.randn(RANK, DIM, generator=g)
    q, _ = torch.linalg.qr(torch.randn(RANK, RANK, generator=g))
    recs = [record(u, v), record(u @ q, q.T @ v)]
    (u0, v0), (u1, v1) = refactor(recs, 4)
    assert torch.allclose(u0, u1, atol=0.05) and torch.allclose(v0, v1, atol=0.05)
    # so the prompt half-way between two equal keyframes is that prompt, not a collapsed one
    mid = interpolate(u0, v0, u1, v1, torch.tensor([0.5]))[0]
    assert (mid - compose(u0, v0)).norm() < 0.02 * compose(u0, v0).norm()


def test_transcode_shrinks_the_stream_and_it_reads_back() -> None:
    s = make_stream()
    sizes = []
    for rank, bits in ((8, 8), (4, 8), (2, 8), (2, 4)):
        t = transcode(s, rank, bits)
        back = read_stream(t.data)
        assert back.complete and back.header.rank == rank and back.header.bits == bits
        assert back.header.n_frames == s.header.n_frames and torch.equal(back.init_latent, s.init_latent)
        sizes.append(len(t.data))
    assert sizes[0] == s.total_bytes  # nothing asked: the same records
    assert sizes[0] > sizes[1] > sizes[2] > sizes[3]


def test_fewer_bits_at_the_same_rank_keep_the_prompt_close() -> None:
    s = make_stream()
    back = read_stream(transcode(s, bits=6).data)
    for a, b in zip(s.keyframes, back.keyframes, strict=True):
        ca, cb = compose(*a.factors()), compose(*b.factors())
        assert (ca - cb).norm() < 0.05 * ca.norm()


def test_target_rate_picks_the_largest_rank_that_fits() -> None:
    s = make_stream()
    full = transcode(s, 4)
    t = transcode_to_rate(s, full.kbps + 0.01)
    assert t.header.rank == 4 and t.kbps <= full.kbps + 0.01
    assert transcode(s, 5).kbps > full.kbps + 0.01
    with pytest.raises(PromptlabError, match="below this stream's smallest transcode"):
        transcode_to_rate(s, 0.5)


def test_bad_requests_are_refused() -> None:
    s = make_stream()
    with pytest.raises(PromptlabError, match="rank must be 1..8"):
        transcode(s, 9)
    with pytest.raises(PromptlabError, match="bits must be 2..8"):
        transcode(s, bits=1)
    cut = stream_bytes(s.header, s.init_latent, s.keyframes)[:-30]
    partial = read_stream(cut, allow_partial=True)
    with pytest.raises(PromptlabError, match="incomplete"):
        transcode(partial, 2)


def test_cli_transcode_decodes_like_any_stream(tmp_path: Path, capsys) -> None:
    src = tmp_path / "s.plab"
    s = make_stream()
    src.write_bytes(stream_bytes(s.header, s.init_latent, s.keyframes))
    out = tmp_path / "s2.plab"
    assert main(["transcode", str(src), "--rank", "2", "--bits", "6", "-o", str(out)]) == 0
    assert "rank 2, 6 bits" in capsys.readouterr().out
    assert out.stat().st_size < src.stat().st_size
    assert main(["decode", str(out), "-o", str(tmp_path / "dec"), "--quiet"]) == 0
    assert len(list((tmp_path / "dec").glob("*.png"))) == FRAMES
    # one-line errors, non-zero exit, nothing written
    assert main(["transcode", str(src), "--rank", "2", "-o", str(out)]) == 2  # exists, no --force
    assert main(["transcode", str(src), "-o", str(tmp_path / "x.plab")]) == 2
    assert main(["transcode", str(src), "--rank", "2", "--kbps", "5", "-o", str(tmp_path / "x.plab")]) == 2
    assert main(["transcode", str(src), "--rank", "99", "-o", str(tmp_path / "x.plab")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and not (tmp_path / "x.plab").exists()
    assert "rank must be 1..8" in err


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to 8-bit requantisation (relative error well under the prompts' own spread)."""
    return float((a - b).norm() / b.norm()) < 0.02


def test_rekey_places_keyframes_at_the_new_interval_with_the_streams_own_prompts() -> None:
    """A new keyframe's prompt is the receiver's prompt at that frame in the old stream (up to
    requantisation); old keyframes that stay keyframes keep their prompt exactly."""
    from promptlab.codec.schedule import keyframes
    from promptlab.codec.transcode import rekey

    s = make_stream(frames=21)
    for interval in (5, 20):
        r = rekey(s, interval)
        assert r.complete and r.header.interval == interval
        new_k = keyframes(21, interval)
        assert r.header.n_keyframes == len(new_k) == len(r.keyframes)
        for f, rec in zip(new_k, r.keyframes, strict=True):
            if f % 10 == 0 or f == 20:
                old = s.keyframes[-(-f // 10)]
                assert close(compose(*rec.factors()), compose(*old.factors()))
            else:  # frame 5 or 15: halfway between two fitted keyframes
                i = -(-f // 10)
                (u0, v0), (u1, v1) = s.keyframes[i - 1].factors(), s.keyframes[i].factors()
                want = interpolate(u0, v0, u1, v1, torch.tensor([0.5]))[0]
                assert close(compose(*rec.factors()), want)
    assert len(rekey(s, 5).keyframes) > len(s.keyframes) > len(rekey(s, 20).keyframes)
    with pytest.raises(PromptlabError, match="interval"):
        rekey(s, 0)


def test_cli_transcode_interval(tmp_path: Path) -> None:
    src = tmp_path / "s.plab"
    src.write_bytes(stream_bytes(make_stream().header, make_stream().init_latent, make_stream().keyframes))
    out = tmp_path / "s20.plab"
    assert main(["transcode", str(src), "--interval", "20", "-o", str(out)]) == 0
    t = read_stream(out)
    assert t.header.interval == 20 and t.complete and out.stat().st_size < src.stat().st_size
