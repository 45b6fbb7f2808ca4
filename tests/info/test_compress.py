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
    est = compressed_mutual_information(x, y, dim=1, compressor="pca")
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


def sparse_pairs(n, d, seed=0):
    """Unit-variance columns, two of the d pairs correlated (0.8): every PCA direction is equally good."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((n, d))
    y[:, :2] = 0.8 * x[:, :2] + 0.6 * y[:, :2]
    return x, y, -math.log(1 - 0.64)


def test_cca_default_keeps_sparse_dependence_that_pca_loses():
    x, y, true = sparse_pairs(2000, 20)
    cca = compressed_mutual_information(x, y)  # the default compressor
    pca = compressed_mutual_information(x, y, compressor="pca")
    assert abs(cca - true) < 0.25 * true
    assert pca < 0.3 * true  # PCA keeps variance, and here variance says nothing about y


def test_cca_compress_shapes_and_small_sides():
    from bottlenecks.info import cca_compress

    x, y, _ = sparse_pairs(300, 6, seed=1)
    cx, cy = cca_compress(x, y, 2, 3)
    assert cx.shape == (300, 2) and cy.shape == (300, 3) and cx.dtype == torch.float64
    # the leading canonical variates carry the correlated pairs: correlation near 0.8
    r = np.corrcoef(cx[:, 0].numpy(), cy[:, 0].numpy())[0, 1]
    assert abs(r) > 0.7
    sx, sy = cca_compress(x[:, :2], y, 4)  # x already small: kept as is
    assert torch.equal(sx, torch.from_numpy(x[:, :2])) and sy.shape == (300, 2)  # 2 canonical pairs
    with pytest.raises(ValueError, match="same number of samples"):
        cca_compress(x, y[:10])
    with pytest.raises(ValueError, match="compressor"):
        compressed_mutual_information(x, y, compressor="ica")
