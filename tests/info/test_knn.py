import math

import numpy as np
import pytest
import torch

from bottlenecks.data.twelve_bit import load_twelve_bit
from bottlenecks.info import conditional_mutual_information, entropy, mutual_information
from bottlenecks.info.knn import _count_sorted_1d, _count_within


def gaussian_pairs(n, d, rho, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))
    return x, y, -0.5 * d * math.log(1 - rho**2)


@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("method", ["ksg1", "ksg2"])
def test_tree_and_brute_give_identical_estimates(d, method):
    x, y, _ = gaussian_pairs(800, d, 0.6, seed=d)
    tree = mutual_information(x, y, method=method, algorithm="tree")
    brute = mutual_information(x, y, method=method, algorithm="brute")
    assert tree == brute


def test_tree_counts_match_brute_force_with_rounding_edge_cases():
    rng = np.random.default_rng(0)
    # values on a coarse grid make |v_j - v_i| hit the radius exactly, where rounding matters
    v = rng.integers(0, 50, (400, 1)) * 0.1 + rng.integers(0, 3, (400, 1)) * 1e-17
    r = rng.integers(0, 6, 400) * 0.1
    brute = (np.abs(v - v.T) <= r[:, None]).sum(1)
    assert np.array_equal(_count_sorted_1d(v[:, 0], r), brute)
    v2 = rng.integers(0, 6, (300, 2)) * 0.3
    r2 = rng.integers(0, 4, 300) * 0.3
    brute2 = (np.abs(v2[:, None, :] - v2[None, :, :]).max(2) <= r2[:, None]).sum(1)
    assert np.array_equal(_count_within(v2, r2), brute2)


@pytest.mark.parametrize("d, rho, n, tol", [(1, 0.9, 3000, 0.05), (2, 0.6, 3000, 0.06), (5, 0.3, 3000, 0.06)])
def test_ksg_correlated_gaussians_across_dimensions(d, rho, n, tol):
    x, y, true = gaussian_pairs(n, d, rho, seed=20 + d)
    assert abs(mutual_information(x, y, method="ksg2") - true) < tol


def test_ksg_in_20_dimensions_is_biased_low_as_documented():
    x, y, true = gaussian_pairs(1500, 20, 0.1, seed=40)
    est = mutual_information(x, y, method="ksg2")
    # 40-D joint space: the k-NN counts barely see the weak dependence (true 0.10 nats)
    assert -0.05 < est < true


@pytest.mark.parametrize("d", [1, 5, 20])
def test_gaussian_closed_form_across_dimensions(d):
    x, y, true = gaussian_pairs(4000, d, 0.5, seed=30 + d)
    # the closed form on the sample correlation is biased high by about d*d / (2n)
    assert abs(mutual_information(x, y, method="gaussian") - true) < 0.03 + d * d / 4000


def test_rescaling_invariance_per_dimension():
    x, y, _ = gaussian_pairs(1000, 3, 0.6, seed=40)
    a = mutual_information(x, y, method="ksg1")
    b = mutual_information(x * np.array([1e-3, 2.0, -7.0]) + 5.0, y * np.array([1e4, -0.5, 3.0]), method="ksg1")
    assert a == pytest.approx(b, abs=1e-9)


def test_ties_are_an_error_for_ksg_but_fine_for_mixed():
    x = np.repeat(np.arange(50.0), 10)
    y = x + np.random.default_rng(1).standard_normal(500)
    with pytest.raises(ValueError, match="method='mixed'"):
        mutual_information(x, x % 7, method="ksg1")
    assert math.isfinite(mutual_information(x, y, method="mixed"))


def test_mixed_equals_ksg1_on_continuous_data():
    x, y, _ = gaussian_pairs(700, 2, 0.6, seed=41)
    assert mutual_information(x, y, method="mixed") == pytest.approx(
        mutual_information(x, y, method="ksg1", standardize=False), abs=1e-12)


def test_mixed_discrete_continuous_closed_form():
    # X uniform on {0, 1}, Y | X ~ U(X, X + 2): Y in [1, 2) says nothing about X, elsewhere X is known,
    # so I(X; Y) = H(X) - P(1 <= Y < 2) * log 2 = 0.5 log 2
    rng = np.random.default_rng(42)
    x = rng.integers(0, 2, 6000)
    y = x + 2 * rng.random(6000)
    assert mutual_information(x, y, method="mixed") == pytest.approx(0.5 * math.log(2), abs=0.03)


def test_discrete_channels_known_mi():
    rng = np.random.default_rng(43)
    n = 100_000
    x = rng.integers(0, 4, n)
    # noiseless channel over 4 equiprobable symbols: I = log 4
    assert mutual_information(x, x, method="plugin") == pytest.approx(math.log(4), abs=2e-4)
    assert mutual_information(x, x, method="mixed") == pytest.approx(math.log(4), abs=2e-3)
    # erasure channel, erasure probability 0.3: I = (1 - 0.3) H(X)
    erased = rng.random(n) < 0.3
    y = np.where(erased, -1, x)
    true = 0.7 * math.log(4)
    assert mutual_information(x, y, method="plugin") == pytest.approx(true, abs=0.01)
    assert mutual_information(x, y, method="mixed") == pytest.approx(true, abs=0.01)


def test_twelve_bit_exact_label_entropy():
    x, y = load_twelve_bit()
    h = entropy(y, method="plugin", units="bits")
    p = 1978 / 4096
    assert h == pytest.approx(-(p * math.log2(p) + (1 - p) * math.log2(1 - p)), abs=1e-12)
    assert h == pytest.approx(0.99916, abs=1e-5)
    # the label is a function of the (distinct) input, so I(X; Y) = H(Y) exactly for the plug-in
    assert mutual_information(x, y, method="plugin", units="bits") == pytest.approx(h, abs=1e-12)


def test_plugin_with_bins():
    rng = np.random.default_rng(44)
    x = rng.random(5000)
    y = x + 0.001 * rng.random(5000)
    # 4 equal bins each: y's bin equals x's bin almost always, so I ~ log 4
    assert mutual_information(x, y, method="plugin", bins=4) == pytest.approx(math.log(4), abs=0.02)
    assert entropy(x, method="plugin", bins=8, units="bits") == pytest.approx(3.0, abs=0.01)


def test_confidence_interval_covers_truth_and_is_reproducible():
    x, y, true = gaussian_pairs(1500, 1, 0.7, seed=45)
    a = mutual_information(x, y, ci=0.95, n_resamples=30, seed=3)
    b = mutual_information(x, y, ci=0.95, n_resamples=30, seed=3)
    assert a == b and a.resampling == "subsample"
    assert a.low < a.value < a.high and a.low < true < a.high
    assert float(a) == mutual_information(x, y)
    g = mutual_information(x, y, method="gaussian", ci=0.9, n_resamples=50, units="bits")
    assert g.resampling == "bootstrap" and g.low < true / math.log(2) < g.high
    e = entropy(rng_normal := np.random.default_rng(2).standard_normal((800, 1)), ci=0.9, n_resamples=20)
    assert e.low < 0.5 * math.log(2 * math.pi * math.e) < e.high
    assert rng_normal.shape == (800, 1)
    with pytest.raises(ValueError, match="ci"):
        mutual_information(x, y, ci=1.5)


def test_conditional_mutual_information():
    rng = np.random.default_rng(46)
    n = 3000
    y = rng.integers(0, 3, n)
    # given Y, X and Z are independent noise around Y: I(X; Z | Y) = 0, although I(X; Z) > 0
    x = y + 0.5 * rng.standard_normal(n)
    z = y + 0.5 * rng.standard_normal(n)
    assert mutual_information(x, z) > 0.3
    assert abs(conditional_mutual_information(x, z, y)) < 0.03
    # given Y, Z = X + noise with correlation 0.8 in every class: I = -0.5 log(1 - 0.64)
    e = rng.standard_normal(n)
    z2 = y + 0.8 * (x - y) + 0.6 * 0.5 * e
    true = -0.5 * math.log(1 - 0.64)
    assert conditional_mutual_information(x, z2, y, method="ksg2") == pytest.approx(true, abs=0.05)
    assert conditional_mutual_information(x, z2, torch.from_numpy(y), method="gaussian") == pytest.approx(
        true, abs=0.05)


def test_conditional_mutual_information_errors():
    rng = np.random.default_rng(47)
    x, z = rng.standard_normal(50), rng.standard_normal(50)
    y = np.zeros(50, dtype=int)
    y[:3] = 1
    with pytest.raises(ValueError, match=r"1 of 2 classes have fewer than 5 samples: 1 \(3\)"):
        conditional_mutual_information(x, z, y)
    with pytest.raises(ValueError, match="same number of samples"):
        conditional_mutual_information(x, z, y[:40])
    with pytest.raises(ValueError, match="discrete labels"):
        conditional_mutual_information(x, z, np.zeros((50, 2)))


@pytest.mark.parametrize("method", ["mixed", "plugin"])
def test_symmetry_and_units_discrete_methods(method):
    rng = np.random.default_rng(48)
    x = rng.integers(0, 5, (800, 2))
    y = (x[:, :1] + rng.integers(0, 2, (800, 1))) % 5
    a = mutual_information(x, y, method=method)
    assert a == pytest.approx(mutual_information(y, x, method=method), abs=1e-12)
    assert mutual_information(x, y, method=method, units="bits") == pytest.approx(a / math.log(2), rel=1e-12)


def test_new_entry_points_reject_nan_and_mismatch():
    x = np.random.default_rng(49).standard_normal((30, 2))
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        conditional_mutual_information(bad, x, np.zeros(30))
    with pytest.raises(ValueError, match="NaN"):
        mutual_information(bad, x, method="mixed")
    with pytest.raises(ValueError, match="more than k samples"):
        mutual_information(x[:3], x[:3], method="mixed", k=3)


def test_tensors_that_require_grad_are_accepted():
    x, y, _ = gaussian_pairs(300, 1, 0.7, seed=50)
    tx = torch.from_numpy(x).requires_grad_()
    assert mutual_information(tx, y) == mutual_information(x, y)
    assert conditional_mutual_information(tx, y, np.arange(300) % 2) == conditional_mutual_information(
        x, y, np.arange(300) % 2)
