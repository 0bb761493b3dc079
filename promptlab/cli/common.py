"""Shared argparse flags -> Settings, so every command spells a setting the same way.

Precedence: defaults < --preset < explicit flags. `--kbps` is resolved to a rank once the
clip length is known (`resolve_rank`), because the rate counts the header and init latent.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from promptlab.codec.shapes import NAMES
from promptlab.errors import PromptlabError
from promptlab.settings import (
    CROP_MODES,
    INIT_MODES,
    MAX_RANK,
    PERCEPTUAL,
    START_MODES,
    Settings,
    load_preset,
)

# flag -> (Settings field, type, help)
FLAGS: dict[str, tuple[str, type, str]] = {
    "--model": ("model", str, f"{' | '.join(NAMES)} | PATH to SD-Turbo weights | a hub id "
              "(e.g. stabilityai/sd-turbo) in the local Hugging Face cache"),
    "--size": ("size", int, "square frame size in px (multiple of 8)"),
    "--rank": ("rank", int, "prompt rank r (bytes per keyframe ~ 1101·r at SD-Turbo width)"),
    "--interval": ("interval", int, "keyframe interval k in frames"),
    "--gop": ("gop", int, "closed GOP length in frames, a multiple of the interval: every GOP restarts the "
              "chain from its own init latent, so a decoder seeks to it (0: the clip is one GOP)"),
    "--bits": ("bits", int, "quantiser bits (2..8)"),
    "--iters": ("iters", int, "iterations per later keyframe"),
    "--first-iters": ("first_iters", int, "iterations for keyframe 0"),
    "--fps": ("fps", float, "frame rate (default: the clip's own)"),
    "--crop": ("crop", str, f"how frames become square: {', '.join(CROP_MODES)}"),
    "--init-mode": ("init_mode", str, f"coding of each GOP's init latent: {', '.join(INIT_MODES)} (f32 lossless; "
                    "docs/format.md)"),
    "--seed": ("seed", int, "seed of the shared noise and the prompt initialisation"),
    "--start": ("start", str, f"inversion start: {', '.join(START_MODES)} (auto: the model's prompt encoder if it has one)"),
    "--perceptual": ("perceptual", str, f"perceptual loss term: {', '.join(PERCEPTUAL)}"),
    "--device": ("device", str, "auto | cpu | cuda[:N] | mps"),
    "--dtype": ("dtype", str, "fp32 | bf16 | fp16"),
    "--threads": ("threads", int, "CPU threads (0: torch's default); an encode's fit runs at one thread "
                  "whatever it says, so its bytes do not depend on it (they do on the device; "
                  "docs/reliability.md)"),
    "--stage-scale": ("stage_scale", int, "two-stage generation: generate at size/N (1, 2, 4) and upsample"),
    "--upsampler": ("upsampler", str, "two-stage upsampler: bicubic | lanczos | realesrgan-x2 | realesrgan-x4 | a registered one"),
}


def add_settings_args(p: argparse.ArgumentParser, *, encode: bool = True) -> None:
    """Add the shared settings flags (and --preset, --kbps, --frames for encoders), each help with its default."""
    defaults = Settings()
    p.add_argument("--preset", help="a preset name from presets/ (preview, reference) or a .json path "
                   "(default: none, i.e. the reference budget; preview is the quick one)")
    for flag, (field, kind, help_) in FLAGS.items():
        shown = help_ if "default" in help_ else f"{help_} (default {getattr(defaults, field)})"
        p.add_argument(flag, type=kind, default=None, help=shown)
    if encode:
        p.add_argument("--kbps", type=float, default=None, help="target bitrate: solves the rank (overrides --rank)")
        p.add_argument("--frames", default=None, help="frame range A:B (A inclusive, B exclusive)")


def settings_from_args(args: argparse.Namespace, base: Settings | None = None) -> Settings:
    """Defaults, then the preset, then every flag given explicitly."""
    s = base or Settings()
    if getattr(args, "preset", None):
        s = load_preset(args.preset, s)
    changes = explicit_settings(args)
    return s.replace(**changes) if changes else s


def explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings flags given on the command line, by Settings field (a model that cannot load is refused)."""
    changes: dict[str, Any] = {}
    for flag, (field, _, _) in FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            changes[field] = value
    if changes.get("model") is not None:  # refused before any work (or any window)
        from promptlab.models.registry import check_model

        check_model(changes["model"])
    return changes


def resolve_rank(settings: Settings, kbps: float | None, n_frames: int) -> Settings:
    """With a target bitrate, the largest rank whose worst-case total rate fits (header and init counted)."""
    if kbps is None:
        return settings
    from promptlab.codec.rate import estimate, solve_rank

    if n_frames < 1:
        raise PromptlabError("cannot solve a rank for an empty clip")
    rank = solve_rank(kbps, settings, n_frames, include_init=True)
    if rank == MAX_RANK:
        top = estimate(settings.replace(rank=MAX_RANK), n_frames).kbps
        print(f"warning: --kbps {kbps:g} is above what the largest rank gives: using rank {MAX_RANK} "
              f"(at most {top:.1f} kbps)", file=sys.stderr)
    return settings.replace(rank=rank)


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """--engine local|ray and how a Ray job runs (docs/scale-out.md)."""
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help='where the work runs: here, or on Ray workers (pip install "promptlab[ray]")')
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (HOST:PORT of `ray start --head`, or auto); default: start a local Ray")
    p.add_argument("--workers", type=int, default=2, help="Ray workers (tasks in flight) (default 2)")
    p.add_argument("--task-cpus", type=float, default=1.0,
                   help="Ray CPUs reserved per worker; also its torch threads unless --threads is given (default 1)")
    p.add_argument("--task-gpus", type=float, default=0.0, help="Ray GPUs reserved per worker (default 0)")
    p.add_argument("--retries", type=int, default=3, help="times a task whose worker died is retried (default 3)")


def ray_options(args: argparse.Namespace) -> Any:
    """The RayOptions of --engine ray (None for the local engine); Ray missing is one line, before any work."""
    if args.engine != "ray":
        for flag in ("address", "task_gpus"):
            if getattr(args, flag):
                raise PromptlabError(f"--{flag.replace('_', '-')} needs --engine ray")
        return None
    from promptlab.runs.distributed import RayOptions, check_address, import_ray

    import_ray()
    if args.address:
        check_address(args.address)
    return RayOptions(address=args.address, workers=args.workers, cpus=args.task_cpus, gpus=args.task_gpus,
                      retries=args.retries)
