"""Optional packages: which command needs which, and the one line that says what to install.

The core (encode, decode, the lab, metrics) needs none of them; each belongs to a pip extra
declared in pyproject.toml, so `doctor` lists them apart and a command that needs one says so
in one line before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec

from promptlab.errors import PromptlabError


@dataclass(frozen=True)
class OptionalPackage:
    dist: str      # the name pip installs
    module: str    # the name Python imports
    extra: str     # promptlab[extra] pulls it in
    needed_by: str


OPTIONAL = (
    OptionalPackage("transformers", "transformers", "bench", "promptlab bench (the diffusers pipeline it times)"),
    OptionalPackage("scikit-image", "skimage", "train", "promptlab train-tiny (its training photographs)"),
    OptionalPackage("vmaf-torch", "vmaf_torch", "vmaf", "VMAF (--vmaf; the v0.6.1 model it carries)"),
    OptionalPackage("ray", "ray", "ray", "--engine ray (encode and sweep on Ray workers)"),
)


def install_hint(extra: str) -> str:
    return f'pip install "promptlab[{extra}]"'


def require(dist: str) -> None:
    """Raise a one-line PromptlabError naming the extra to install when `dist` is not importable."""
    opt = next(o for o in OPTIONAL if o.dist == dist)
    if find_spec(opt.module) is None:
        raise PromptlabError(f"{opt.needed_by} needs {opt.dist}, which is not installed: {install_hint(opt.extra)}")
