"""LPIPS built only from real weights: the lpips package's heads + a verified backbone file.

lpips.LPIPS would otherwise ask torchvision to download the backbone (which fails offline,
or silently uses random weights with pnet_rand). We construct it with an uninitialised
backbone and then load every backbone tensor from the cache file, strictly, so an LPIPS
number is either real or not produced at all.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import torch

from promptlab.errors import MissingWeightsError
from promptlab.metrics.weights import check_net, load_backbone_state


def load_lpips(net: str = "alex", device: str | torch.device = "cpu"):  # -> lpips.LPIPS
    """An eval-mode, frozen LPIPS v0.1 model; MissingWeightsError (with the fix) if weights are absent."""
    check_net(net)
    state = load_backbone_state(net)  # raises first, before building anything
    try:
        import lpips
    except ImportError as exc:
        raise MissingWeightsError(f"the lpips package is not installed ({exc}); pip install lpips") from None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    target = model.net.state_dict()
    mapped = {}
    for key in target:
        src = "features." + key.split(".", 1)[1]  # "slice2.3.weight" -> "features.3.weight"
        if src not in state or state[src].shape != target[key].shape:
            raise MissingWeightsError(f"LPIPS-{net} backbone file does not match ({src}); re-run fetch-weights")
        mapped[key] = state[src]
    if len(mapped) != len(state):
        raise MissingWeightsError(f"LPIPS-{net} backbone file has {len(state)} tensors, expected {len(mapped)}")
    model.net.load_state_dict(mapped, strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device)


def to_lpips_tensor(frames: np.ndarray | list[np.ndarray], device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 RGB (H, W, 3) or (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1], the LPIPS input range."""
    a = np.stack(frames) if isinstance(frames, list) else np.asarray(frames)
    if a.ndim == 3:
        a = a[None]
    t = torch.from_numpy(np.ascontiguousarray(a)).to(device).permute(0, 3, 1, 2).float()
    return t / 127.5 - 1.0
