"""Model names -> loaders, and what is available on this machine (for the GUI and `doctor`).

A model is a built-in name (tiny, tiny2, sd-turbo, sd-turbo-arch), a path to SD-Turbo weights, or a
hub id (ORG/NAME) looked up in the local Hugging Face cache (models/sd_files.py).
"""

from __future__ import annotations

from pathlib import Path

from promptlab.codec.shapes import NAMES
from promptlab.device import resolve_device, resolve_dtype
from promptlab.errors import MissingWeightsError, PromptlabError
from promptlab.models.base import Model


def is_source(name: str) -> bool:
    """A path or hub id (SD-Turbo weights from there) rather than a built-in name."""
    return name not in NAMES and ("/" in name or "\\" in name or bool(Path(name).suffix) or Path(name).exists())


_PRELOADED: dict[tuple[str, str, str], Model] = {}


def preload(name: str, device: str = "auto", dtype: str = "fp32") -> None:
    """Load a model now; the next `load_model` of the same model in this process gets this very
    object, once. A spare job process (the GUI's) pays for the load before its job is known."""
    dev = resolve_device(device)
    _PRELOADED[(name, str(dev), str(resolve_dtype(dtype, dev)))] = load_model(name, device, dtype)


def load_model(name: str, device: str = "auto", dtype: str = "fp32") -> Model:
    """Load a model by built-in name (codec.shapes.NAMES), path or hub id (SD-Turbo from there)."""
    check_name(name)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    warm = _PRELOADED.pop((name, str(dev), str(dt)), None)
    if warm is not None:
        return warm
    if name == "tiny":
        from promptlab.models.tiny import load_tiny

        return load_tiny(dev, dt)
    if name == "tiny2":
        from promptlab.models.tiny2 import load_tiny2

        return load_tiny2(dev, dt)
    if name == "sd-turbo-arch":
        from promptlab.models.sd_turbo import load_sd_turbo_arch

        return load_sd_turbo_arch(dev, dt)
    from promptlab.models.sd_turbo import load_sd_turbo

    return load_sd_turbo(dev, dt, source=None if name == "sd-turbo" else name)


def check_name(name: str) -> None:
    """Refuse, in one line, what is neither a built-in name nor a path or hub id."""
    if name not in NAMES and not is_source(name):
        raise PromptlabError(f"unknown model {name!r} ({', '.join(NAMES)}, a path or a hub id ORG/NAME)")


def check_model(name: str) -> None:
    """Raise the error loading `name` would give, from configs and file headers only (no weights loaded)."""
    check_name(name)
    if name == "tiny":
        from promptlab.models.files import safetensors_header
        from promptlab.models.tiny import WEIGHTS, weights_path

        path = weights_path()
        if path is not None and path.exists():
            safetensors_header(path)
        elif path is not None and path != WEIGHTS:
            raise MissingWeightsError(f"PROMPTLAB_TINY points to {path}, which does not exist")
    elif name == "tiny2":
        from promptlab.models import taef2
        from promptlab.models.files import safetensors_header

        for path in (taef2.ENCODER_FILE, taef2.DECODER_FILE):
            if not path.is_file():
                raise MissingWeightsError(f"tiny2 needs {path}, which is missing from this install")
            safetensors_header(path)
    elif name != "sd-turbo-arch":
        from promptlab.models.sd_files import locate

        loc = locate(None if name == "sd-turbo" else name)
        if not loc.ok:
            raise loc.error()


def model_fingerprint(name: str) -> str:
    """What Model.fingerprint will be once `name` is loaded, without loading it ("unavailable" if it cannot load)."""
    if name == "tiny":
        from promptlab.models.tiny import weights_fingerprint

        return weights_fingerprint()
    if name == "tiny2":
        from promptlab.models.tiny2 import fingerprint

        return fingerprint()
    if name == "sd-turbo-arch":
        from promptlab.models.sd_turbo import arch_fingerprint

        return arch_fingerprint()
    if name != "sd-turbo" and not is_source(name):
        return "unknown"
    from promptlab.models.files import fingerprint
    from promptlab.models.sd_files import locate

    try:
        loc = locate(None if name == "sd-turbo" else name)
        return fingerprint(loc.weights()) if loc.ok else "unavailable"
    except OSError:
        return "unavailable"


def available_models() -> list[tuple[str, bool, str]]:
    """(name, available, reason) for each built-in name, from configs and file headers (no weights loaded)."""
    from promptlab.models.sd_files import locate
    from promptlab.models.tiny import weights_info

    out: list[tuple[str, bool, str]] = []
    try:
        check_model("tiny")
        out.append(("tiny", True, weights_info()))
    except PromptlabError as exc:
        out.append(("tiny", False, str(exc)))
    try:
        check_model("tiny2")
        out.append(("tiny2", True, "built in: TAEF2's pretrained decoder, prompt = low-rank latent code"))
    except PromptlabError as exc:
        out.append(("tiny2", False, str(exc)))
    loc = locate()
    out.append(("sd-turbo", loc.ok, f"loads from {loc.source}" if loc.ok else "; ".join(loc.invalid + loc.missing)))
    out.append(("sd-turbo-arch", True, "architecture only (random weights), for benchmarks"))
    return out
