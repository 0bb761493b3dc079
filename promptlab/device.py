"""Device, dtype and thread selection: one place that decides where tensors live and how many threads run.

`auto` prefers CUDA, then Apple MPS, then CPU. fp16 on CPU is refused with a clear message
(most CPU kernels lack it and the ones that exist are slower than fp32); bf16 works on CPU.
Below the models, the engines and the metrics, which all ask it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from promptlab.errors import PromptlabError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    """Turn 'auto' | 'cpu' | 'cuda[:N]' | 'mps' into a torch.device that exists here."""
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise PromptlabError(f"unknown device {device!r} (auto, cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PromptlabError("device cuda requested but no CUDA GPU is available (use --device cpu)")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise PromptlabError("device mps requested but Apple MPS is not available (use --device cpu)")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise PromptlabError(f"unsupported device {device!r} (auto, cpu, cuda, mps)")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Map 'fp32' | 'bf16' | 'fp16' to a torch dtype, refusing fp16 on CPU."""
    if dtype not in DTYPES:
        raise PromptlabError(f"unknown dtype {dtype!r} (fp32, bf16, fp16)")
    if dtype == "fp16" and device.type == "cpu":
        raise PromptlabError("fp16 is not supported on CPU (use --dtype fp32 or bf16)")
    return DTYPES[dtype]


TORCH_DEFAULT_THREADS = torch.get_num_threads()  # this machine's default, before anything changes it


def default_threads() -> int:
    """What `threads=0` means for every front end (CLI and GUI alike): torch's default on this machine.

    One rule matters because a decode's frames depend on it in the last bit (CPU kernels split
    their sums by thread count; docs/reliability.md states the bound); an encode's bytes do not
    (fixed_threads).
    """
    return TORCH_DEFAULT_THREADS


FIT_THREADS = 1  # the intra-op thread count of every computation a stream's bytes depend on


@contextlib.contextmanager
def fixed_threads(n: int = FIT_THREADS) -> Iterator[None]:
    """Run the block at exactly `n` torch intra-op threads, then restore the count in use.

    Why: the model's CPU kernels (oneDNN) pick their blocking and split their sums by the thread
    count, so a forward pass at 1 and at 2 threads differs in the last bits, and gradient descent
    carries that into the fitted prompts. At one fixed count the kernels run the same
    instructions on any machine setting (`--threads`, a Ray worker's OMP_NUM_THREADS), so the
    stream's bytes cannot depend on it. Keep yields outside the block: the count is process-wide.
    """
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def set_threads(n: int) -> int:
    """Set torch's intra-op thread count; 0 leaves it as it is (in a fresh process: default_threads()).

    Returns the count in use.
    """
    if n < 0:
        raise PromptlabError(f"threads must be >= 0, got {n}")
    if n > 0:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def describe(device: torch.device) -> str:
    """A short human name for a device, for progress lines and reports."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
