import math

import pytest
import torch

from promptlab.codec.prompt import compose, init_factors, interpolate
from promptlab.codec.schedule import keyframes, segment_of, segments
from promptlab.errors import PromptlabError


def test_compose_is_scaled_product():
    g = torch.Generator().manual_seed(0)
    u, v = init_factors(4, 16, g)
    assert u.shape == (77, 4) and v.shape == (4, 16)
    assert 0 <= float(u.min()) and float(u.max()) < 1
    torch.testing.assert_close(compose(u, v), u @ v / 2.0)
    with pytest.raises(PromptlabError):
        compose(u, v.T)


@pytest.mark.parametrize("mode", ["factors", "linear", "slerp"])
def test_interpolation_hits_endpoints(mode):
    g = torch.Generator().manual_seed(1)
    u0, v0 = init_factors(3, 8, g)
    u1, v1 = init_factors(3, 8, g)
    c = interpolate(u0, v0, u1, v1, torch.tensor([0.0, 1.0]), mode)
    torch.testing.assert_close(c[0], compose(u0, v0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c[1], compose(u1, v1), atol=1e-5, rtol=1e-5)


def test_factor_interpolation_is_quadratic_not_linear():
    g = torch.Generator().manual_seed(2)
    u0, v0 = init_factors(2, 8, g)
    u1, v1 = init_factors(2, 8, g)
    a = torch.tensor([0.5])
    mid_f = interpolate(u0, v0, u1, v1, a, "factors")[0]
    mid_l = interpolate(u0, v0, u1, v1, a, "linear")[0]
    expected = compose((u0 + u1) / 2, (v0 + v1) / 2)
    torch.testing.assert_close(mid_f, expected)
    assert not torch.allclose(mid_f, mid_l)


def test_slerp_keeps_interpolated_norm():
    # rank-1 factors: every token is (1, 0) at a=0 and (0, 3) at a=1
    u0 = torch.ones(77, 1)
    v0 = torch.tensor([[1.0, 0.0]])
    v1 = torch.tensor([[0.0, 3.0]])
    c = interpolate(u0, v0, u0, v1, torch.tensor([0.5]), "slerp")[0, 0]
    assert math.isclose(float(c.norm()), 2.0, rel_tol=1e-5)
    assert math.isclose(float(c[0]), float(c[1]), rel_tol=1e-4)  # halfway in angle


def test_schedule_covers_every_frame_once():
    assert keyframes(141, 10) == list(range(0, 141, 10))
    assert keyframes(45, 10) == [0, 10, 20, 30, 40, 44]
    assert keyframes(1, 10) == [0]
    for n, k in [(1, 10), (41, 10), (45, 10), (7, 3), (10, 1)]:
        covered = [f for s in segments(n, k) for f in s.frames]
        assert covered == list(range(n))
        for s in segments(n, k):
            a = s.alphas()
            assert len(a) == s.length and float(a[-1]) == 1.0
    for n, k in ((1, 1), (7, 3), (41, 10), (40, 10), (12, 100)):
        segs = segments(n, k)
        assert [segment_of(f, n, k) for f in range(n)] == [s for s in segs for _ in s.frames]
    seg = segment_of(15, 41, 10)
    assert (seg.index, seg.start, seg.keyframe) == (2, 11, 20)
    assert [round(float(x), 3) for x in seg.alphas()[:2]] == [0.1, 0.2]
    with pytest.raises(PromptlabError):
        keyframes(0, 10)
