"""Batched k-means: every codebook's fit equals fitting it alone from the same initial centres."""

import pytest
import torch

from bottlenecks.cluster import kmeans
from bottlenecks.cluster import lloyd as single
from bottlenecks.cluster.batched import init_centroids
from bottlenecks.cluster.batched import kmeans as batched_kmeans
from bottlenecks.cluster.lloyd import make_generator


def blobs(n, C, d, g, offset=0.0):
    centres = torch.randn(C, 12, d, generator=g) * 4
    pick = torch.randint(0, 12, (n, C), generator=g)
    return centres[torch.arange(C), pick] + torch.randn(n, C, d, generator=g) + offset


def assert_each_equals_alone(x, k, res, init, weight=None, **kw):
    for c in range(x.shape[1]):
        w = None if weight is None else (weight if weight.dim() == 1 else weight[:, c])
        alone = single.kmeans(x[:, c].contiguous(), k, init=init[c], sample_weight=w, **kw)
        assert torch.equal(alone.labels, res.labels[:, c]), f"codebook {c}"
        assert alone.n_iter == res.info["n_iter_per_codebook"][c]
        assert res.info["inertia_per_codebook"][c] == pytest.approx(alone.inertia, rel=1e-6)
        torch.testing.assert_close(res.centroids[c], alone.centroids, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_each_codebook_equals_fitting_it_alone(backend):
    g = torch.Generator().manual_seed(0)
    x = blobs(1500, 4, 6, g)
    x[:, 1] += 80.0  # one codebook far from the origin: the search shifts it
    init = init_centroids(x, 25, "random", make_generator(3), None)
    res = batched_kmeans(x, 25, init=init, max_iter=60, tol=1e-4, backend=backend)
    assert res.centroids.shape == (4, 25, 6) and res.labels.shape == (1500, 4)
    assert len(set(res.info["n_iter_per_codebook"])) > 1  # codebooks stop at different iterations
    assert_each_equals_alone(x, 25, res, init, max_iter=60, tol=1e-4)
    assert res.inertia == pytest.approx(sum(res.info["inertia_per_codebook"]))


def test_max_iter_cut_and_zero_tol_match_alone():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(800, 3, 14, generator=g)
    init = init_centroids(x, 40, "random", make_generator(0), None)
    res = kmeans(x, 40, init=init, max_iter=3, tol=0.0)  # cluster.kmeans dispatches 3-D input
    assert res.info["n_iter_per_codebook"] == [3, 3, 3]
    assert_each_equals_alone(x, 40, res, init, max_iter=3, tol=0.0)


def test_empty_clusters_are_reseeded_per_codebook_like_alone():
    g = torch.Generator().manual_seed(2)
    x = blobs(600, 3, 4, g)
    init = init_centroids(x, 10, "random", make_generator(1), None)
    init[0, 7] = 1e3  # far from every row: empty after the first assignment
    init[2, [2, 5]] = -1e3
    res = batched_kmeans(x, 10, init=init, max_iter=30)
    assert res.info["relocated"] >= 3
    assert_each_equals_alone(x, 10, res, init, max_iter=30)


@pytest.mark.parametrize("shape", ["(n,)", "(n, C)"])
def test_sample_weights_match_alone(shape):
    g = torch.Generator().manual_seed(3)
    x = blobs(700, 3, 5, g)
    w = torch.rand(700, generator=g) if shape == "(n,)" else torch.rand(700, 3, generator=g)
    w[:50] = 0  # zero weights never count
    init = init_centroids(x, 12, "random", make_generator(2), None)
    res = batched_kmeans(x, 12, init=init, sample_weight=w, max_iter=40)
    assert_each_equals_alone(x, 12, res, init, weight=w.double(), max_iter=40)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_initialisations_draw_rows_of_each_codebook_and_are_reproducible(init):
    g = torch.Generator().manual_seed(4)
    x = blobs(300, 3, 4, g)
    w = torch.ones(300, 3)
    w[:, 1] = 0
    w[:40, 1] = 1  # codebook 1 may only pick among its first 40 rows
    c0 = init_centroids(x, 8, init, make_generator(5), w.double())
    assert c0.shape == (3, 8, 4)
    for c in range(3):
        rows = x[:, c].double()
        hit = (c0[c][:, None, :] == rows[None]).all(-1)  # (8, n)
        assert hit.any(1).all(), "every centre is a row"
        assert len(set(hit.float().argmax(1).tolist())) == 8, "distinct rows"
        if c == 1:
            assert (hit.float().argmax(1) < 40).all()
    again = init_centroids(x, 8, init, make_generator(5), w.double())
    assert torch.equal(c0, again)
    a = kmeans(x, 8, init=init, seed=7)
    b = kmeans(x, 8, init=init, seed=7)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.labels, b.labels)


def test_kmeans_plus_plus_beats_random_on_blobs():
    g = torch.Generator().manual_seed(6)
    x = blobs(1200, 2, 3, g)
    pp = kmeans(x, 12, init="k-means++", seed=0, max_iter=1)
    rnd = kmeans(x, 12, init="random", seed=0, max_iter=1)
    assert pp.inertia < rnd.inertia


def test_float64_input_gives_float64_centres():
    x = torch.randn(200, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    res = kmeans(x, 5, seed=0)
    assert res.centroids.dtype == torch.float64


def test_bad_input_is_refused_clearly():
    x = torch.randn(50, 2, 3)
    with pytest.raises(ValueError, match="k=51"):
        batched_kmeans(x, 51)
    with pytest.raises(ValueError, match=r"init: expected an array of shape \(2, 4, 3\)"):
        batched_kmeans(x, 4, init=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="n_init=2"):
        batched_kmeans(x, 4, n_init=2)
    with pytest.raises(ValueError, match="non-negative"):
        batched_kmeans(x, 4, sample_weight=-torch.ones(50))
    with pytest.raises(ValueError, match=r"sample_weight: expected shape \(50,\) or \(50, 2\)"):
        batched_kmeans(x, 4, sample_weight=torch.ones(50, 3))
    with pytest.raises(ValueError, match="codebook 1"):
        w = torch.ones(50, 2)
        w[3:, 1] = 0
        batched_kmeans(x, 4, sample_weight=w)
    with pytest.raises(TypeError, match="floating-point"):
        batched_kmeans(torch.ones(5, 2, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="non-empty"):
        batched_kmeans(torch.ones(5, 0, 3), 2)
    with pytest.raises(ValueError, match="init"):
        batched_kmeans(x, 4, init="farthest")
