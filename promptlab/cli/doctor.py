"""list models, weights, codecs and devices, and what is missing"""

from __future__ import annotations

import argparse
import platform
from importlib import metadata


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "MISSING"


def _devices() -> list[str]:
    import torch

    out = [f"cpu ({torch.get_num_threads()} threads)"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            out.append(f"cuda:{i} {torch.cuda.get_device_name(i)}")
    else:
        out.append("cuda: not available")
    mps = getattr(torch.backends, "mps", None)
    out.append("mps: available" if mps is not None and mps.is_available() else "mps: not available")
    return out


def _models() -> list[tuple[str, bool, str]] | str:
    from promptlab.models.registry import available_models

    try:
        return [(str(n), bool(a), str(r)) for n, a, r in available_models()]
    except Exception as exc:  # noqa: BLE001 - doctor must report, never crash
        return f"model registry failed: {type(exc).__name__}: {exc}"


def report() -> tuple[list[str], int]:
    """(lines, number of missing things)."""
    import av

    from promptlab import __version__
    from promptlab.extras import OPTIONAL, install_hint
    from promptlab.metrics.weights import NETS, lpips_status

    missing = 0
    lines = [f"promptlab {__version__} on Python {platform.python_version()} ({platform.platform()})", "",
             "packages:"]
    for dist in ("torch", "torchvision", "diffusers", "av", "lpips", "opencv-python-headless",
                 "numpy", "constriction", "PySide6-Essentials", "pyqtgraph"):
        v = _version(dist)
        missing += v == "MISSING"
        lines.append(f"  {dist:<24} {v}" + ("   fix: pip install " + dist if v == "MISSING" else ""))
    lines += ["", "optional packages (one command each; not counted as missing):"]
    for opt in OPTIONAL:
        v = _version(opt.dist)
        shown = "not installed" if v == "MISSING" else v
        lines.append(f"  {opt.dist:<24} {shown:<14} for {opt.needed_by}: {install_hint(opt.extra)}")
    lines += ["", "devices:"] + [f"  {d}" for d in _devices()]
    lines += ["", "LPIPS weights:"]
    for net in NETS:
        ok, msg = lpips_status(net)
        missing += not ok
        lines.append(f"  [{'ok' if ok else 'missing'}] {msg}")
    lines += ["", "codecs (PyAV/FFmpeg):"]
    for name, role in (("libx265", "H.265 baseline"), ("libx264", "H.264 baseline, .mp4 output"),
                       ("libvpx-vp9", ".webm output"), ("gif", ".gif output")):
        ok = name in av.codecs_available
        missing += not ok and name in ("libx265", "libx264")
        lines.append(f"  [{'ok' if ok else 'missing'}] {name:<12} {role}")
    lines += ["", "models:"]
    models = _models()
    if isinstance(models, str):
        lines.append(f"  {models}")
    else:
        for name, ok, reason in models:
            missing += not ok
            lines.append(f"  [{'ok' if ok else 'missing'}] {name:<16} {reason}")
            if name == "sd-turbo":
                lines += _sd_turbo_routes()
    return lines, missing


def _sd_turbo_routes() -> list[str]:
    """Each configured SD-Turbo route with the files found and why it would not load (configs and headers only)."""
    try:
        from promptlab.models.sd_files import routes

        found = routes()
    except Exception as exc:  # noqa: BLE001 - doctor must report, never crash
        return [f"      route check failed: {type(exc).__name__}: {exc}"]
    out = []
    for loc in found:
        out.append(f"      route {loc.source}: {'loads' if loc.ok else 'would not load'}")
        out += [f"        found   {f}" for f in loc.found]
        out += [f"        missing {m}" for m in loc.missing]
        out += [f"        bad     {b}" for b in loc.invalid]
    if not found or not all(loc.ok for loc in found):
        from promptlab.models.sd_files import HOWTO

        out.append(f"      fix: {HOWTO}")
    return out


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="promptlab doctor", description=__doc__.strip()).parse_args(argv)
    lines, missing = report()
    print("\n".join(lines))
    print("")
    print("everything is in place" if missing == 0 else f"{missing} thing(s) missing; see the fixes above")
    return 0
