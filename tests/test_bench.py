"""`promptlab bench` runs end to end on a tiny size and writes its JSON (no speed thresholds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from promptlab.cli.bench import main
from promptlab.errors import PromptlabError

KEYS = ("speedup_vs_diffusers", "lossless_cache_speedup", "lossless_cache_max_abs_diff",
        "inversion_speedup_vs_reference", "machine", "peak_rss_mb", "generation", "inversion", "preview")


@pytest.mark.slow
def test_bench_writes_json(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    out = tmp_path / "bench.json"
    assert main(["--size", "64", "--frames", "3", "--reps", "1", "--inv-iters", "2", "--threads", "2",
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    for k in KEYS:
        assert k in r, k
    assert r["model"] == "tiny (random weights)" and r["machine"]["cpu_count"] >= 1
    g = r["generation"]
    assert set(g["frames_per_s"]) == {"none", "lossless", "lossy", "diffusers"}
    assert all(v > 0 for v in g["frames_per_s"].values())
    # the diffusers pipeline computes the same frames, and lossless equals none
    assert g["diffusers_max_abs_diff"]["none"] < 1e-3
    assert r["lossless_cache_max_abs_diff"] <= 1e-4
    reused = g["reused_flops_fraction"]["lossless"]
    assert reused > 0
    # the decoder (the same under every policy) dilutes what the lossless cache skips in the UNet
    flops = g["flops_per_frame"]
    assert flops["unet"] > 0 and flops["decoder"] > 0
    assert 1 < g["lossless_cache_flop_speedup"] < 1 / (1 - reused)
    assert r["inversion"]["seconds_per_frame_visit"]["reference"] > 0
    pv = r["preview"]  # the slider's path: a transcode to half the rank, then the decoder alone
    assert pv["preview_rank"] == pv["rank"] // 2 and 0 < pv["first_frame_ms"] <= pv["all_frames_ms"]


def test_bench_rejects_bad_size() -> None:
    with pytest.raises(PromptlabError):
        main(["--size", "60"])


@pytest.mark.slow
def test_diffusers_side_decodes_with_the_trained_models_own_decoder() -> None:
    """The trained tiny model has no AutoencoderTiny: the pipeline gets its decoder behind the vae API."""
    from promptlab.bench.run import bench_generation
    from promptlab.models.tiny import build_trained, trained_model

    cfg = {
        "arch": "tiny-v1",
        "unet": {"sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": [16, 32],
                 "layers_per_block": 1, "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 16,
                 "attention_head_dim": 4, "norm_num_groups": 8, "use_linear_projection": True},
        "parts": {"latent_channels": 4, "encoder_channels": [8, 8, 16], "decoder_channels": [16, 8, 8],
                  "decoder_blocks": [1, 1, 1], "dim": 16, "max_rank": 4, "prompt_width": 16},
    }
    m = trained_model(build_trained(cfg, seed=1), cfg, "mini", torch.device("cpu"), torch.float32)
    g = bench_generation(m, 64, 3, 1, 0.05)
    assert g["diffusers_max_abs_diff"]["none"] < 1e-3
    assert g["lossless_cache_max_abs_diff"] <= 1e-4


@pytest.mark.slow
def test_compiled_copy_gives_the_same_frames_and_leaves_the_original_eager() -> None:
    from promptlab.bench.run import segment_inputs
    from promptlab.engine.cache import CacheControl, UnetCache
    from promptlab.engine.generator import forward
    from promptlab.engine.runtime import compiled
    from promptlab.models.registry import load_model

    torch._dynamo.reset()
    m = load_model("tiny", "cpu")
    cm = compiled(m, copy=True)
    assert cm.unet_module is not m.unet_module and cm.decoder_module is not m.decoder_module
    assert getattr(m.decoder_module, "_compiled_call_impl", None) is None
    assert getattr(cm.decoder_module, "_compiled_call_impl", None) is not None
    _, _, ctx, f, z = segment_inputs(m, 32, 3)
    with torch.no_grad():
        ref = forward(m, z, ctx)[1]
        out = forward(cm, z, ctx, factors=f, cache=UnetCache(cm, CacheControl("lossless")))[1]
    assert (out - ref).abs().max() <= 1e-4


def test_channels_last_copy_gives_the_same_frames_and_leaves_the_original_alone() -> None:
    from promptlab.bench.run import segment_inputs
    from promptlab.engine.generator import forward
    from promptlab.engine.runtime import channels_last
    from promptlab.models.registry import load_model

    m = load_model("tiny", "cpu")
    cm = channels_last(m, copy=True)
    conv = next(p for p in m.unet_module.parameters() if p.dim() == 4)
    cconv = next(p for p in cm.unet_module.parameters() if p.dim() == 4)
    assert conv.is_contiguous() and cconv.is_contiguous(memory_format=torch.channels_last)
    assert not cconv.is_contiguous()
    _, _, ctx, _, z = segment_inputs(m, 32, 3)
    with torch.no_grad():
        assert (forward(cm, z, ctx)[1] - forward(m, z, ctx)[1]).abs().max() <= 1e-4


def test_diffusers_side_applies_token_positions_and_the_latent_readout() -> None:
    """The built-in model's token positions and latent read-out wrap the UNet in `Model.unet`; the
    pipeline side must wrap it the same way or the ratio compares different computations."""
    from test_train_tiny import mini_config

    from promptlab.bench.run import bench_generation
    from promptlab.models.tiny import build_trained, trained_model

    cfg = mini_config()
    cfg["parts"] = {**cfg["parts"], "token_positions": True, "latent_readout": True}
    m = trained_model(build_trained(cfg, seed=2), cfg, "mini", torch.device("cpu"), torch.float32)
    assert m.token_positions is not None and m.latent_readout is not None
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # trained values, not the zeros they start at (zeros would hide a missing wrap)
        for mod in (m.token_positions, m.latent_readout):
            for p in mod.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    r = bench_generation(m, 64, 3, 1, 0.05)
    assert r["diffusers_max_abs_diff"]["none"] < 1e-3


def test_answer_times_report_the_median_run_not_the_best() -> None:
    """A fake clock: three runs whose first frame comes after 9, 2 and 5 ticks and whose result
    after 30, 10 and 20; the bench reports 5 and 20 (the median), never 2 and 10 (the best)."""
    from promptlab.bench.run import answer_times

    now = [0.0]
    plans = iter([(9, 21), (2, 8), (5, 15)])  # ticks to the first frame, then to the end

    def run():
        to_first, to_end = next(plans)
        yield "progress"
        now[0] += to_first
        yield "frame"
        yield "frame"
        now[0] += to_end
        yield "summary"

    r = answer_times(run, lambda rec: rec == "frame", reps=3, clock=lambda: now[0])
    assert (r["first_frame_s"], r["full_s"]) == (5, 20)
    assert [x["first_frame_s"] for x in r["runs"]] == [9, 2, 5] and [x["full_s"] for x in r["runs"]] == [30, 10, 20]


@pytest.mark.slow
def test_bench_lab_preview_times_the_labs_own_run(tmp_path: Path, make_clip, ramp, monkeypatch) -> None:
    """`promptlab bench --lab-preview CLIP`: the lab's run of a preset, fresh each time, medians in the JSON."""
    monkeypatch.setenv("PROMPTLAB_CACHE_DIR", str(tmp_path / "cache"))
    clip = make_clip(tmp_path / "ramp.mkv", ramp(6, 64, 64))
    preset = tmp_path / "quick.json"
    preset.write_text(json.dumps({"model": "tiny", "size": 64, "rank": 2, "interval": 5, "iters": 1,
                                  "first_iters": 1, "perceptual": "none"}))
    out = tmp_path / "lab.json"
    assert main(["--lab-preview", str(clip), "--preset", str(preset), "--clip-frames", "0:6", "--reps", "2",
                 "--threads", "2", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["frames"] == 6 and r["model"] == "tiny" and len(r["runs"]) == 2 and r["kbps"] > 0
    assert all(0 < x["first_frame_s"] <= x["full_s"] for x in r["runs"])
    assert r["full_s"] == pytest.approx(sum(x["full_s"] for x in r["runs"]) / 2)  # the median of two
    assert not (tmp_path / "cache").exists()  # every repetition ran in its own temporary cache
