"""`promptlab bench` runs end to end on a tiny size and writes its JSON (no speed thresholds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from promptlab.cli.bench import main
from promptlab.errors import PromptlabError

KEYS = ("speedup_vs_diffusers", "lossless_cache_speedup", "lossless_cache_max_abs_diff",
        "inversion_speedup_vs_reference", "machine", "peak_rss_mb", "generation", "inversion")


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
    assert r["generation"]["reused_flops_fraction"]["lossless"] > 0
    assert r["inversion"]["seconds_per_frame_visit"]["reference"] > 0


def test_bench_rejects_bad_size() -> None:
    with pytest.raises(PromptlabError):
        main(["--size", "60"])
