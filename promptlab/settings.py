"""One Settings model shared by CLI flags, GUI controls, presets and the .plab header.

Versioned so that a preset or a saved GUI session from an older promptlab is either
migrated or refused clearly, never half-read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from promptlab.errors import PromptlabError
from promptlab.io import CROP_MODES
from promptlab.paths import bundled, config_dir

SCHEMA_VERSION = 1

# the order of these (and of io.CROP_MODES) is the .plab header's codes (docs/format.md): append, never reorder
INTERP_MODES = ("factors", "linear", "slerp")
INIT_MODES = ("f32", "f16", "q8", "q6", "zero")
PERCEPTUAL = ("vgg", "lpips", "ms-ssim", "none")
CACHE_POLICIES = ("none", "lossless", "lossy")
STAGE_SCALES = (1, 2, 4)
START_MODES = ("auto", "uniform", "amortised")
MAX_RANK = 1024
# a frame whose LPIPS (alex) exceeds this counts as severely distorted (the lab's plots, summaries, reports)
SEVERE_LPIPS = 0.32


@dataclass(frozen=True)
class Settings:
    """Everything that determines a run. Defaults follow the Promptus reference code (docs/engines.md)."""

    model: str = "tiny"
    size: int = 128
    rank: int = 8
    bits: int = 8
    interval: int = 10
    fps: float = 30.0
    seed: int = 88
    blend: float = 0.05
    interp: str = "factors"
    crop: str = "center"
    init_mode: str = "q6"  # the compact init-latent coding (docs/format.md); f32 is lossless
    gop: int = 0  # closed GOP length in frames (a multiple of interval); 0: the clip is one GOP
    # inversion
    iters: int = 1500
    first_iters: int = 10000
    lr: float = 0.1
    lr_min: float = 0.001
    patience: int = 20
    first_patience: int = 300
    # where inversion starts: "uniform" U, V ~ U[0, 1) (the reference), "amortised" the model's
    # prompt encoder's guess from the keyframe, "auto" amortised when the model has one
    start: str = "auto"
    w_mse: float = 0.8
    w_perceptual: float = 0.2
    w_reg: float = 0.1
    perceptual: str = "vgg"
    batched: bool = True
    dynamic: bool = True
    # generation
    cache: str = "none"
    cache_threshold: float = 0.05
    # two-stage generation (PromptMobile): generate at size/stage_scale, upsample to size
    stage_scale: int = 1
    upsampler: str = "bicubic"
    # runtime
    device: str = "auto"
    dtype: str = "fp32"
    threads: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise PromptlabError(f"invalid setting: {msg}")

        need(self.size >= 8 and self.size % 8 == 0, f"size must be a multiple of 8, got {self.size}")
        need(1 <= self.rank <= MAX_RANK, f"rank must be 1..{MAX_RANK}, got {self.rank}")
        need(2 <= self.bits <= 8, f"bits must be 2..8, got {self.bits}")
        need(1 <= self.interval <= 10000, f"interval must be >= 1, got {self.interval}")
        need(0 < self.fps <= 1000, f"fps must be in (0, 1000], got {self.fps}")
        need(0 <= self.seed < 2**32, f"seed must be 0..2^32-1, got {self.seed}")
        need(0.0 <= self.blend <= 1.0, f"blend must be in [0, 1], got {self.blend}")
        need(self.interp in INTERP_MODES, f"interp must be one of {INTERP_MODES}")
        need(self.crop in CROP_MODES, f"crop must be one of {CROP_MODES}")
        need(self.init_mode in INIT_MODES, f"init_mode must be one of {INIT_MODES}")
        need(self.gop >= 0 and self.gop % self.interval == 0,
             f"gop must be 0 (one GOP) or a multiple of the interval {self.interval}, got {self.gop}")
        need(self.start in START_MODES, f"start must be one of {START_MODES}")
        need(self.perceptual in PERCEPTUAL, f"perceptual must be one of {PERCEPTUAL}")
        need(self.cache in CACHE_POLICIES, f"cache must be one of {CACHE_POLICIES}")
        need(self.cache_threshold >= 0, f"cache_threshold must be >= 0, got {self.cache_threshold}")
        need(self.stage_scale in STAGE_SCALES, f"stage_scale must be one of {STAGE_SCALES}, got {self.stage_scale}")
        need(self.size % (8 * self.stage_scale) == 0,
             f"size must be a multiple of {8 * self.stage_scale} with stage_scale {self.stage_scale}")
        need(bool(self.upsampler) and self.upsampler.replace("-", "_").isidentifier(),
             f"upsampler must be a name (bicubic, lanczos, or a registered one), got {self.upsampler!r}")
        need(self.iters >= 0 and self.first_iters >= 0, "iteration counts must be >= 0 (0: the prompt encoder's guess, unrefined)")
        need(self.lr > 0 and self.lr_min > 0, "learning rates must be > 0")
        need(self.dtype in ("fp32", "bf16", "fp16"), "dtype must be fp32, bf16 or fp16")
        need(self.threads >= 0, "threads must be >= 0 (0: automatic)")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["schema_version"] = SCHEMA_VERSION
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Settings | None = None) -> Settings:
        """Build from a (possibly partial) dict; unknown keys are an error, missing keys keep `base`."""
        data = dict(data)
        version = data.pop("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise PromptlabError(f"settings schema version {version} is not supported (expected {SCHEMA_VERSION})")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise PromptlabError(f"unknown setting(s): {', '.join(unknown)}")
        out = dataclasses.asdict(base or cls())
        for key, value in data.items():
            kind = type(out[key])
            try:
                out[key] = kind(value) if kind is not bool else _as_bool(value)
            except (TypeError, ValueError) as exc:
                raise PromptlabError(f"setting {key}: cannot use {value!r} ({exc})") from None
        return cls(**out)

    def key(self, *names: str) -> str:
        """A short hash of the named settings: the name under which a result is cached."""
        d = self.to_dict()
        payload = json.dumps({n: d[n] for n in sorted(names)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


# Settings that change the encoded stream (and so name a cached encode result).
ENCODE_KEYS = (
    "model", "size", "rank", "bits", "interval", "fps", "seed", "blend", "interp", "crop",
    "init_mode", "gop", "iters", "first_iters", "lr", "lr_min", "patience", "first_patience",
    "w_mse", "w_perceptual", "w_reg", "perceptual", "batched", "dynamic", "dtype",
    "stage_scale", "upsampler", "start",
)


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError("not a boolean")


def load_settings_file(path: str | Path, base: Settings | None = None) -> Settings:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise PromptlabError(f"settings file not found: {p}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PromptlabError(f"cannot read settings file {p}: {exc}") from None
    if not isinstance(data, dict):
        raise PromptlabError(f"settings file {p} must hold a JSON object")
    data.pop("description", None)
    return Settings.from_dict(data, base)


def user_presets_dir() -> Path:
    """The user's own presets ("Save as…" in the lab): in the config folder, never in the install."""
    return config_dir() / "presets"


def preset_dirs() -> list[Path]:
    """Where a preset is looked up by name: the user's folder first, then the presets shipped in the package."""
    return [user_presets_dir(), bundled("presets")]


def preset_path(name: str) -> Path:
    """A .json path (or any existing file) as given; else the named preset from preset_dirs()."""
    p = Path(name)
    if p.suffix == ".json" or p.exists():
        return p
    candidates = [d / f"{name}.json" for d in preset_dirs()]
    return next((q for q in candidates if q.is_file()), candidates[-1])


def load_preset(name: str, base: Settings | None = None) -> Settings:
    """A preset is a partial settings file: a name from preset_dirs() or any path."""
    p = preset_path(name)
    if not p.exists():
        raise PromptlabError(f"no preset named {name!r} (available: {', '.join(list_presets())})")
    return load_settings_file(p, base)


def list_presets() -> list[str]:
    """Preset names from every folder in preset_dirs()."""
    return sorted({q.stem for d in preset_dirs() if d.is_dir() for q in d.glob("*.json")})


def save_user_preset(settings: Settings, name: str, description: str = "") -> Path:
    """Write a named preset into the user's folder (made if needed); loading by name finds it first."""
    if name in ("", ".", "..") or Path(name).name != name:
        raise PromptlabError(f"a preset name is a plain file name, got {name!r}")
    folder = user_presets_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PromptlabError(f"cannot make the presets folder {folder}: {exc.strerror or exc}") from None
    path = folder / f"{name}.json"
    save_settings_file(settings, path, description)
    return path


def save_settings_file(settings: Settings, path: str | Path, description: str = "") -> None:
    from promptlab.io.atomic import write_bytes_atomic

    d = settings.to_dict()
    if description:
        d = {"description": description, **d}
    write_bytes_atomic(path, (json.dumps(d, indent=2) + "\n").encode())
