import math

import numpy as np
import pytest
import torch

from bottlenecks.info import entropy, mutual_information


def gaussian_pairs(n, d, rho, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))
    return x, y, -0.5 * d * math.log(1 - rho**2)


@pytest.mark.parametrize("method", ["ksg1", "ksg2"])
def test_ksg_gaussian_1d(method):
    x, y, true = gaussian_pairs(2000, 1, 0.8)
    assert abs(mutual_information(x, y, method=method) - true) < 0.05


@pytest.mark.parametrize("method", ["ksg1", "ksg2"])
def test_ksg_gaussian_5d(method):
    x, y, true = gaussian_pairs(2000, 5, 0.5, seed=1)
    est = mutual_information(x, y, method=method)
    # KSG is biased low in a 10-D joint space (about -0.15..-0.2 nats here over seeds 0-5)
    assert 0.65 * true < est < true + 0.05


def test_gaussian_closed_form():
    x, y, true = gaussian_pairs(2000, 5, 0.5, seed=2)
    assert abs(mutual_information(x, y, method="gaussian") - true) < 0.1


@pytest.mark.parametrize("method", ["ksg1", "ksg2", "gaussian"])
def test_independence(method):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((2000, 2)), rng.standard_normal((2000, 1))
    assert abs(mutual_information(x, y, method=method)) < 0.05


@pytest.mark.parametrize("method", ["ksg1", "ksg2"])
def test_symmetry(method):
    x, y, _ = gaussian_pairs(1000, 2, 0.6, seed=4)
    y = y[:, :1]
    a = mutual_information(x, y, method=method)
    b = mutual_information(y, x, method=method)
    assert a == pytest.approx(b, abs=1e-12)


def test_affine_invariance_with_standardize():
    x, y, _ = gaussian_pairs(1000, 2, 0.6, seed=5)
    a = mutual_information(x, y)
    b = mutual_information(3 * x + 1, y * np.array([0.01, 50.0]))
    assert a == pytest.approx(b, abs=1e-9)


def test_monotone_map_close():
    x, y, true = gaussian_pairs(2000, 1, 0.8, seed=6)
    # exp changes the geometry, so KSG is not exactly invariant, but stays close to the truth
    assert abs(mutual_information(np.exp(x), y) - true) < 0.1


def test_units_and_torch_input():
    x, y, _ = gaussian_pairs(500, 1, 0.7, seed=7)
    nats = mutual_information(x, y)
    bits = mutual_information(torch.from_numpy(x), torch.from_numpy(y).float(), units="bits")
    assert bits == pytest.approx(nats / math.log(2), rel=1e-4)
    assert entropy(x, units="bits") == pytest.approx(entropy(x) / math.log(2))


def test_1d_inputs_match_columns():
    x, y, _ = gaussian_pairs(500, 1, 0.7, seed=8)
    assert mutual_information(x[:, 0], y[:, 0]) == pytest.approx(mutual_information(x, y))


def test_chunking_does_not_change_result():
    x, y, _ = gaussian_pairs(600, 2, 0.6, seed=9)
    for method in ("ksg1", "ksg2"):
        full = mutual_information(x, y, method=method)
        small = mutual_information(x, y, method=method, max_memory=8 * 600 * 4 * 7)
        assert full == pytest.approx(small, abs=1e-12)


def test_plugin_binary_symmetric_channel():
    rng = np.random.default_rng(10)
    n = 200_000
    x = rng.integers(0, 2, n)
    y = x ^ (rng.random(n) < 0.1)
    hb = -(0.1 * math.log(0.1) + 0.9 * math.log(0.9))
    true = math.log(2) - hb
    assert abs(mutual_information(x, y, method="plugin") - true) < 0.005
    assert entropy(x, method="plugin", units="bits") == pytest.approx(1.0, abs=1e-3)


def test_plugin_entropy_exact():
    x = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    assert entropy(x, method="plugin") == pytest.approx(math.log(4))


@pytest.mark.parametrize("d", [1, 3])
def test_kl_entropy_gaussian(d):
    rng = np.random.default_rng(11 + d)
    x = rng.standard_normal((2000, d))
    true = 0.5 * d * math.log(2 * math.pi * math.e)
    assert abs(entropy(x) - true) < 0.05 * d


def test_errors():
    x = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(ValueError, match="same number of samples"):
        mutual_information(x, x[:9])
    bad = x.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mutual_information(bad, x)
    bad[0, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        entropy(bad)
    with pytest.raises(ValueError, match="more than k samples"):
        mutual_information(x[:3], x[:3], k=3)
    with pytest.raises(ValueError, match="more than k samples"):
        entropy(x[:3], k=3)
    const = x.copy()
    const[:, 1] = 2.0
    with pytest.raises(ValueError, match=r"column\(s\) \[1\]"):
        mutual_information(x, const)
    with pytest.raises(ValueError, match="method"):
        mutual_information(x, x, method="nope")
    with pytest.raises(ValueError, match="units"):
        entropy(x, units="hartley")
    with pytest.raises(ValueError, match="duplicate"):
        entropy(np.zeros((10, 1)))


# --- issue 21: no silent wrong results, one set of names ---------------------------------------

def test_plugin_refuses_continuous_data_without_bins():
    # every continuous sample is its own symbol: the plug-in estimate would be log n (6.21 at n=500)
    x, y, _ = gaussian_pairs(500, 1, 0.8, seed=11)
    with pytest.raises(ValueError, match=r"x: method='plugin'.*500 distinct rows among 500 samples.*bins="):
        mutual_information(x, y, method="plugin")
    with pytest.raises(ValueError, match="bins="):
        entropy(x, method="plugin")
    with pytest.raises(ValueError, match=r"y: method='plugin'"):
        mutual_information(np.arange(500) % 4, y, method="plugin")
    # with bins it is the binned estimate: far from log n, near the truth (0.51 nats) for 8 bins
    est = mutual_information(x, y, method="plugin", bins=8)
    assert 0.3 < est < 0.7


def test_plugin_still_takes_discrete_floats():
    rng = np.random.default_rng(12)
    x = rng.integers(0, 4, 1000).astype(np.float64)   # integer-valued floats: symbols
    y = (x + (rng.random(1000) < 0.1)) % 4 * 0.5      # few distinct non-integer values: symbols
    a = mutual_information(x, y, method="plugin")
    assert a == pytest.approx(mutual_information(x.astype(int), (2 * y).astype(int), method="plugin"), abs=1e-12)
    assert a > 1.0


def test_method_aliases():
    x, y, _ = gaussian_pairs(400, 2, 0.6, seed=13)
    assert mutual_information(x, y, method="ksg") == mutual_information(x, y, method="ksg1")
    assert mutual_information(x, y, method="cca") == mutual_information(x, y, method="gaussian")
    assert mutual_information(x, y, method="binning", bins=5) == mutual_information(x, y, method="plugin", bins=5)
    assert entropy(x, method="binning", bins=5) == entropy(x, method="plugin", bins=5)
    with pytest.raises(ValueError, match=r"method: expected one of \['ksg1'.*'ksg' \(= 'ksg1'\).*got 'kgs'"):
        mutual_information(x, y, method="kgs")


def test_infoplane_plugin_and_binning_are_one_estimator():
    from torch import nn

    from bottlenecks.info import InfoPlane

    rng = np.random.default_rng(14)
    x = torch.from_numpy(rng.standard_normal((300, 3))).float()
    y = torch.from_numpy(rng.integers(0, 2, 300))
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    records = []
    for name in ("binning", "plugin"):
        with InfoPlane(model, ["1"], x, y, estimator=name, bins=6) as plane:
            assert plane.estimator == "plugin"
            records.append(plane.record(0)[0])
            assert plane.degree_of_ib(name)["1"] == pytest.approx(plane.degree_of_ib("binning")["1"])
    assert records[0] == records[1]
    assert 0 < records[0]["i_xt"] < math.log2(300)
    with InfoPlane(model, ["1"], x, y, estimator="ksg") as plane:
        assert plane.estimator == "ksg1"


def test_conditional_mi_argument_names_and_short_errors():
    from bottlenecks.info import conditional_mutual_information

    rng = np.random.default_rng(15)
    labels = rng.integers(0, 2, 600)
    x = labels + rng.standard_normal(600)
    y = labels + rng.standard_normal(600)
    # README: conditional_mutual_information(x, y, labels) is I(X; Y | labels)
    kw = conditional_mutual_information(x=x, y=y, labels=labels)
    assert kw == conditional_mutual_information(x, y, labels)
    assert abs(kw) < 0.05
    with pytest.raises(TypeError, match=r"\(x, y, labels\)"):
        conditional_mutual_information(x, z=y, y=labels)
    # continuous labels: one short message, not one line per sample
    with pytest.raises(ValueError, match="discrete class labels") as err:
        conditional_mutual_information(x, y, rng.standard_normal(600))
    assert len(str(err.value)) < 300
    few = np.arange(600) % 200  # 200 classes of 3 samples: listed briefly
    with pytest.raises(ValueError, match="200 of 200 classes have fewer than 5 samples") as err:
        conditional_mutual_information(x, y, few)
    assert len(str(err.value)) < 300
