import math

import torch

from bottlenecks.data.twelve_bit import TWELVE_BIT_N_POSITIVE, load_twelve_bit, twelve_bit_inputs


def _h_bits(y: torch.Tensor) -> float:
    p = float(y.float().mean())
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def test_shapes_and_dtypes():
    x, y = load_twelve_bit()
    assert x.shape == (4096, 12) and x.dtype == torch.float32
    assert y.shape == (4096,) and y.dtype == torch.int64
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert set(y.unique().tolist()) == {0, 1}
    assert len(torch.unique(x, dim=0)) == 4096  # every 12-bit input exactly once


def test_label_entropy_matches_published():
    _, y = load_twelve_bit()
    assert int(y.sum()) == TWELVE_BIT_N_POSITIVE
    assert abs(_h_bits(y) - 0.99916) < 1e-4


def test_signed_and_deterministic():
    x0, y0 = load_twelve_bit()
    xs, ys = load_twelve_bit(signed=True)
    assert torch.equal(xs, 2 * x0 - 1)
    assert torch.equal(ys, y0)
    assert torch.equal(load_twelve_bit()[1], y0)


def test_inputs_are_binary_counting():
    bits = twelve_bit_inputs()
    assert bits[5].tolist() == [0] * 9 + [1, 0, 1]
