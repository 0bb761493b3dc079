import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from promptlab.codec.quant import RunningRange, dequantize, fake_quant, qparams, quantize

arrays = st.integers(1, 64).flatmap(
    lambda r: st.lists(st.floats(-50, 50, allow_nan=False, width=32), min_size=r, max_size=4 * r)
)


@settings(max_examples=200, deadline=None)
@given(values=arrays, bits=st.integers(2, 8))
def test_quantiser_roundtrip_error_within_half_step(values, bits):
    x = torch.tensor(values, dtype=torch.float32)
    rr = RunningRange(bits)
    qp = rr.update(x)
    q = quantize(x, qp)
    assert q.dtype == torch.uint8
    assert int(q.max()) <= (1 << bits) - 1
    err = (dequantize(q, qp) - x).abs().max().item()
    # the zero-point is rounded, which can shift the grid by up to half a step at the range ends
    assert err <= qp.scale * 1.0 + 1e-5
    # quantising the dequantised values is a fixed point
    assert torch.equal(quantize(dequantize(q, qp), qp), q)


def test_reference_arithmetic_example():
    qp = qparams(-1.0, 3.0, 8)
    assert np.float32(qp.scale) == np.float32(4.0 / 255)
    assert qp.zero_point == round(255 - 3.0 / (4.0 / 255))
    assert quantize(torch.tensor([0.0]), qp).item() == qp.zero_point


def test_running_range_only_grows():
    rr = RunningRange()
    rr.update(torch.tensor([0.5, 1.0]))
    assert rr.state() == (0.0, 1.0)  # min clamped to <= 0
    rr.update(torch.tensor([-2.0, 0.1]))
    assert rr.state() == (-2.0, 1.0)
    rr.update(torch.tensor([0.0]))
    assert rr.state() == (-2.0, 1.0)


def test_fake_quant_straight_through_gradient():
    x = torch.linspace(-1, 1, 11, requires_grad=True)
    qp = qparams(-1, 1, 3)
    y = fake_quant(x, qp)
    assert torch.equal(y.detach(), dequantize(quantize(x.detach(), qp), qp))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
