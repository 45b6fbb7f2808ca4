"""The compiled (numba) kernels against the pure-torch path: the same exact labels, the same sums."""

import numpy as np
import pytest
import torch

from bottlenecks.cluster import _numba, kmeans
from bottlenecks.cluster.exact import CentroidTable, assign_exact, balanced_groups
from bottlenecks.cluster.lloyd import weighted_sums

pytestmark = pytest.mark.skipif(not _numba.HAS_NUMBA, reason="numba not installed")


@pytest.fixture
def torch_path():
    """Run the body with the compiled kernels switched off, then restore them."""
    def run(fn):
        _numba.ENABLED = False
        try:
            return fn()
        finally:
            _numba.ENABLED = _numba.HAS_NUMBA
    return run


def data(n, d, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(12, d, generator=g) * 4
    x = centres[torch.randint(0, 12, (n,), generator=g)] + torch.randn(n, d, generator=g) + shift
    return x.float().contiguous()


# (n, d, K, shift): few codes (transposed tiles), one group, several groups with padding, data far from 0
@pytest.mark.parametrize("n,d,K,shift", [(3000, 40, 10, 0.0), (3000, 100, 100, 0.0), (2500, 48, 300, 0.0),
                                         (2000, 64, 200, 50.0), (4000, 33, 1024, 0.0)])
def test_assignment_equals_torch_path_and_float64(n, d, K, shift, torch_path):
    x = data(n, d, shift)
    c = (x[torch.randperm(n, generator=torch.Generator().manual_seed(1))[:K]].double()
         + 0.3 * torch.randn(K, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    center = x.double().mean(0) if shift else torch.zeros(d, dtype=torch.float64)
    order = balanced_groups(c, 64) if K >= 128 else None
    table = CentroidTable(c, "float32", center, order=order)
    fast = assign_exact(x, table, group_bounds=True)
    slow = torch_path(lambda: assign_exact(x, CentroidTable(c, "float32", center, order=order), group_bounds=True))
    d2 = torch.cdist(x.double(), c) ** 2
    assert torch.equal(fast.labels, slow.labels)
    assert torch.equal(fast.labels, d2.argmin(1))
    torch.testing.assert_close(fast.sq_dist, d2.gather(1, fast.labels[:, None])[:, 0], rtol=1e-12, atol=1e-9)
    # group bounds: valid lower bounds on the distance to every code of the group but the winner
    d2 = d2.clone()
    d2.scatter_(1, fast.labels[:, None], float("inf"))
    cols = table.order
    G = fast.group_lower.shape[1]
    padded = torch.cat([d2, d2.new_full((n, 1), float("inf"))], 1)[:, cols].view(n, G, -1)
    true_lower = padded.amin(2).sqrt()
    assert bool((fast.group_lower.double() <= true_lower + 1e-9).all())
    # and about as tight as the torch path's
    scale = float(true_lower[true_lower.isfinite()].max())
    assert float((fast.group_lower - slow.group_lower).abs().max()) < 1e-3 * scale


def test_subset_of_rows(torch_path):
    x = data(3000, 50)
    c = x[:200].double() + 0.1
    rows = torch.arange(0, 3000, 7)
    fast = assign_exact(x, c, rows=rows)
    slow = torch_path(lambda: assign_exact(x, c, rows=rows))
    assert torch.equal(fast.labels, slow.labels)
    assert torch.equal(fast.labels, (torch.cdist(x[rows].double(), c)).argmin(1))


@pytest.mark.parametrize("weighted", [False, True])
def test_cluster_sums_equal_float64_index_add(weighted, torch_path):
    x = data(5000, 70)
    labels = torch.randint(0, 37, (5000,), generator=torch.Generator().manual_seed(3))
    w = torch.rand(5000, dtype=torch.float64) if weighted else None
    sums, counts = weighted_sums(x, labels, w, 37)
    ref_sums, ref_counts = torch_path(lambda: weighted_sums(x, labels, w, 37))
    torch.testing.assert_close(sums, ref_sums, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(counts, ref_counts, rtol=1e-12, atol=0)


@pytest.mark.parametrize("k,prune", [(10, True), (10, "always"), (150, True), (150, False)])
def test_kmeans_compiled_equals_torch_path(k, prune, torch_path):
    x = data(4000, 40)
    c0 = x[:k].double()
    fast = kmeans(x, k, init=c0, max_iter=8, tol=0, prune=prune)
    slow = torch_path(lambda: kmeans(x, k, init=c0, max_iter=8, tol=0, prune=prune))
    assert torch.equal(fast.labels, slow.labels)
    assert fast.n_iter == slow.n_iter
    torch.testing.assert_close(fast.centroids, slow.centroids, rtol=1e-6, atol=1e-6)
    assert fast.inertia == pytest.approx(slow.inertia, rel=1e-9)


def test_abs_max_finds_nan_and_inf():
    x = data(1000, 40)
    assert _numba.abs_max(x) == pytest.approx(float(x.abs().max()))
    x[17, 3] = float("nan")
    assert np.isnan(_numba.abs_max(x))
    x[17, 3] = float("-inf")
    assert _numba.abs_max(x) == float("inf")
    with pytest.raises(ValueError, match="NaN or infinity"):
        kmeans(x, 3)


def test_load_warms_the_kernels():
    assert _numba.load() is True
    x = data(500, 40)
    res = kmeans(x, 8, init=x[:8].double(), max_iter=3, tol=0)
    assert torch.equal(res.labels, torch.cdist(x.double(), res.centroids.double()).argmin(1))


@pytest.mark.parametrize("K,centred", [(10, True), (300, False), (300, True)])
def test_worker_threads_share_tiles_without_changing_results(K, centred):
    # small max_memory: many tiles, shared out to two worker threads; the same labels, bounds and
    # undecided count as one thread, and the caller's torch thread count is left as it was
    x = data(3000, 48, shift=30.0 if centred else 0.0)
    c = x[:K].double() + 0.05
    center = x.double().mean(0).float().double() if centred else torch.zeros(48, dtype=torch.float64)
    rows = torch.arange(1, 3000, 3)
    before = torch.get_num_threads()
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            table = CentroidTable(c, "float32", center, order=balanced_groups(c, 64) if K >= 128 else None)
            results.append([assign_exact(x, table, max_memory=64 * 2**10, group_bounds=True, rows=r)
                            for r in (None, rows)])
            assert torch.get_num_threads() == threads
        finally:
            torch.set_num_threads(before)
    for one, two in zip(*results, strict=True):
        assert torch.equal(one.labels, two.labels)
        assert torch.equal(one.sq_dist, two.sq_dist)
        assert torch.equal(one.second_lower, two.second_lower)
        assert torch.equal(one.group_lower, two.group_lower)
        assert one.n_undecided == two.n_undecided
    full, sub = results[1]
    assert torch.equal(full.labels, torch.cdist(x.double(), c).argmin(1))
    assert torch.equal(sub.labels, full.labels[rows])


@pytest.mark.parametrize("K,weighted", [(10, False), (10, True), (300, False)])
def test_fused_sums_equal_float64_sums_whatever_the_thread_count(K, weighted, torch_path):
    # the Lloyd update summed inside the assignment pass: float64 sums of the rows per label, the same
    # bits with one or two worker threads (fixed runs of rows, added in run order), close to index_add
    x = data(6000, 48, shift=5.0)
    c = x[:K].double() + 0.05
    w = torch.rand(6000, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) if weighted else None
    center = x.double().mean(0)
    before = torch.get_num_threads()
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            results.append(assign_exact(x, CentroidTable(c, "float32", center), max_memory=64 * 2**10, sums=True,
                                        sample_weight=w, distances=False, exact_distances=False))
        finally:
            torch.set_num_threads(before)
    one, two = results
    assert one.sq_dist is None and one.second_lower is None  # distances=False: not kept
    assert torch.equal(one.labels, two.labels)
    assert torch.equal(one.sums, two.sums) and torch.equal(one.counts, two.counts)
    ref_sums, ref_counts = torch_path(lambda: weighted_sums(x, one.labels, w, K))
    torch.testing.assert_close(one.sums, ref_sums, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(one.counts, ref_counts, rtol=1e-12, atol=1e-12)
    # a subset of rows is not summed here (the caller sums)
    assert assign_exact(x, CentroidTable(c, "float32", center), rows=torch.arange(0, 6000, 2), sums=True).sums is None


def test_margin_count_matches_the_distances():
    # n_margin: rows whose runner-up is provably more than `margin` farther than the winner
    x = data(3000, 20)
    c = x[:30].double() + 0.01
    a = assign_exact(x, CentroidTable(c, "float32", x.double().mean(0)), exact_distances=False, margin=0.5)
    gap = a.second_lower.sqrt() - a.sq_dist.sqrt()
    assert 0 < a.n_margin <= int((gap > 0.5).sum())
    d = torch.cdist(x.double(), c).sort(dim=1).values
    assert a.n_margin <= int((d[:, 1] - d[:, 0] > 0.5).sum())


def test_default_prune_records_bounds_only_once_they_would_pay(torch_path):
    # prune=True starts without bounds and records them once most rows have a wide margin; the
    # labels are those of prune=False either way, compiled or not
    x = data(4000, 16)
    c0 = x[:12].double()
    plain = kmeans(x, 12, init=c0, max_iter=30, tol=0, prune=False)
    for run in (lambda f: f(), torch_path):
        auto = run(lambda: kmeans(x, 12, init=c0, max_iter=30, tol=0, prune=True))
        assert not auto.info["prune"][0] and any(auto.info["prune"])
        assert torch.equal(auto.labels, plain.labels) and auto.n_iter == plain.n_iter
        assert max(auto.info["pruned_fraction"]) > 0.5
