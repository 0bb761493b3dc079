"""Train the built-in tiny model (tiny-v1) from an offline Dataset.

Two phases, both with fixed step counts and constant learning rates, so the weights after step
k are the same whether a run stops there or continues (a time cap gives a reproducible prefix):

A. Autoencoder: TinyEncoder → 4×16×16 latent → TinyDecoder on 128 px crops (MSE).
B. Generator: the AE encoder is frozen (it makes the targets' latents and the first frame's
   side information); the amortised PromptEncoder maps a target's latent to rank-nested U, V;
   a random rank r ∈ [2, 16] per sample keeps the first r; U, V are fake-quantised to 8 bits
   per tensor (range always containing 0, straight-through) exactly as the inverter does; the
   one-step image comes from the real `engine.generator.forward` with z = 0.05·Z_prev + 0.95·N
   (N fresh noise, Z_prev a neighbouring frame's latent). Clip samples also train
   interpolation-aware prompts: frames 0 and 10 of a clip are encoded, and frame s is generated
   from the factors interpolated at a = s/10. Loss: image MSE + 0.1·latent MSE + w_reg·mean|c|.
   The decoder keeps training at a lower rate.

Determinism: every random draw comes from generators seeded by `seed`; run with the same
thread count for bit-identical weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from promptlab.engine.generator import forward
from promptlab.models.tiny import build_trained, trained_config, trained_model
from promptlab.train.data import CLIP_LEN, Dataset

TOKEN_LR_FACTOR = 5.0


@dataclass
class TrainConfig:
    seed: int = 0
    ae_steps: int = 1200
    steps: int = 2000
    batch: int = 16
    clip_batch: int = 4          # clips per step in phase B (each adds 2 generated frames)
    lr_ae: float = 1e-3
    lr: float = 6e-4
    lr_decoder: float = 1e-4
    min_rank: int = 2
    w_latent: float = 0.1
    w_reg: float = 0.001
    blend: float = 0.05
    minutes: float = 0.0         # wall-clock cap over both phases (0: none)
    init: str = ""               # start from this weights file's modules (new modules start fresh)
    w_lpips: float = 0.0         # weight of an LPIPS term in phase B (0: MSE only)
    lpips_net: str = "vgg"       # its backbone (real weights: fetch-weights lpips)
    config: dict[str, Any] = field(default_factory=trained_config)


@dataclass
class Result:
    modules: dict[str, torch.nn.Module]
    config: dict[str, Any]
    history: list[dict[str, float]]
    ae_steps_done: int
    steps_done: int
    seconds: float
    capped: bool


def to_float(x: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float()
    return (t.movedim(-1, -3) / 127.5) - 1


def fake_quant_batch(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Per-sample asymmetric fake quantisation (range includes 0), straight-through gradient."""
    dims = tuple(range(1, x.dim()))
    lo = x.detach().amin(dim=dims, keepdim=True).clamp(max=0)
    hi = x.detach().amax(dim=dims, keepdim=True).clamp(min=0)
    qmax = 2**bits - 1
    scale = ((hi - lo) / qmax).clamp_min(1e-8)
    zp = torch.round(qmax - hi / scale).clamp(0, qmax)
    q = torch.round(torch.clamp(zp + x / scale, 0, qmax))
    return x + (scale * (q - zp) - x).detach()


def masked_prompt(u: torch.Tensor, v: torch.Tensor, ranks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the first r columns of U / rows of V per sample (others zero); quantise like the inverter."""
    idx = torch.arange(u.shape[-1], device=u.device)
    m = (idx[None, :] < ranks[:, None]).float()
    return fake_quant_batch(u * m[:, None, :]), fake_quant_batch(v * m[:, :, None])


def compose_ranked(u: torch.Tensor, v: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """c = U·V/√r per sample (the zeroed columns contribute nothing)."""
    return (u @ v) / ranks.float().sqrt()[:, None, None]


class Sampler:
    """Seeded batch draws from the dataset (stills and clip frames for phase A, clips for B)."""

    def __init__(self, ds: Dataset, seed: int) -> None:
        self.ds = ds
        self.rng = np.random.RandomState(seed + 1)

    def images(self, n: int) -> np.ndarray:
        nc, ns = self.ds.clips.shape[0] * CLIP_LEN, self.ds.stills.shape[0]
        out = []
        for i in self.rng.randint(0, nc + ns, size=n):
            out.append(self.ds.clips[i // CLIP_LEN, i % CLIP_LEN] if i < nc else self.ds.stills[i - nc])
        return np.stack(out)

    def clips(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, 3, S, S, 3) frames (0, s, CLIP_LEN-1) and the steps s."""
        ci = self.rng.randint(0, self.ds.clips.shape[0], size=n)
        s = self.rng.randint(1, CLIP_LEN - 1, size=n)
        rev = self.rng.rand(n) < 0.5
        out = []
        for c, k, r in zip(ci, s, rev):
            clip = self.ds.clips[c][::-1] if r else self.ds.clips[c]
            out.append(np.stack([clip[0], clip[k], clip[-1]]))
        return np.stack(out), s


def train(ds: Dataset, tc: TrainConfig, log: Callable[[dict[str, float]], None] | None = None,
          checkpoint: Callable[[dict[str, torch.nn.Module], int, int], None] | None = None,
          every: int = 0) -> Result:
    """Run phases A and B (see module doc); returns the trained modules (in train mode).

    `checkpoint(modules, ae_steps_done, steps_done)` is called every `every` phase-B steps.
    """
    t0 = time.perf_counter()
    torch.manual_seed(tc.seed)
    gen = torch.Generator().manual_seed(tc.seed + 2)
    cfg = tc.config
    mods = build_trained(cfg, seed=tc.seed + 3)
    if tc.init:
        load_init(mods, tc.init)
    sampler = Sampler(ds, tc.seed)
    history: list[dict[str, float]] = []
    deadline = t0 + tc.minutes * 60 if tc.minutes > 0 else math.inf
    enc, dec, unet, penc = mods["encoder"], mods["decoder"], mods["unet"], mods["prompt"]
    capped = False

    # phase A: autoencoder
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=tc.lr_ae)
    a_done = 0
    for step in range(1, tc.ae_steps + 1):
        if time.perf_counter() > deadline:
            capped = True
            break
        x = to_float(sampler.images(tc.batch))
        lat = enc(x)
        rec = dec(lat)
        loss = F.mse_loss(rec, x) + 1e-4 * lat.square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        a_done = step
        _record(history, log, {"phase": 0, "step": step, "loss": float(loss.detach()),
                               "psnr": _psnr(rec, x), "t": time.perf_counter() - t0})

    if checkpoint is not None and every:
        checkpoint(mods, a_done, 0)
    # phase B: generator and prompt space
    model = trained_model(mods, cfg, "training", torch.device("cpu"), torch.float32, frozen=False)
    enc.requires_grad_(False).eval()
    # token positions and the latent read-out start at zero and must grow: a faster rate
    tokens = [p for k in ("tokens", "readout") if k in mods for p in mods[k].parameters()]
    rates = (tc.lr, tc.lr_decoder, TOKEN_LR_FACTOR * tc.lr)
    opt = torch.optim.Adam([
        {"params": [*unet.parameters(), *penc.parameters()], "lr": rates[0]},
        {"params": list(dec.parameters()), "lr": rates[1]},
        {"params": tokens, "lr": rates[2]},
    ])
    max_rank = int(cfg["parts"]["max_rank"])
    perceptual = None
    if tc.w_lpips > 0:
        from promptlab.metrics.perceptual import load_lpips

        perceptual = load_lpips(tc.lpips_net)
    b_done = 0
    for step in range(1, tc.steps + 1 if not capped else 1):
        if time.perf_counter() > deadline:
            capped = True
            break
        warm = min(1.0, step / 100)
        for g, base in zip(opt.param_groups, rates):
            g["lr"] = base * warm
        loss, stats = _generator_step(model, sampler, tc, gen, max_rank, perceptual)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        b_done = step
        if checkpoint is not None and every and step % every == 0:
            checkpoint(mods, a_done, step)
        _record(history, log, {"phase": 1, "step": step, "loss": float(loss.detach()), **stats,
                               "t": time.perf_counter() - t0})
    return Result(mods, cfg, history, a_done, b_done, time.perf_counter() - t0, capped)


def load_init(mods: dict[str, torch.nn.Module], path: str) -> None:
    """Warm start: every module the weights file holds is loaded strictly; modules it lacks
    (e.g. token positions added since) keep their fresh initialisation."""
    from safetensors.torch import load_file

    state = load_file(path)
    for name, mod in mods.items():
        sub = {k[len(name) + 1:]: v.float() for k, v in state.items() if k.startswith(name + ".")}
        if sub:
            mod.load_state_dict(sub)


def _generator_step(model: Any, sampler: Sampler, tc: TrainConfig, gen: torch.Generator,
                    max_rank: int, perceptual: Any = None) -> tuple[torch.Tensor, dict[str, float]]:
    enc, penc = model.parts["encoder"], model.parts["prompt"]
    n_single = tc.batch - 2 * tc.clip_batch
    singles = to_float(sampler.images(n_single))
    clips, s = sampler.clips(tc.clip_batch)
    cl = to_float(clips)                                    # (k, 3, 3, S, S)
    k = cl.shape[0]
    with torch.no_grad():
        lat_s = enc(singles)
        lat_c = enc(cl.flatten(0, 1)).view(k, 3, *lat_s.shape[1:])
    r_single = torch.randint(tc.min_rank, max_rank + 1, (n_single,), generator=gen)
    r_clip = torch.randint(tc.min_rank, max_rank + 1, (k,), generator=gen)

    # stills and single frames: their own prompt
    u, v = penc(lat_s)
    u, v = masked_prompt(u, v, r_single)
    c_single = compose_ranked(u, v, r_single)
    # clips: prompts of frames 0 and 10, frame s from interpolated factors, frame 10 from its own
    u2, v2 = penc(torch.cat([lat_c[:, 0], lat_c[:, 2]]))
    r2 = torch.cat([r_clip, r_clip])
    u2, v2 = masked_prompt(u2, v2, r2)
    a = torch.from_numpy(s / (CLIP_LEN - 1)).float()[:, None, None]
    ua, va = (1 - a) * u2[:k] + a * u2[k:], (1 - a) * v2[:k] + a * v2[k:]
    c_mid = compose_ranked(ua, va, r_clip)
    c_key = compose_ranked(u2[k:], v2[k:], r_clip)
    ctx = torch.cat([c_single, c_mid, c_key])
    targets = torch.cat([singles, cl[:, 1], cl[:, 2]])
    lat_t = torch.cat([lat_s, lat_c[:, 1], lat_c[:, 2]])
    # z = blend·Z_prev + (1−blend)·N: Z_prev is a neighbouring latent (a clip's frame 0; a
    # shuffled latent for singles), N fresh noise every step
    prev = torch.cat([lat_s[torch.randperm(n_single, generator=gen)], lat_c[:, 0], lat_c[:, 0]])
    noise = torch.randn(lat_t.shape, generator=gen)
    z = tc.blend * prev + (1 - tc.blend) * noise
    x0, images = forward(model, z, ctx)
    mse = F.mse_loss(images, targets)
    loss = mse + tc.w_latent * F.mse_loss(x0, lat_t) + tc.w_reg * ctx.abs().mean()
    stats = {"mse": float(mse.detach()), "psnr": _psnr(images, targets),
             "c_abs": float(ctx.detach().abs().mean())}
    if perceptual is not None:
        lp = perceptual(images.clamp(-1, 1), targets).mean()
        loss = loss + tc.w_lpips * lp
        stats["lpips"] = float(lp.detach())
    return loss, stats


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.detach().clamp(-1, 1), b).item()
    return 10 * math.log10(4 / max(mse, 1e-12))


def _record(history: list[dict[str, float]], log: Callable[[dict[str, float]], None] | None,
            row: dict[str, float]) -> None:
    history.append(row)
    if log is not None:
        log(row)


def describe(tc: TrainConfig) -> dict[str, Any]:
    """The recipe as plain data (stored in the weights file's metadata)."""
    d = asdict(tc)
    d.pop("config")
    return d
