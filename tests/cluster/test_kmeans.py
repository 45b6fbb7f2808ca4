import numpy as np
import pytest
import torch

from bottlenecks.cluster import assign, kmeans, kmeans_plusplus
from bottlenecks.cluster.lloyd import init_centroids, make_generator


def reference_lloyd(x, c, n_iter):
    """Plain float64 Lloyd in NumPy: n_iter updates, then a final assignment."""
    x, c = x.astype(np.float64), c.astype(np.float64).copy()
    for _ in range(n_iter):
        lab = ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        for j in range(len(c)):
            if (lab == j).any():
                c[j] = x[lab == j].mean(0)
    d = ((x[:, None] - c[None]) ** 2).sum(-1)
    lab = d.argmin(1)
    return lab, d[np.arange(len(x)), lab].sum(), c


def data(kind, n=1500, d=10, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "random":
        return torch.from_numpy(rng.normal(size=(n, d)).astype(np.float32))
    centers = rng.normal(scale=6, size=(12, d))
    return torch.from_numpy((centers[rng.integers(0, 12, n)] + rng.normal(size=(n, d))).astype(np.float32))


@pytest.mark.parametrize("kind", ["random", "clustered"])
@pytest.mark.parametrize("precision", ["float32", "bfloat16", "bfloat16x3", "float16"])
@pytest.mark.parametrize("prune", [False, True, "always"])
def test_labels_equal_float64_lloyd(kind, precision, prune):
    x = data(kind)
    c0 = init_centroids(x, 16, "k-means++", make_generator(3), None)
    res = kmeans(x, 16, init=c0, max_iter=12, tol=0, precision=precision, prune=prune)
    lab, inertia, c_ref = reference_lloyd(x.numpy(), c0.numpy(), res.n_iter)
    assert np.array_equal(res.labels.numpy(), lab)
    assert abs(res.inertia - inertia) <= 1e-5 * inertia
    np.testing.assert_allclose(res.centroids.numpy(), c_ref, rtol=1e-5, atol=1e-5)


def test_low_precision_search_is_certified_not_guessed():
    # rows whose bf16 scores cannot separate winner from runner-up are re-scored exactly
    x = data("random", n=2000, d=32)
    c = x[:300].double()
    labels, sq = assign(x, c.float(), precision="bfloat16")
    ref = torch.cdist(x.double(), c).argmin(1)
    assert torch.equal(labels, ref)
    torch.testing.assert_close(sq, ((x.double() - c[ref]) ** 2).sum(1))


def test_pruning_skips_rows_in_later_iterations():
    x = data("clustered", n=3000)
    res = kmeans(x, 12, max_iter=30, tol=0, seed=0, prune="always")
    assert max(res.info["pruned_fraction"][1:]) > 0.5


def test_same_seed_same_result_and_n_init_keeps_best():
    x = data("clustered")
    a = kmeans(x, 8, seed=7, n_init=1)
    b = kmeans(x, 8, seed=7, n_init=1)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centroids, b.centroids)
    best = kmeans(x, 8, seed=7, n_init=4)
    assert best.inertia <= a.inertia + 1e-9


def test_kmeans_plusplus_picks_distinct_rows_deterministically():
    x = data("clustered")
    c1 = kmeans_plusplus(x, 10, seed=0)
    c2 = kmeans_plusplus(x, 10, seed=0)
    assert torch.equal(c1, c2)
    rows = {tuple(r) for r in x.double().numpy().round(6)}
    assert all(tuple(r) in rows for r in c1.numpy().round(6))
    assert len({tuple(r) for r in c1.numpy()}) == 10


def test_empty_cluster_is_reseeded_with_farthest_point():
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [10.0, 10.0]], dtype=torch.float32)
    init = torch.tensor([[0.0, 0.0], [100.0, 100.0]])  # the second centre attracts nothing
    res = kmeans(x, 2, init=init, max_iter=5, tol=0, prune=False)
    assert res.info.get("relocated", 0) >= 1
    assert sorted(np.bincount(res.labels.numpy()).tolist()) == [1, 3]
    assert torch.allclose(res.centroids[res.labels[3]], x[3])


def test_integer_weights_equal_repeated_points():
    x = data("clustered", n=400)
    w = torch.from_numpy(np.random.default_rng(0).integers(1, 4, size=400)).double()
    c0 = x[:6].double()
    weighted = kmeans(x, 6, init=c0, sample_weight=w, max_iter=20, tol=0)
    repeated = kmeans(x.repeat_interleave(w.long(), 0), 6, init=c0, max_iter=20, tol=0)
    torch.testing.assert_close(weighted.centroids, repeated.centroids)
    assert abs(weighted.inertia - repeated.inertia) < 1e-6 * repeated.inertia


def test_input_is_not_modified_and_float64_is_kept():
    x = data("random").double().T.contiguous().T  # float64, non-contiguous
    before = x.clone()
    res = kmeans(x, 4, seed=0)
    assert torch.equal(x, before)
    assert res.centroids.dtype == torch.float64


@pytest.mark.parametrize("x, k, match", [
    (torch.randn(10, 3), 0, ">= 1"),
    (torch.randn(10, 3), 11, "k=11"),
    (torch.randn(10), 2, "2-D"),
    (torch.empty(0, 3), 2, "at least 1 sample"),
    (torch.tensor([[1.0, float("inf")], [0.0, 0.0]]), 1, "infinity"),
    (torch.ones(5, 2, dtype=torch.int64), 2, "floating-point"),
])
def test_bad_input_errors(x, k, match):
    with pytest.raises((ValueError, TypeError), match=match):
        kmeans(x, k)


def test_bad_init_shape_error():
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        kmeans(torch.randn(10, 2), 3, init=torch.randn(2, 2))


def test_numpy_input_to_functional_api_is_refused_with_hint():
    with pytest.raises(TypeError, match="KMeans"):
        kmeans(np.zeros((4, 2)), 2)


@pytest.mark.parametrize("precision", ["float32", "bfloat16x3"])
def test_group_bounds_with_many_centres_keep_lloyd_labels(precision):
    # k >= 128 switches on Yinyang group bounds and the group filter (groups of 64 centres)
    x = data("clustered", n=4000, d=6, seed=1)
    c0 = init_centroids(x, 300, "random", make_generator(0), None)
    res = kmeans(x, 300, init=c0, max_iter=15, tol=0, precision=precision, prune="always")
    lab, inertia, c_ref = reference_lloyd(x.numpy(), c0.numpy(), res.n_iter)
    assert np.array_equal(res.labels.numpy(), lab)
    assert abs(res.inertia - inertia) <= 1e-5 * inertia
    assert max(res.info["pruned_fraction"][1:]) > 0.3


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "bfloat16x3", "float16"])
def test_duplicate_centres_and_more_clusters_than_distinct_rows(precision):
    # regression: padding codes got NaN scores in float16 and "won", returning label k
    from bottlenecks.cluster.exact import CentroidTable, assign_exact

    x = torch.randn(300, 32, generator=torch.Generator().manual_seed(0))
    x[::4] = x[0]  # 226 distinct rows
    c = x[:250].double()
    a = assign_exact(x, CentroidTable(c, precision, x.double().mean(0)))
    assert int(a.labels.max()) < 250
    assert torch.allclose(a.sq_dist, torch.cdist(x.double(), c).amin(1) ** 2, atol=1e-9)
    res = kmeans(x, 250, init="random", max_iter=5, seed=0, precision=precision)
    assert int(res.labels.max()) < 250 and res.inertia < 1e-6
