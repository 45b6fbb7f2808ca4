import math

import numpy as np
import pytest
import torch

from bottlenecks.info import Critic, neural_mutual_information
from bottlenecks.info.neural import bound


def gaussian(n, rho, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1))
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, 1)), -0.5 * math.log(1 - rho**2)


@pytest.mark.parametrize("method, critic", [("infonce", "separable"), ("nwj", "separable"), ("mine", "separable"),
                                            ("infonce", "concat")])
def test_lower_bounds_on_correlated_gaussian(method, critic):
    x, y, true = gaussian(1000, 0.8, seed=0)
    res = neural_mutual_information(x, y, method=method, critic=critic, hidden=32, epochs=20, batch_size=64, lr=5e-3,
                                    seed=1)
    # a lower bound, up to held-out sampling noise; a 20-epoch critic gets most of the way
    assert 0.5 * true < res.estimate < true + 0.1
    assert res.n_test == 300 and res.n_train == 700 and res.epochs_run == 20
    assert all("test" not in key for entry in res.history for key in entry)


def test_seeded_and_independent_data_near_zero():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((1000, 2)), rng.standard_normal((1000, 1))
    a = neural_mutual_information(x, y, hidden=32, epochs=10, seed=3)
    b = neural_mutual_information(torch.from_numpy(x), y, hidden=32, epochs=10, seed=3)
    assert a.estimate == b.estimate
    assert a.estimate < 0.05  # held-out: over-fitting the training pairs does not show up as information


def test_early_stopping_uses_validation_split():
    x, y, _ = gaussian(800, 0.6, seed=4)
    res = neural_mutual_information(x, y, method="nwj", hidden=16, epochs=40, batch_size=64, early_stopping=True,
                                    patience=3, seed=0, units="bits")
    assert res.best_epoch is not None and res.epochs_run <= 40
    assert all("val_bound" in entry for entry in res.history)
    assert res.best_epoch == int(np.argmax([entry["val_bound"] for entry in res.history]))
    assert res.n_train + res.n_test < 800 and res.units == "bits"


def test_bound_values_for_known_scores():
    # scores that ignore y carry no information: every bound is <= 0 (InfoNCE exactly 0)
    s = torch.arange(4.0).repeat(4, 1)
    s = s.T.contiguous()  # S_ij = i
    assert float(bound(s, "infonce")) == pytest.approx(0.0, abs=1e-6)
    assert float(bound(s, "mine")) <= 1e-6
    # perfectly separating scores: InfoNCE reaches log B
    big = torch.eye(8) * 50
    assert float(bound(big, "infonce")) == pytest.approx(math.log(8), abs=1e-6)


def test_critic_shapes_and_errors():
    for kind in ("separable", "concat"):
        c = Critic(3, 2, hidden=8, kind=kind)
        x, y = torch.randn(4, 3), torch.randn(4, 2)
        s = c.scores(x, y)
        assert s.shape == (4, 4) and c(x, y).shape == (4,)
        assert torch.allclose(s.diagonal(), c(x, y), atol=1e-6)  # matched pairs are the diagonal
        assert "hidden=8" in repr(c) and kind in repr(c)
    with pytest.raises(ValueError, match="method"):
        neural_mutual_information(np.zeros((10, 1)), np.zeros((10, 1)), method="dv")
    with pytest.raises(ValueError, match="same number of samples"):
        neural_mutual_information(np.zeros((10, 1)), np.zeros((9, 1)))
    with pytest.raises(ValueError, match="test_fraction"):
        neural_mutual_information(np.zeros((10, 1)), np.zeros((10, 1)), test_fraction=1.0)
