import math

import numpy as np
import pytest
import torch

from bottlenecks.info import degree_of_ib, ib_generalization_correlation, rate_distortion


def test_rate_distortion_given_labels_exact():
    x = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [10.0, 12.0]])
    r = rate_distortion(x, labels=[0, 0, 1, 1], beta=0.5)
    assert r["rate"] == pytest.approx(1.0)  # two equal clusters: 1 bit
    assert r["distortion"] == pytest.approx(1.0)  # every point at distance 1 from its class mean
    assert r["objective"] == pytest.approx(1.5)


def test_rate_distortion_kmeans_trade_off():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 3)) * 10
    x = np.repeat(centres, 50, axis=0) + rng.standard_normal((200, 3))
    r1 = rate_distortion(x, 1, seed=0)
    r4 = rate_distortion(x, 4, seed=0)
    r8 = rate_distortion(x, 8, seed=0)
    assert r1["rate"] == 0 and r4["rate"] == pytest.approx(2.0, abs=1e-9)  # 4 equal blobs found: 2 bits
    assert r1["distortion"] > r4["distortion"] > r8["distortion"]
    assert r4["distortion"] == pytest.approx(3.0, rel=0.15)  # unit noise in 3 dims
    assert rate_distortion(x, 4, seed=0)["objective"] == r4["objective"]
    with pytest.raises(ValueError, match="exactly one"):
        rate_distortion(x)
    with pytest.raises(ValueError, match="beta"):
        rate_distortion(x, 2, beta=-1.0)


def test_degree_of_ib_binning():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 3))
    y = (x[:, 0] > 0).astype(int)
    # T = Y: nothing about X beyond Y
    assert degree_of_ib(y.astype(float), x, y) == pytest.approx(0.0, abs=1e-12)
    # T = identity on distinct inputs, fine bins: I(X;T|Y) = H(T_b|Y), close to log2 of the class size
    full = degree_of_ib(x, x, y, bins=1000)
    assert full == pytest.approx(math.log2(200), abs=0.1)
    t = torch.from_numpy(x + 0.01 * rng.standard_normal(x.shape))
    assert degree_of_ib(t, x, y, method="gaussian", units="nats") > 5


def test_kendall_correlation():
    gaps = [0.1, 0.2, 0.3, 0.4, 0.5]
    out = ib_generalization_correlation({"fc1": [1, 2, 3, 4, 5], "fc2": [5, 4, 3, 2, 1]}, gaps)
    assert out["fc1"]["tau"] == pytest.approx(1.0) and out["fc2"]["tau"] == pytest.approx(-1.0)
    assert out["fc1"]["n_runs"] == 5 and 0 < out["fc1"]["p_value"] < 0.05
    assert set(ib_generalization_correlation([3, 1, 2], [0.3, 0.1, 0.2])) == {"all"}
    with pytest.raises(ValueError, match="one per run"):
        ib_generalization_correlation([1, 2], gaps)
