"""The first answer: each segment from the prompt encoder's guess at once, then the fit refines it.

The model is a fake: a miniature of the built-in architecture with a prompt encoder and seeded
random weights (the test checks the order of records and the bytes, not quality).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from promptlab.engine import records
from promptlab.engine.encoder import encode
from promptlab.errors import PromptlabError
from promptlab.gui.state import LabState
from promptlab.runs.lab import RunSpec, run_lab
from promptlab.runs.records import FrameResult, Progress, Saved
from promptlab.settings import Settings


@pytest.fixture
def fake(monkeypatch):
    """Every model load of the run gives the miniature with a prompt encoder."""
    from test_train_tiny import mini_config

    from promptlab.models import registry
    from promptlab.models.tiny import build_trained, trained_model

    cfg = mini_config()
    m = trained_model(build_trained(cfg, seed=5), cfg, "mini", torch.device("cpu"), torch.float32)
    monkeypatch.setattr(registry, "load_model", lambda *a, **k: m)
    return m


S = dict(size=64, rank=2, interval=5, iters=2, first_iters=3, perceptual="none", fps=30.0, threads=1)


def test_drafts_come_first_are_replaced_and_leave_the_stream_unchanged(tmp_path: Path, make_clip, ramp, fake,
                                                                       lab_dirs) -> None:
    clip = make_clip(tmp_path / "ramp.mkv", ramp(7, 64, 64))
    s = Settings(start="amortised", **S)
    recs = list(run_lab(RunSpec(settings=s, source=str(clip), cache_root=str(tmp_path / "a"))))
    enc = [(i, r) for i, r in enumerate(recs) if isinstance(r, FrameResult) and r.stage == "encode"]
    iters = [i for i, r in enumerate(recs) if isinstance(r, Progress) and " iteration " in r.text]
    # the very first frame shown is a draft, before any iteration of any fit
    assert enc[0][1].draft and enc[0][0] < iters[0]
    drafts = {r.index: i for i, r in enc if r.draft}
    fitted = {r.index: i for i, r in enc if not r.draft}
    assert sorted(drafts) == sorted(fitted) == list(range(7))
    for f in range(7):  # each frame's draft precedes its keyframe's iterations and its fitted frame
        assert drafts[f] < fitted[f]
    for k, seg in enumerate(([0], [1, 2, 3, 4, 5], [6])):
        k_iters = [i for i in iters if recs[i].text.startswith(f"keyframe {k + 1}/")]
        assert max(drafts[f] for f in seg) < min(k_iters)
    d = next(r for _, r in enc if r.draft)
    assert d.bytes == 0.0 and d.lpips is not None and d.image.shape == (64, 64, 3)
    # the window's state keeps the last frame of an index: the fitted one replaces the draft
    state = LabState()
    for r in recs:
        state.apply(r)
    assert not any(r.draft for r in state.rows.values())
    # a run without the first answer writes the very same stream
    plain = list(run_lab(RunSpec(settings=s, source=str(clip), cache_root=str(tmp_path / "b"), first_answer=False)))
    assert not any(isinstance(r, FrameResult) and r.draft for r in plain)
    a = next(r for r in recs if isinstance(r, Saved)).path
    b = next(r for r in plain if isinstance(r, Saved)).path
    assert (Path(a) / "stream.plab").read_bytes() == (Path(b) / "stream.plab").read_bytes()


def test_no_draft_without_the_prompt_encoders_start(tmp_path: Path, make_clip, ramp, fake) -> None:
    clip = make_clip(tmp_path / "ramp.mkv", ramp(3, 64, 64))
    s = Settings(start="uniform", **{**S, "interval": 3})
    out = list(encode(clip, s, tmp_path / "u.plab", model=fake, first_answer=True))
    assert not any(isinstance(r, records.Frame) and r.draft for r in out)


def test_zero_iterations_send_the_guess_unrefined(tmp_path: Path, make_clip, ramp, fake) -> None:
    """0 iterations: no fit, no draft (the fitted frame is the guess itself), and the frames equal
    the first answer of a refined run; without a prompt encoder, a one-line refusal before any write."""
    clip = make_clip(tmp_path / "ramp.mkv", ramp(7, 64, 64))
    zero = Settings(start="amortised", **{**S, "iters": 0, "first_iters": 0})
    out = list(encode(clip, zero, tmp_path / "z.plab", model=fake, first_answer=True))
    assert not any(isinstance(r, records.Iteration) for r in out)
    frames = {r.index: r.image for r in out if isinstance(r, records.Frame)}
    assert not any(r.draft for r in out if isinstance(r, records.Frame)) and sorted(frames) == list(range(7))
    done = [r for r in out if isinstance(r, records.KeyframeDone)]
    assert len(done) == 3 and all(r.loss == r.first_loss and r.loss > 0 for r in done)
    refined = list(encode(clip, Settings(start="amortised", **S), tmp_path / "r.plab", model=fake, first_answer=True))
    drafts = {r.index: r.image for r in refined if isinstance(r, records.Frame) and r.draft}
    # the draft is generated from the unquantised guess, the unrefined code from its 8-bit factors
    assert all(abs(frames[i].astype(int) - drafts[i].astype(int)).mean() < 3 for i in range(7))
    assert (tmp_path / "z.plab").read_bytes() != (tmp_path / "r.plab").read_bytes()
    with pytest.raises(PromptlabError, match="no prompt encoder|0 iterations"):
        list(encode(clip, zero.replace(start="uniform"), tmp_path / "u.plab", model=fake))
    assert not (tmp_path / "u.plab").exists()
