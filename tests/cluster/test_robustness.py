"""Issue 21: extreme magnitudes, bad tolerances and weights, and the scikit-learn conventions users guess."""

import numpy as np
import pytest
import torch

from bottlenecks.cluster import KMeans, kmeans, nearest


def blobs(n_per=60, d=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(d) * 10
    x = np.repeat(centres, n_per, 0) + rng.normal(size=(d * n_per, d))
    return torch.from_numpy(x.astype(np.float32))


@pytest.mark.parametrize("scale,dtype", [(1e19, torch.float32), (1e20, torch.float64), (1e-30, torch.float32)])
def test_kmeans_extreme_magnitudes_give_the_same_clustering(scale, dtype):
    x = blobs()
    ref = kmeans(x.double(), 5, seed=0)
    res = kmeans(x.to(dtype) * scale, 5, seed=0)
    assert torch.equal(res.labels, ref.labels)
    assert torch.bincount(res.labels, minlength=5).tolist() == [60] * 5
    assert res.centroids.dtype == dtype
    torch.testing.assert_close(res.centroids.double() / scale, ref.centroids, rtol=1e-6, atol=1e-6)
    assert res.inertia / scale**2 == pytest.approx(ref.inertia, rel=1e-6)


@pytest.mark.parametrize("d", [8, 48])
@pytest.mark.parametrize("scale", [1e19, 1e-30])
def test_nearest_l2_extreme_magnitudes_no_nan(d, scale):
    rng = np.random.default_rng(d)
    codes = torch.from_numpy(rng.normal(size=(20, d)).astype(np.float32))
    x = torch.from_numpy(rng.normal(size=(50, d)).astype(np.float32))
    true = torch.cdist(x.double() * scale, codes.double() * scale) ** 2
    dist, idx = nearest(x * scale, codes * scale, k=2)
    assert not torch.isnan(dist).any()
    assert torch.equal(idx, true.topk(2, largest=False).indices)
    # the float32 rounding of the true distance (inf where it exceeds float32's range, 0 below it)
    torch.testing.assert_close(dist, true.gather(1, idx).float(), rtol=1e-4, atol=0)


@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_nearest_other_metrics_huge_magnitudes(metric):
    rng = np.random.default_rng(1)
    codes = torch.from_numpy(rng.normal(size=(30, 40)).astype(np.float32))
    x = torch.from_numpy(rng.normal(size=(25, 40)).astype(np.float32))
    _, ref = nearest(x, codes, k=3, metric=metric)
    dist, idx = nearest(x * 1e19, codes * 1e19, k=3, metric=metric)
    assert torch.equal(idx, ref)
    assert not torch.isnan(dist).any()


@pytest.mark.parametrize("tol", [float("nan"), float("inf"), -1.0, "0.1"])
def test_kmeans_refuses_bad_tol(tol):
    with pytest.raises(ValueError, match="tol"):
        kmeans(blobs(), 3, tol=tol)


def test_all_zero_sample_weight_is_a_clear_error():
    x = blobs()
    with pytest.raises(ValueError, match="sample_weight.*all zeros"):
        kmeans(x, 3, sample_weight=torch.zeros(len(x)))
    with pytest.raises(ValueError, match="all zeros|non-zero"):
        KMeans(3).fit(x.numpy(), sample_weight=np.zeros(len(x)))


def test_random_init_needs_k_positive_weights():
    x = blobs()
    w = torch.zeros(len(x))
    w[:2] = 1
    with pytest.raises(ValueError, match="positive weight"):
        kmeans(x, 3, init="random", sample_weight=w)


def test_n_init_auto_follows_scikit_learn():
    x = blobs().numpy()
    assert KMeans(5, random_state=0).get_params()["n_init"] == "auto"
    assert KMeans(5, n_init="auto", random_state=0)._n_init() == 1
    assert KMeans(5, init="random", n_init="auto", random_state=0)._n_init() == 10
    km = KMeans(5, n_init="auto", random_state=0).fit(x)
    assert km.inertia_ > 0
    with pytest.raises(ValueError, match="n_init"):
        KMeans(5, n_init="many").fit(x)


def test_callable_init_is_called_with_numpy_and_random_state():
    x = blobs().numpy()
    calls = []

    def init(X, n_clusters, random_state):
        calls.append((type(X), n_clusters, type(random_state)))
        return X[random_state.choice(len(X), n_clusters, replace=False)]

    km = KMeans(5, init=init, n_init=3, random_state=0).fit(x)
    assert calls == [(np.ndarray, 5, np.random.RandomState)] * 3
    assert len(np.unique(km.labels_)) == 5
    bad = KMeans(5, init=lambda X, k, rs: X[:k - 1], n_init=1)
    with pytest.raises(ValueError, match="init"):
        bad.fit(x)


def test_float64_in_float64_centres():
    x = blobs().numpy()
    assert KMeans(5, random_state=0).fit(x.astype(np.float64)).cluster_centers_.dtype == np.float64
    assert KMeans(5, random_state=0).fit(x).cluster_centers_.dtype == np.float32
    assert KMeans(5, random_state=0, dtype="float32").fit(x.astype(np.float64)).cluster_centers_.dtype == np.float32


def test_verbose_prints_iterations(capsys):
    x = blobs().numpy()
    KMeans(5, random_state=0, verbose=1).fit(x)
    out = capsys.readouterr().out
    assert "k-means iteration 1/" in out and "converged" in out
    KMeans(5, random_state=0).fit(x)
    assert capsys.readouterr().out == ""
