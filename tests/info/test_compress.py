import math

import numpy as np
import pytest
import torch

from bottlenecks.info import compress, compressed_mutual_information, mutual_information


def embedded_pairs(n, seed=0):
    """A correlated 1-D Gaussian pair embedded linearly in 30 dims plus small isotropic noise."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, 1))
    v = 0.8 * u + 0.6 * rng.standard_normal((n, 1))
    a, b = rng.standard_normal((1, 30)), rng.standard_normal((1, 30))
    return u @ a + 0.01 * rng.standard_normal((n, 30)), v @ b + 0.01 * rng.standard_normal((n, 30)), \
        -0.5 * math.log(1 - 0.64)


def test_pca_compression_recovers_low_dimensional_information():
    x, y, true = embedded_pairs(2000)
    direct = mutual_information(x, y)  # KSG in a 60-D joint space is far off
    est = compressed_mutual_information(x, y, dim=1)
    assert abs(est - true) < 0.05
    assert abs(direct - true) > abs(est - true)


def test_autoencoder_compression_and_seed():
    x, y, true = embedded_pairs(1500, seed=1)
    a = compressed_mutual_information(x, y, dim=1, compressor="autoencoder", epochs=15, seed=0)
    b = compressed_mutual_information(x, y, dim=1, compressor="autoencoder", epochs=15, seed=0)
    assert a == b
    assert 0.5 * true < a < true + 0.1  # data processing: at most the truth, up to estimator error


def test_compress_shapes():
    x = torch.randn(100, 2, 3, generator=torch.Generator().manual_seed(0))
    assert compress(x, 2).shape == (100, 2)
    assert compress(x[:, 0, :2], 4).shape == (100, 2)  # already small enough: unchanged
    with pytest.raises(ValueError, match="method"):
        compress(x, 2, method="umap")
