import math

import numpy as np
import pytest
import torch

from bottlenecks.info import Critic, DivergenceError, neural_mutual_information
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
                                    seed=1, early_stopping=False)
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


# --- issue 17: right by default ----------------------------------------------------------------

def cauchy_pairs(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1))
    y = 0.6 * x + 0.8 * rng.standard_normal((n, 1))
    w = 1 / np.abs(rng.standard_normal((n, 1)))  # a shared Cauchy-type scale: heavy tails on both sides
    return x * w, y * w


def test_divergence_recovers_with_a_smaller_step():
    # NWJ with lr=1 on heavy-tailed data goes non-finite in its first epoch (a silent NaN before)
    x, y = cauchy_pairs(1000, seed=5)
    res = neural_mutual_information(x, y, method="nwj", hidden=16, epochs=5, lr=1.0, max_restarts=10, seed=0)
    assert res.restarts >= 1 and res.lr == 1.0 / 2**res.restarts
    assert math.isfinite(res.estimate) and math.isfinite(res.train_estimate)
    assert all(math.isfinite(e["train_bound"]) for e in res.history)


def test_divergence_that_persists_raises_a_clear_error():
    x, y = cauchy_pairs(1000, seed=5)  # raw (not scaled, not squashed) heavy tails overflow any step size
    with pytest.raises(DivergenceError, match=r"nwj: critic training diverged .* lower lr.*arcsinh"):
        neural_mutual_information(x, y, method="nwj", hidden=16, epochs=5, lr=1e-2, standardize=False,
                                  squash=False, max_restarts=2, seed=0)


@pytest.mark.parametrize("method", ["infonce", "nwj", "mine"])
def test_heavy_tails_give_a_finite_positive_estimate_at_defaults(method):
    x, y = cauchy_pairs(800, seed=6)
    res = neural_mutual_information(x, y, method=method, hidden=16, epochs=30, seed=0)
    assert math.isfinite(res.estimate) and res.estimate >= 0


def test_early_stopping_is_the_default_and_the_constant_critic_competes():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((400, 30)), rng.standard_normal((400, 30))
    res = neural_mutual_information(x, y, method="nwj", hidden=32, seed=0)
    assert all("val_bound" in e for e in res.history)  # a validation split picked the critic
    # independent data: no critic beats the constant one on validation, so the estimate is exactly 0
    assert max(e["val_bound"] for e in res.history) <= 0
    assert res.estimate == 0.0 and res.best_epoch is None


def test_default_protocol_does_not_overfit_into_negative_estimates():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1500, 25))
    y = 0.5 * x + math.sqrt(0.75) * rng.standard_normal((1500, 25))
    res = neural_mutual_information(x, y, hidden=32, epochs=60, seed=0)
    assert res.best_epoch is not None and res.best_epoch < res.epochs_run
    assert 0 < res.estimate < res.train_estimate  # held-out below training, but positive


def test_preprocessing_is_invariant_to_monotone_affine_maps():
    x, y, _ = gaussian(800, 0.7, seed=9)
    a = neural_mutual_information(x, y, hidden=16, epochs=5, seed=0)
    b = neural_mutual_information(50 * x - 3, y, hidden=16, epochs=5, seed=0)
    assert a.estimate == pytest.approx(b.estimate, abs=1e-4)
