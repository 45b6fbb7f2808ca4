import math

import numpy as np
import pytest
import torch

from bottlenecks.info import pairwise_information_bounds


def mixture_mi_numeric(centres, s2):
    """I(X;T) for T = c_X + N(0, s2), X uniform over 1-D centres, by quadrature (nats)."""
    grid = np.linspace(centres.min() - 12 * math.sqrt(s2), centres.max() + 12 * math.sqrt(s2), 200_001)
    dens = np.exp(-(grid[:, None] - centres[None, :]) ** 2 / (2 * s2)).mean(1) / math.sqrt(2 * math.pi * s2)
    h_t = -np.trapezoid(dens * np.log(np.maximum(dens, 1e-300)), grid)
    return h_t - 0.5 * math.log(2 * math.pi * math.e * s2)


@pytest.mark.parametrize("s2", [0.1, 1.0, 4.0])
def test_bounds_sandwich_the_true_value(s2):
    centres = np.array([-1.0, 0.0, 0.3, 2.0])
    true = mixture_mi_numeric(centres, s2)
    b = pairwise_information_bounds(centres, s2, units="nats")
    assert b["i_xt_lower"] <= true + 1e-9 <= b["i_xt_upper"] + 2e-9
    assert 0 <= b["i_xt_lower"] <= b["i_xt_upper"] <= math.log(4) + 1e-12


def test_limits_and_units():
    t = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    tiny = pairwise_information_bounds(t, 1e-8)
    assert tiny["i_xt_upper"] == pytest.approx(6.0, abs=1e-9)  # log2(64): all components separated
    assert tiny["i_xt_lower"] == pytest.approx(6.0, abs=1e-6)
    huge = pairwise_information_bounds(t, 1e8)
    assert huge["i_xt_upper"] < 1e-6
    nats = pairwise_information_bounds(t, 0.5, units="nats")
    bits = pairwise_information_bounds(t, 0.5)
    assert bits["i_xt_upper"] == pytest.approx(nats["i_xt_upper"] / math.log(2))


def test_label_information_and_chunking():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 50)
    t = np.where(y[:, None] == 1, 100.0, -100.0) + rng.standard_normal((100, 2))
    b = pairwise_information_bounds(t, 0.01, y=y)
    # classes are far apart: I(T;Y) = H(Y) = 1 bit for both mixture-entropy estimates
    assert b["i_ty_kl"] == pytest.approx(1.0, abs=1e-6)
    assert b["i_ty_bd"] == pytest.approx(1.0, abs=1e-6)
    small = pairwise_information_bounds(t, 0.01, y=y, max_memory=8 * 100 * 3 * 7)
    for key in b:
        assert small[key] == pytest.approx(b[key], abs=1e-10)


def test_errors():
    with pytest.raises(ValueError, match="noise_var"):
        pairwise_information_bounds(np.zeros((5, 2)), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        pairwise_information_bounds(np.array([[0.0], [np.nan]]), 1.0)
    with pytest.raises(ValueError, match="same number of samples"):
        pairwise_information_bounds(np.zeros((5, 2)), 1.0, y=np.zeros(4))
