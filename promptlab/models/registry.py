"""Model names -> loaders, and what is available on this machine (for the GUI and `doctor`)."""

from __future__ import annotations

from pathlib import Path

from promptlab.engine.runtime import resolve_device, resolve_dtype
from promptlab.errors import PromptlabError
from promptlab.models.base import Model

NAMES = ("tiny", "sd-turbo", "sd-turbo-arch")


def load_model(name: str, device: str = "auto", dtype: str = "fp32") -> Model:
    """Load a model by name (tiny | sd-turbo | sd-turbo-arch) or by path (SD-Turbo from there)."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if name == "tiny":
        from promptlab.models.tiny import load_tiny

        return load_tiny(dev, dt)
    if name == "sd-turbo-arch":
        from promptlab.models.sd_turbo import load_sd_turbo_arch

        return load_sd_turbo_arch(dev, dt)
    if name == "sd-turbo":
        from promptlab.models.sd_turbo import load_sd_turbo

        return load_sd_turbo(dev, dt)
    if "/" in name or "\\" in name or Path(name).suffix or Path(name).exists():
        from promptlab.models.sd_turbo import load_sd_turbo

        if not Path(name).exists():
            raise PromptlabError(f"model path {name} does not exist")
        return load_sd_turbo(dev, dt, source=name)
    raise PromptlabError(f"unknown model {name!r} (tiny, sd-turbo, sd-turbo-arch, or a path)")


def available_models() -> list[tuple[str, bool, str]]:
    """(name, available, reason) for each built-in name, without loading any weights."""
    from promptlab.models.sd_turbo import locate
    from promptlab.models.tiny import weights_path

    out: list[tuple[str, bool, str]] = []
    tiny = weights_path()
    out.append(("tiny", True, f"trained weights {tiny}" if tiny is not None and tiny.exists()
                else "built in (random weights)"))
    _, _, missing = locate()
    out.append(("sd-turbo", not missing, "local weights found" if not missing else "; ".join(missing)))
    out.append(("sd-turbo-arch", True, "architecture only (random weights), for benchmarks"))
    return out
