"""Interop with the reference Promptus files (frame_NNNNN.prompt + init.pth), tensors only.

The reference writes raw torch pickles. A receiver must never run code from a file it was
sent, so these are read with torch's weights-only unpickler (tensors and plain containers
only), bounded in size, and validated field by field before use.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from promptlab.codec.container import KeyframeRecord, Stream, StreamHeader
from promptlab.codec.quant import QParams
from promptlab.errors import PromptlabError

PROMPT_RE = re.compile(r"^frame_(\d{1,9})\.prompt$")
MAX_FILE_BYTES = 64 << 20
KEYS = ("U", "V", "U_scale", "U_zero_point", "V_scale", "V_zero_point")
REFERENCE_MODEL = "sd-turbo"


def safe_load(path: Path) -> object:
    """torch.load restricted to tensors; any pickled code is refused before it can run."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PromptlabError(f"cannot read {path}: {exc.strerror}") from None
    if size > MAX_FILE_BYTES:
        raise PromptlabError(f"{path.name} is {size} bytes: too large for a prompt file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, zipfile errors, EOFError...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PromptlabError(f"{path.name} is not a safe tensor file and was refused ({reason[:200]})") from None


def _scalar(d: dict, key: str, name: str) -> float:
    t = d[key]
    if not isinstance(t, torch.Tensor) or t.numel() != 1 or not t.dtype.is_floating_point:
        raise PromptlabError(f"{name}: {key} must be a one-element float tensor")
    v = float(t.reshape(-1)[0].to(torch.float32))
    if not math.isfinite(v):
        raise PromptlabError(f"{name}: {key} is not finite")
    return v


def read_prompt(path: Path) -> KeyframeRecord:
    d = safe_load(path)
    if not isinstance(d, dict) or any(k not in d for k in KEYS):
        raise PromptlabError(f"{path.name}: expected a dict with {', '.join(KEYS)}")
    u, v = d["U"], d["V"]
    for key, t in (("U", u), ("V", v)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.dim() != 2:
            raise PromptlabError(f"{path.name}: {key} must be a 2-D uint8 tensor")
    if u.shape[1] != v.shape[0]:
        raise PromptlabError(f"{path.name}: U {tuple(u.shape)} and V {tuple(v.shape)} ranks differ")
    return KeyframeRecord(
        u=u.contiguous().clone(), v=v.contiguous().clone(),
        u_qp=QParams(_scalar(d, "U_scale", path.name), _scalar(d, "U_zero_point", path.name), 8),
        v_qp=QParams(_scalar(d, "V_scale", path.name), _scalar(d, "V_zero_point", path.name), 8),
    )


def import_dir(folder: str | Path, fps: float = 30.0, model: str = REFERENCE_MODEL) -> tuple[StreamHeader, torch.Tensor, list[KeyframeRecord]]:
    """Read a reference prompt folder; the keyframe interval comes from the file numbers."""
    d = Path(folder)
    if not d.is_dir():
        raise PromptlabError(f"no such folder: {d}")
    found = sorted((int(m.group(1)), p) for p in d.iterdir() if (m := PROMPT_RE.match(p.name)))
    if not found:
        raise PromptlabError(f"{d} holds no frame_NNNNN.prompt files")
    numbers = [n for n, _ in found]
    if numbers[0] != 0:
        raise PromptlabError(f"the first prompt must be frame_00000.prompt, found frame {numbers[0]}")
    steps = {b - a for a, b in zip(numbers, numbers[1:])}
    if len(numbers) > 1 and len(steps) != 1:
        raise PromptlabError(f"prompt frame numbers are not evenly spaced: {sorted(steps)}")
    interval = steps.pop() if numbers[1:] else 1
    if interval < 1 or interval > 65535:
        raise PromptlabError(f"keyframe interval {interval} is out of range")
    init_path = d / "init.pth"
    if not init_path.is_file():
        raise PromptlabError(f"{d} has no init.pth (the first-frame latent the receiver needs)")
    init = safe_load(init_path)
    if not isinstance(init, torch.Tensor) or init.dim() != 4 or init.shape[0] != 1 or not init.dtype.is_floating_point:
        raise PromptlabError("init.pth must hold one float tensor [1, C, H/8, W/8]")
    if not torch.isfinite(init).all():
        raise PromptlabError("init.pth holds non-finite values")
    records = [read_prompt(p) for _, p in found]
    rank, dim, tokens = records[0].u.shape[1], records[0].v.shape[1], records[0].u.shape[0]
    for (n, _), r in zip(found, records):
        if tuple(r.u.shape) != (tokens, rank) or tuple(r.v.shape) != (rank, dim):
            raise PromptlabError(f"frame_{n:05d}.prompt has shapes unlike the first prompt's")
    _, c, lh, lw = init.shape
    header = StreamHeader(
        model=model, width=lw * 8, height=lh * 8, fps=fps, n_frames=numbers[-1] + 1, rank=rank, bits=8,
        interval=interval, seed=88, blend=0.05, context_dim=dim, latent_channels=c,
        latent_h=lh, latent_w=lw, tokens=tokens,
    )
    return header, init.to(torch.float32).contiguous(), records


def export_dir(stream: Stream, folder: str | Path, force: bool = False) -> list[Path]:
    """Write the reference format back; codes, scales and zero-points come out bit-identical."""
    from promptlab.codec.schedule import keyframes
    from promptlab.io.atomic import atomic_dir

    h = stream.header
    if h.n_gops > 1:
        raise PromptlabError(f"the reference format holds one init latent; this stream has {h.n_gops} closed GOPs")
    if h.bits != 8:
        raise PromptlabError(f"the reference format holds 8-bit codes; this stream uses {h.bits} bits")
    if h.interp != "factors":
        raise PromptlabError("the reference format implies factor interpolation; this stream uses " + h.interp)
    frames = keyframes(h.n_frames, h.interval)
    if frames != list(range(0, h.n_frames, h.interval)):
        raise PromptlabError("the reference format needs the last frame on a keyframe (n_frames - 1 divisible by the interval)")
    out = Path(folder)
    if out.exists() and any(out.iterdir()) and not force:
        raise PromptlabError(f"{out} exists and is not empty (use --force to replace it)")
    written = []
    with atomic_dir(out) as tmp:
        for frame, rec in zip(frames, stream.keyframes):
            f32 = torch.float32
            torch.save({
                "U": rec.u.clone(), "V": rec.v.clone(),
                "U_scale": torch.tensor(rec.u_qp.scale, dtype=f32), "U_zero_point": torch.tensor(rec.u_qp.zero_point, dtype=f32),
                "V_scale": torch.tensor(rec.v_qp.scale, dtype=f32), "V_zero_point": torch.tensor(rec.v_qp.zero_point, dtype=f32),
            }, tmp / f"frame_{frame:05d}.prompt")
            written.append(out / f"frame_{frame:05d}.prompt")
        assert stream.init_latent is not None
        torch.save(stream.init_latent.clone(), tmp / "init.pth")
        written.append(out / "init.pth")
    return written
