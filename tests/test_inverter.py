"""The inverter: loss falls, rank helps, cancel works, fits are deterministic, both modes run."""

from __future__ import annotations

import threading

import pytest
import torch

from promptlab.codec.schedule import segments
from promptlab.engine import records
from promptlab.engine.encoder import to_tensor
from promptlab.engine.generator import fixed_noise, segment_input
from promptlab.engine.inverter import fit_segment
from promptlab.engine.losses import make_loss
from promptlab.errors import Cancelled
from promptlab.models import load_model
from promptlab.settings import Settings


@pytest.fixture(scope="module")
def setup(sky_frames):
    from promptlab.io.video import read_frames

    torch.set_num_threads(2)
    model = load_model("tiny", "cpu")
    targets = to_tensor(list(read_frames(sky_frames, frames=(0, 4), size=64)))
    z = segment_input(model.encode_init(targets[:1]), fixed_noise(88, (1, 4, 8, 8)), 0.05)
    return model, targets, z


def run(gen):
    items = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as stop:
            return stop.value, items


def fit0(setup, **kw):
    model, targets, z = setup
    s = Settings(size=64, first_iters=kw.pop("iters", 30), first_patience=10, perceptual="ms-ssim", **kw)
    return run(fit_segment(model, segments(1, 10)[0], targets[:1], z, None, s, make_loss(s, model.device)))


@pytest.mark.slow
def test_rank16_beats_rank2_at_equal_iterations(setup) -> None:
    lo, _ = fit0(setup, rank=2)
    hi, _ = fit0(setup, rank=16)
    assert hi.loss < lo.loss
    assert lo.loss < lo.first_loss and hi.loss < hi.first_loss


def test_fit_is_deterministic_and_yields_iterations(setup) -> None:
    a, its = fit0(setup, iters=6)
    b, _ = fit0(setup, iters=6)
    assert torch.equal(a.record.u, b.record.u) and torch.equal(a.record.v, b.record.v)
    assert [i.iteration for i in its] == list(range(1, 7))
    assert all(isinstance(i, records.Iteration) and i.best_loss <= i.loss + 1e-12 for i in its)
    assert a.loss == min(i.loss for i in its)
    assert a.record.u.dtype == torch.uint8 and a.record.u.shape == (77, 8)


@pytest.mark.slow
def test_later_keyframe_sequential_dynamic_mode(setup) -> None:
    model, targets, z = setup
    s = Settings(size=64, rank=4, iters=3, perceptual="none", batched=False, dynamic=True)
    seg = segments(4, 3)[1]  # frames 1..3
    prev = (torch.rand(77, 4), torch.rand(4, model.context_dim))
    fit, its = run(fit_segment(model, seg, targets[1:4], z, prev, s, make_loss(s, model.device), recon_every=3))
    assert len(its) == 3 and len(its[0].frame_losses) == 3
    assert its[-1].recon is not None and its[-1].recon.shape == (3, 64, 64, 3)
    assert fit.iterations == 3


def test_cancel_stops_within_one_iteration(setup) -> None:
    model, targets, z = setup
    s = Settings(size=64, first_iters=50, perceptual="none")
    ev = threading.Event()
    gen = fit_segment(model, segments(1, 10)[0], targets[:1], z, None, s, make_loss(s, model.device), cancel=ev)
    next(gen)
    ev.set()
    with pytest.raises(Cancelled):
        next(gen)


@pytest.mark.slow
def test_plateau_halves_lr(setup) -> None:
    _, its = fit0(setup, iters=12, lr=5.0, lr_min=0.5)
    # lr 5 is far too large: the best loss stalls, so the schedule must have lowered it
    assert its[-1].lr < 5.0 and its[-1].lr >= 0.5


def test_lpips_perceptual_term_is_the_real_lpips_vgg() -> None:
    """`perceptual="lpips"` resolves to LPIPS-VGG (weights fetched) and its term is the real LPIPS."""
    from promptlab.engine.losses import make_loss, resolve_perceptual
    from promptlab.metrics.perceptual import load_lpips

    assert resolve_perceptual("lpips") == "lpips"
    loss = make_loss(Settings(perceptual="lpips", w_mse=0.0, w_reg=0.0, w_perceptual=1.0), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    ref = load_lpips("vgg")(a, b).view(-1)
    assert torch.allclose(loss(a, b, torch.zeros(2, 77, 8)), ref)
    assert torch.allclose(loss(a, a, torch.zeros(2, 77, 8)), torch.zeros(2), atol=1e-6)
