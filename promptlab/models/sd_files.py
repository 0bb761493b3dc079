"""Where SD-Turbo and TAESD are on disk, and whether they would load, without loading them.

SD-Turbo (first match wins):
  1. `--model PATH`: a diffusers folder (unet/, vae/) or the single file `sd_turbo.safetensors`
     (the original SD layout the reference code loads);
  2. `--model ORG/NAME`: that hub id's snapshot in the local Hugging Face cache;
  3. PROMPTLAB_SD_TURBO=PATH (a folder, the single file or a cached hub id);
  4. the local Hugging Face cache of `stabilityai/sd-turbo`.
TAESD: PROMPTLAB_TAESD=FOLDER, a `taesd/` folder inside or beside the SD-Turbo folder, or the
local cache of `madebyollin/taesd`. The cache is $HF_HUB_CACHE, else $HF_HOME/hub, else
~/.cache/huggingface/hub; nothing is ever downloaded.

A diffusers folder's weights are `diffusion_pytorch_model.safetensors`, or the fp16 variant
`diffusion_pytorch_model.fp16.safetensors` when only that was downloaded; pickled `.bin`
weights are never loaded. The checks read configs and safetensors headers only (milliseconds),
so the loader, `doctor` and the GUI refuse, before any work, what would fail mid-encode: a UNet
whose cross-attention width is not the prompt codec's 1024 (an SD 1.x model), other latent
channel counts, a missing folder, a truncated or foreign weights file, a cache holding configs only.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptlab.codec.shapes import SD_TURBO
from promptlab.errors import MissingWeightsError, PromptlabError
from promptlab.models.files import safetensors_header, tensor_shape

SD_TURBO_HUB = "stabilityai/sd-turbo"
TAESD_HUB = "madebyollin/taesd"
WEIGHTS = "diffusion_pytorch_model.safetensors"
WEIGHTS_FP16 = "diffusion_pytorch_model.fp16.safetensors"
CONTEXT_DIM = SD_TURBO.context_dim        # the prompt width the codec writes (77 x 1024)
LATENT_CHANNELS = SD_TURBO.latent_channels
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# original-layout (single file) tensors that say which UNet and VAE a checkpoint holds
LDM_UNET, LDM_VAE = "model.diffusion_model.", "first_stage_model."
LDM_CROSS = LDM_UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
LDM_CONV_IN = LDM_UNET + "input_blocks.0.0.weight"
DIFFUSERS_CROSS = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"

HOWTO = (
    "provide SD-Turbo with --model PATH or PROMPTLAB_SD_TURBO=PATH (a diffusers folder with unet/ "
    "and vae/, or the single file sd_turbo.safetensors), --model stabilityai/sd-turbo for the Hugging "
    "Face cache, and TAESD with PROMPTLAB_TAESD=PATH (a diffusers AutoencoderTiny folder) or a taesd/ "
    "folder beside the weights; promptlab never downloads weights"
)


@dataclass
class Part:
    """One loadable piece: a diffusers folder (role unet, vae or taesd) or the single file."""

    role: str
    path: Path               # the folder from_pretrained reads, or the single file
    weights: Path
    variant: str | None = None


@dataclass
class Located:
    """What was found for one route, what is missing and what would not load."""

    source: str                                  # how SD-Turbo was found, in words
    parts: dict[str, Part] = field(default_factory=dict)
    found: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.invalid

    def weights(self) -> list[Path]:
        """The weights files the loader would read (what the fingerprint names)."""
        return [p.weights for p in self.parts.values()]

    def error(self) -> PromptlabError:
        """One line: what would not load first (the key part), then what is missing and how to provide it."""
        if not self.missing:
            return PromptlabError("; ".join(self.invalid))
        missing = "missing " + "; ".join(self.missing) + ": " + HOWTO
        if self.invalid:
            return PromptlabError("; ".join(self.invalid) + "; " + missing)
        return MissingWeightsError(missing)


def hub_cache() -> Path:
    """The Hugging Face hub cache folder, as huggingface_hub resolves it (read at call time)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def hub_snapshot(repo: str) -> Path | None:
    """The cached snapshot folder of a hub model (refs/main, else the newest), or None."""
    root = hub_cache() / ("models--" + repo.replace("/", "--"))
    ref = root / "refs" / "main"
    try:
        if ref.is_file():
            snap = root / "snapshots" / ref.read_text().strip()
            if snap.is_dir():
                return snap
        snaps = [s for s in (root / "snapshots").iterdir() if s.is_dir()]
    except OSError:
        return None
    return max(snaps, key=lambda s: s.stat().st_mtime) if snaps else None


def is_hub_id(name: str) -> bool:
    """ORG/NAME that is not a path here: looked up in the Hugging Face cache."""
    return bool(_HUB_ID.match(name)) and not Path(name).exists()


def locate(source: str | None = None) -> Located:
    """Find SD-Turbo (source: a path or hub id; else the environment, then the cache) and TAESD, and check both."""
    sd, loc = _sd_source(source)
    if sd is not None:
        if sd.is_file():
            _single_file(sd, loc)
        elif (sd / "unet").is_dir() or (sd / "vae").is_dir():
            for role in ("unet", "vae"):
                _folder(sd / role, role, loc)
        else:
            loc.missing.append(f"SD-Turbo weights at {sd} (neither a diffusers folder with unet/ and vae/ "
                               "nor a .safetensors file)")
    _taesd(sd, loc)
    return loc


def _sd_source(source: str | None) -> tuple[Path | None, Located]:
    env = os.environ.get("PROMPTLAB_SD_TURBO")
    for given, how in ((source, "--model"), (env, "PROMPTLAB_SD_TURBO")):
        if not given:
            continue
        p = Path(given).expanduser()
        if p.exists():
            return p, Located(f"{how} {p}")
        if is_hub_id(given):
            snap = hub_snapshot(given)
            if snap is not None:
                return snap, Located(f"{given} in the Hugging Face cache ({snap})")
            return None, Located(given, missing=[
                f"{given}: not in the Hugging Face cache {hub_cache()} and no such path here (download it "
                f"on a connected machine with `hf download {given}` and copy the cache folder, or "
                "pass the folder with --model PATH)"])
        return None, Located(f"{how} {p}", missing=[f"SD-Turbo weights: {how} path {p} does not exist"])
    snap = hub_snapshot(SD_TURBO_HUB)
    if snap is not None:
        return snap, Located(f"{SD_TURBO_HUB} in the Hugging Face cache ({snap})")
    return None, Located("nowhere", missing=[
        f"SD-Turbo weights ({SD_TURBO_HUB} not in the Hugging Face cache {hub_cache()}, PROMPTLAB_SD_TURBO unset)"])


def _taesd(sd: Path | None, loc: Located) -> None:
    env = os.environ.get("PROMPTLAB_TAESD")
    if env:
        folder: Path | None = Path(env).expanduser()
    elif sd is not None and sd.is_dir() and (sd / "taesd").is_dir():
        folder = sd / "taesd"
    elif sd is not None and (sd.parent / "taesd").is_dir():
        folder = sd.parent / "taesd"
    else:
        folder = hub_snapshot(TAESD_HUB)
    if folder is None:
        loc.missing.append(f"TAESD weights ({TAESD_HUB} not in the Hugging Face cache {hub_cache()}, "
                           "PROMPTLAB_TAESD unset, no taesd/ folder beside the SD-Turbo weights)")
        return
    _folder(folder, "taesd", loc)


def _folder(folder: Path, role: str, loc: Located) -> None:
    """Check one diffusers folder: config.json parses and fits, the weights file is whole."""
    if not folder.is_dir():
        loc.missing.append(f"{folder}/ (the {role} folder)")
        return
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        loc.missing.append(f"{cfg_path} (the {role} config)")
        return
    try:
        config = json.loads(cfg_path.read_text())
        if not isinstance(config, dict):
            raise ValueError
    except (OSError, ValueError, UnicodeDecodeError):
        loc.invalid.append(f"{cfg_path} is not a readable JSON config: re-download it")
        return
    loc.found.append(str(cfg_path))
    if (folder / WEIGHTS).is_file():
        weights, variant = folder / WEIGHTS, None
    elif (folder / WEIGHTS_FP16).is_file():
        weights, variant = folder / WEIGHTS_FP16, "fp16"
    elif any(folder.glob("*.bin")):
        loc.invalid.append(f"{folder} holds only pickled .bin weights; promptlab loads {WEIGHTS} "
                           f"(or {WEIGHTS_FP16}) only")
        return
    else:
        loc.missing.append(f"{folder / WEIGHTS} or {WEIGHTS_FP16} (the {role} weights; the folder holds only "
                           f"{', '.join(sorted(q.name for q in folder.iterdir())) or 'nothing'})")
        return
    try:
        header = safetensors_header(weights)
    except PromptlabError as exc:
        loc.invalid.append(str(exc))
        return
    loc.found.append(str(weights) + (" (fp16 variant)" if variant else ""))
    problem = _config_problem(role, config, header)
    if problem:
        loc.invalid.append(f"{folder}: {problem}")
        return
    loc.parts[role] = Part(role, folder, weights, variant)


def _config_problem(role: str, config: dict[str, Any], header: dict[str, Any]) -> str | None:
    """Why a config (and its weights' shapes) does not fit the prompt codec, or None."""
    if role == "unet":
        cross = config.get("cross_attention_dim")
        to_k = tensor_shape(header, DIFFUSERS_CROSS)
        if to_k is not None and cross == CONTEXT_DIM and to_k[-1] != cross:
            cross = to_k[-1]
        if cross != CONTEXT_DIM:
            return _cross_problem(cross)
        if config.get("in_channels") != LATENT_CHANNELS or config.get("out_channels") != LATENT_CHANNELS:
            return (f"UNet has {config.get('in_channels')}/{config.get('out_channels')} latent channels, "
                    f"SD-Turbo {LATENT_CHANNELS}")
    elif role == "vae":
        if config.get("latent_channels") != LATENT_CHANNELS or len(config.get("block_out_channels", [])) != 4:
            return f"VAE config is not SD's ({LATENT_CHANNELS} latent channels, 8x downsampling)"
    elif config.get("latent_channels", 4) != LATENT_CHANNELS:
        return f"TAESD config has {config.get('latent_channels')} latent channels, SD-Turbo {LATENT_CHANNELS}"
    return None


def _cross_problem(cross: Any) -> str:
    kind = " (an SD 1.x model)" if cross == 768 else " (an SDXL model)" if cross == 2048 else ""
    return (f"the UNet's cross-attention width is {cross}{kind}, but SD-Turbo prompts are 77x{CONTEXT_DIM}: "
            f"use {SD_TURBO_HUB}")


def _single_file(path: Path, loc: Located) -> None:
    """The original-layout checkpoint: safetensors only, whole, with an SD 2.x UNet and the VAE."""
    if path.suffix != ".safetensors":
        loc.invalid.append(f"{path}: only .safetensors single files are loaded (no pickles)")
        return
    try:
        header = safetensors_header(path)
    except PromptlabError as exc:
        loc.invalid.append(str(exc))
        return
    loc.found.append(str(path))
    names = [k for k in header if k != "__metadata__"]
    if not any(k.startswith(LDM_UNET) for k in names) or not any(k.startswith(LDM_VAE) for k in names):
        loc.invalid.append(f"{path} is not a Stable Diffusion checkpoint (no {LDM_UNET}* UNet and "
                           f"{LDM_VAE}* VAE tensors)")
        return
    to_k, conv_in = tensor_shape(header, LDM_CROSS), tensor_shape(header, LDM_CONV_IN)
    if to_k is None or to_k[-1] != CONTEXT_DIM:
        loc.invalid.append(f"{path}: {_cross_problem(to_k[-1] if to_k else 'unknown')}")
        return
    if conv_in is None or conv_in[1] != LATENT_CHANNELS:
        loc.invalid.append(f"{path}: the UNet does not take {LATENT_CHANNELS} latent channels")
        return
    loc.parts["single"] = Part("single", path, path)


def routes() -> list[Located]:
    """Every SD-Turbo route configured on this machine (for doctor): the environment, then the cache."""
    out = []
    if os.environ.get("PROMPTLAB_SD_TURBO"):
        out.append(locate())
    if hub_snapshot(SD_TURBO_HUB) is not None:
        out.append(locate(SD_TURBO_HUB))
    return out
