"""Generation cache policies: lossless equals none, lossy reuses only when the prompt barely moves,
and the policy can be switched while a stream is being decoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from promptlab.codec.container import KeyframeRecord, StreamHeader, write_stream
from promptlab.codec.quant import RunningRange, quantize
from promptlab.codec.schedule import segments
from promptlab.engine import records
from promptlab.engine.cache import CacheControl, UnetCache, count_flops, factors_for, plan_anchors
from promptlab.engine.decoder import decode
from promptlab.engine.generator import fixed_noise, forward, segment_contexts
from promptlab.errors import PromptlabError
from promptlab.models import load_model


def factors(dim: int, rank: int = 4, seed: int = 0, move: float = 1.0):
    """Previous and current factors; `move` scales how far the current keyframe is from the previous."""
    g = torch.Generator().manual_seed(seed)
    u0, v0 = torch.rand(77, rank, generator=g), torch.rand(rank, dim, generator=g)
    u1 = u0 + move * (torch.rand(77, rank, generator=g) - 0.5)
    v1 = v0 + move * (torch.rand(rank, dim, generator=g) - 0.5)
    return (u0, v0), (u1, v1)


def run(model, policy: str, interp: str = "factors", move: float = 1.0, threshold: float = 0.05, size: int = 64):
    seg = segments(11, 10)[1]
    prev, cur = factors(model.context_dim, move=move)
    ctx = segment_contexts(seg, cur, prev, interp)
    f = factors_for(seg.index, cur, prev, seg.alphas(), interp)
    z = fixed_noise(88, (1, 4, size // 8, size // 8))
    cache = UnetCache(model, CacheControl(policy, threshold))
    with torch.no_grad():
        x0, images = forward(model, z, ctx, factors=f, cache=cache)
        return x0, images, cache.reused(), list(cache.anchors)


@pytest.mark.parametrize("interp", ["factors", pytest.param("linear", marks=pytest.mark.slow)])
def test_lossless_equals_none(tiny, interp: str) -> None:
    x_none, im_none, r_none, _ = run(tiny, "none", interp)
    x_ll, im_ll, r_ll, _ = run(tiny, "lossless", interp)
    assert (im_ll - im_none).abs().max() <= 1e-4
    assert (x_ll - x_none).abs().max() <= 1e-3
    assert r_none == [0.0] * 10
    assert all(0 < r < 1 for r in r_ll)  # the shared prefix (and rank-r K/V) is reused by every frame


@pytest.mark.slow
def test_lossless_rank_trick_saves_more_than_prefix_only(tiny) -> None:
    assert run(tiny, "lossless", "factors")[2][0] > run(tiny, "lossless", "linear")[2][0]


@pytest.mark.slow
def test_lossy_reuses_when_the_prompt_barely_moves(tiny) -> None:
    _, im_none, _, _ = run(tiny, "none", move=1e-4)
    _, im, reused, anchors = run(tiny, "lossy", move=1e-4)
    _, _, lossless, _ = run(tiny, "lossless", move=1e-4)
    assert anchors == [0] * 9 + [9]  # only the first and the keyframe are computed fully
    assert all(reused[i] > lossless[i] for i in range(1, 9))
    assert reused[9] == pytest.approx(lossless[9])
    assert (im - im_none).abs().max() < 0.05  # a barely moving prompt: nearly the same frames


def test_lossy_recomputes_when_the_prompt_moves_a_lot(tiny) -> None:
    _, im_none, _, _ = run(tiny, "none", move=2.0)
    _, im, reused, anchors = run(tiny, "lossy", move=2.0, threshold=0.01)
    assert anchors == list(range(10))
    assert (im - im_none).abs().max() <= 1e-4


def test_attention_counts_on_cpu() -> None:
    """torch's counter has no formula for its CPU attention kernel; reuse fractions need one."""
    q, k, v = torch.randn(2, 4, 16, 8), torch.randn(2, 4, 32, 8), torch.randn(2, 4, 32, 8)
    flops = count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
    assert flops == 2 * (2 * 2 * 4 * 16 * 32 * 8)  # Q·Kᵀ and A·V, two FLOPs per multiply-add


def test_plan_anchors_threshold() -> None:
    c = torch.ones(5, 77, 8)
    c[3] *= 1.5
    assert plan_anchors(c, 0.1) == [0, 0, 0, 3, 4]
    assert plan_anchors(c, 1.0) == [0, 0, 0, 0, 4]


def test_cache_control_validates() -> None:
    with pytest.raises(PromptlabError):
        CacheControl("fast")
    with pytest.raises(PromptlabError):
        CacheControl("lossy", -1)


def test_a_cache_leaves_other_users_of_the_model_alone(tiny) -> None:
    """The model is shared (the GUI decodes while a test or another job runs): a cache is owned by its
    caller, and while one runs in another thread the plain UNet call gives exactly the uncached result."""
    import threading

    seg = segments(11, 10)[1]
    prev, cur = factors(tiny.context_dim, move=1.0)
    ctx = segment_contexts(seg, cur, prev, "factors")
    f = factors_for(seg.index, cur, prev, seg.alphas(), "factors")
    z = fixed_noise(88, (1, 4, 8, 8))
    fields = dict(vars(tiny))
    with torch.no_grad():
        ref = forward(tiny, z, ctx)[1]
        cache = UnetCache(tiny, CacheControl("lossless"))
        assert dict(vars(tiny)) == fields  # nothing on the model object was replaced
        inside, started, done = [], threading.Event(), threading.Event()
        original_walk = cache._walk

        def walk(*args):  # hold the cached call open while another thread uses the model
            started.set()
            done.wait(60)
            return original_walk(*args)

        cache._walk = walk
        worker = threading.Thread(target=lambda: inside.append(forward(tiny, z, ctx, factors=f, cache=cache)[1]))
        worker.start()
        assert started.wait(60)
        during = forward(tiny, z, ctx)[1]
        done.set()
        worker.join(60)
    assert torch.equal(during, ref)
    assert (inside[0] - ref).abs().max() <= 1e-4


def make_stream(path: Path, model, n_frames: int = 21, size: int = 64) -> None:
    header = StreamHeader(model="tiny", width=size, height=size, fps=30.0, n_frames=n_frames, rank=4, bits=8,
                          interval=10, seed=88, blend=0.05, context_dim=model.context_dim)
    recs = []
    g = torch.Generator().manual_seed(3)
    for _ in segments(n_frames, 10):
        u, v = torch.rand(77, 4, generator=g), torch.rand(4, model.context_dim, generator=g)
        qu, qv = RunningRange(8).update(u), RunningRange(8).update(v)
        recs.append(KeyframeRecord(quantize(u, qu), quantize(v, qv), qu, qv))
    write_stream(path, header, torch.randn(header.latent_shape, generator=g), recs)


def test_switching_policy_mid_decode(tiny, tmp_path: Path) -> None:
    path = tmp_path / "s.plab"
    make_stream(path, tiny)
    ref = [r for r in decode(path, model=tiny) if isinstance(r, records.Frame)]
    control = CacheControl("none")
    got = []
    for r in decode(path, model=tiny, cache=control):
        if isinstance(r, records.Frame):
            got.append(r)
            if r.index == 3:
                control.set("lossless")  # takes effect at the next segment (frames 11..20)
        elif isinstance(r, records.Done):
            assert r.extra["cache"] == "lossless"
    assert [f.index for f in got] == list(range(21))
    assert all(f.reused == 0 for f in got[:11])
    assert all(f.reused > 0 for f in got[11:])
    for a, b in zip(ref, got, strict=True):
        assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 1  # uint8 rounding at most


@pytest.mark.slow
def test_sd_turbo_architecture_lossless_equals_none() -> None:
    torch.set_num_threads(2)
    m = load_model("sd-turbo-arch", "cpu")
    seg = segments(3, 2)[1]
    prev, cur = factors(m.context_dim, rank=2)
    ctx = segment_contexts(seg, cur, prev, "factors")
    f = factors_for(seg.index, cur, prev, seg.alphas(), "factors")
    z = fixed_noise(88, (1, 4, 8, 8))
    out = {}
    for policy in ("none", "lossless"):
        with torch.no_grad():
            out[policy] = forward(m, z, ctx, factors=f, cache=UnetCache(m, CacheControl(policy)))[1]
    assert (out["none"] - out["lossless"]).abs().max() <= 1e-4


def test_the_private_diffusers_methods_the_cache_walks_exist() -> None:
    """diffusers is capped to tested versions; this names what a new version must still have."""
    import inspect

    from diffusers.models.transformers.transformer_2d import Transformer2DModel
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    from promptlab.engine.cache import TRANSFORMER_PRIVATE

    params = {m: list(inspect.signature(getattr(Transformer2DModel, m)).parameters) for m in TRANSFORMER_PRIVATE}
    assert params["_operate_on_continuous_inputs"] == ["self", "hidden_states"]
    assert params["_get_output_for_continuous_inputs"] == [
        "self", "hidden_states", "residual", "batch_size", "height", "width", "inner_dim"]
    assert list(inspect.signature(UNet2DConditionModel.get_time_embed).parameters) == ["self", "sample", "timestep"]


def test_lossless_equals_none_with_token_positions_and_latent_readout(tmp_path: Path) -> None:
    """A model's token positions are added to every context; the cache's rank-r key/value
    projection must add them too, or the lossless policy would differ from none. The latent
    read-out of the (per-frame) contexts is added to the cached UNet's output the same way."""
    from promptlab.models.tiny_parts import LatentReadout, TokenPositions

    model = load_model("tiny", "cpu")  # a fresh copy: the shared fixture stays as it is
    plain = run(model, "none")[1]
    model.token_positions = TokenPositions(model.context_dim)
    with torch.no_grad():
        model.token_positions.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(3))
    model.latent_readout = LatentReadout(model.context_dim)
    with torch.no_grad():
        model.latent_readout.proj.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(4))
    _, im_none, _, _ = run(model, "none")
    _, im_ll, r_ll, _ = run(model, "lossless")
    assert (im_none - plain).abs().max() > 1e-2  # the offset and the read-out reach the output
    assert (im_ll - im_none).abs().max() <= 1e-4
    assert all(0 < r < 1 for r in r_ll)
