"""The exact small-dimension search: the C kernel and the torch path give the float64 answer."""

import pytest
import torch

from bottlenecks.cluster import nearest, small_d
from bottlenecks.cluster.small_d import CodeTable, search

HAS_C = small_d.c_kernel() is not None
BACKENDS = ["torch"] + (["c", "c32"] if HAS_C else [])  # "c": the int8 pre-filter where the CPU has it


def reference(x, codes, k, metric="l2", mask=None):
    """Float64 brute force, lowest index first at exact ties (a stable sort)."""
    x64, c64 = x.double().transpose(0, 1), codes.double()  # (C, n, d), (C, K, d)
    if metric == "l2":
        s = ((x64[:, :, None, :] - c64[:, None, :, :]) ** 2).sum(-1)
    else:
        s = -(x64[:, :, None, :] * c64[:, None, :, :]).sum(-1)
    if mask is not None:
        s = s.masked_fill(~mask[:, None, :], float("inf"))
    v, i = torch.sort(s, dim=2, stable=True)
    return v[..., :k].transpose(0, 1), i[..., :k].transpose(0, 1)


def clustered(n, C, K, d, g, offset=0.0):
    centres = torch.randn(C, 8, d, generator=g) * 3
    x = centres[torch.arange(C), torch.randint(0, 8, (n, C), generator=g)] + 0.3 * torch.randn(n, C, d, generator=g)
    codes = centres[torch.arange(C)[:, None], torch.randint(0, 8, (C, K), generator=g)] + \
        0.3 * torch.randn(C, K, d, generator=g)
    return x + offset, codes + offset


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(200, 3, 50, 14, 1), (130, 2, 37, 32, 4), (64, 4, 5, 1, 5), (300, 1, 300, 7, 2)])
def test_equals_float64_search_on_random_data(backend, shape):
    n, C, K, d, k = shape
    g = torch.Generator().manual_seed(sum(shape))
    x, codes = torch.randn(n, C, d, generator=g), torch.randn(C, K, d, generator=g)
    dist, idx = search(x, CodeTable(codes, "l2"), k, backend=backend)
    rv, ri = reference(x, codes, k)
    assert torch.equal(idx, ri)
    torch.testing.assert_close(dist, rv, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clustered_data_far_from_the_origin_with_a_shift(backend):
    g = torch.Generator().manual_seed(1)
    x, codes = clustered(400, 3, 64, 14, g, offset=300.0)
    centre = x.double().mean(0).float()  # (C, d)
    _, plain = search(x, CodeTable(codes, "l2"), 2, backend=backend)
    _, shifted = search(x, CodeTable(codes, "l2", center=centre), 2, backend=backend)
    _, ri = reference(x, codes, 2)
    assert torch.equal(plain, ri) and torch.equal(shifted, ri)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_ties_go_to_the_lowest_index(backend):
    g = torch.Generator().manual_seed(2)
    codes = torch.randn(2, 20, 6, generator=g)
    codes[:, 11] = codes[:, 3]  # duplicated codes: every row nearest to 3 ties with 11
    codes[:, 17] = codes[:, 3]
    x = codes[:, [3, 3, 11, 5]].transpose(0, 1) + 1e-3 * torch.randn(4, 2, 6, generator=g)
    _, idx = search(x, CodeTable(codes, "l2"), 3, backend=backend)
    _, ri = reference(x, codes, 3)
    assert torch.equal(idx, ri)
    assert idx[0, 0].tolist() == [3, 11, 17]
    if backend != "c" or not small_d.c_kernel().has_q8:  # the int8 pre-filter scores ties in float64 anyway
        assert small_d.last_undecided() > 0  # the certificate refused the tied rows


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["many equal codes", "rows at the codes' mean", "far and tight", "k = 20",
                                  "outlying rows and codes"])
def test_hard_cases_for_the_int8_pre_filter(backend, case):
    """More tied candidates than its buffer holds (the row is searched in full), rows far
    tighter than the codes (the row scale is clamped), a cloud far from the origin, k > 16."""
    g = torch.Generator().manual_seed(8)
    codes = torch.randn(2, 300, 14, generator=g)
    x = torch.randn(64, 2, 14, generator=g)
    k = 2
    if case == "many equal codes":
        codes[:, 100:200] = codes[:, 7:8]
        x = codes[:, [7] * 64].transpose(0, 1) + 1e-4 * x
    elif case == "rows at the codes' mean":
        x = codes.mean(1) + 1e-6 * x
    elif case == "far and tight":
        codes, x = 1e4 + 1e-2 * codes, 1e4 + 1e-2 * x
    elif case == "outlying rows and codes":  # rows clipped by the row scale; codes that set the code scale
        x[5] *= 1e3
        x[6, 1] *= 30
        codes[:, :3] *= 40
    else:
        k = 20
    dist, idx = search(x, CodeTable(codes, "l2"), k, backend=backend)
    rv, ri = reference(x, codes, k)
    assert torch.equal(idx, ri)
    torch.testing.assert_close(dist, rv, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mask_and_too_few_allowed_codes(backend):
    g = torch.Generator().manual_seed(3)
    x, codes = torch.randn(50, 2, 5, generator=g), torch.randn(2, 30, 5, generator=g)
    mask = torch.rand(2, 30, generator=g) < 0.5
    mask[1] = False
    mask[1, [4, 9]] = True  # head 1 allows two codes, k = 3 asks for more
    dist, idx = search(x, CodeTable(codes, "l2", mask=mask), 3, backend=backend)
    rv, ri = reference(x, codes, 3, mask=mask)
    assert torch.equal(idx[:, 0], ri[:, 0])
    assert set(idx[:, 1, :2].flatten().tolist()) <= {4, 9}
    assert torch.isinf(dist[:, 1, 2]).all() and not mask[1, idx[:, 1, 2]].any()
    assert idx[0, 1, 2] == 0  # the lowest masked-out index fills the slot


@pytest.mark.parametrize("backend", BACKENDS)
def test_dot_metric_and_float64_inputs(backend):
    g = torch.Generator().manual_seed(4)
    x, codes = torch.randn(90, 2, 9, generator=g, dtype=torch.float64), torch.randn(2, 40, 9, generator=g,
                                                                                     dtype=torch.float64)
    dist, idx = search(x, CodeTable(codes, "dot"), 2, backend=backend)
    rv, ri = reference(x, codes, 2, metric="dot")
    assert torch.equal(idx, ri)
    torch.testing.assert_close(dist, rv)


@pytest.mark.skipif(not HAS_C, reason="no C compiler")
def test_c_kernel_and_torch_path_agree_on_a_larger_problem():
    g = torch.Generator().manual_seed(5)
    x, codes = clustered(2000, 5, 300, 14, g)
    table = CodeTable(codes, "l2")
    dc, ic = search(x, table, 4, backend="c")
    dt, it = search(x, table, 4, backend="torch")
    assert torch.equal(ic, it)
    torch.testing.assert_close(dc, dt, rtol=1e-12, atol=1e-12)
    sub = torch.tensor([4, 1])  # a subset of the codebooks
    ds, is_ = search(x, table, 4, codebooks=sub, backend="c")
    assert torch.equal(is_, ic[:, sub])


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
def test_nearest_dispatches_small_dimensions_exactly(metric):
    g = torch.Generator().manual_seed(6)
    x, codes = torch.randn(120, 3, 14, generator=g), torch.randn(3, 70, 14, generator=g)
    dist, idx = nearest(x, codes, 2, metric)
    if metric == "cosine":
        xs, cs = torch.nn.functional.normalize(x, dim=-1), torch.nn.functional.normalize(codes, dim=-1)
        rv, ri = reference(xs, cs, 2, metric="dot")
        rv = rv + 1
    else:
        rv, ri = reference(x, codes, 2, metric)
    assert torch.equal(idx, ri)
    torch.testing.assert_close(dist, rv.float(), rtol=1e-5, atol=1e-5)
    d1, i1 = nearest(x[:, 0], codes[0], 1, metric)  # one codebook: (n, d) -> (n, k)
    assert i1.shape == (120, 1) and torch.equal(i1[:, 0], ri[:, 0, 0])


def test_bad_input_is_refused_clearly():
    table = CodeTable(torch.randn(2, 5, 3), "l2")
    with pytest.raises(ValueError, match="k=6"):
        search(torch.randn(4, 2, 3), table, 6)
    with pytest.raises(ValueError, match="dimension 4"):
        search(torch.randn(4, 2, 4), table, 1)
    with pytest.raises(ValueError, match="x has 3 codebooks"):
        search(torch.randn(4, 3, 3), table, 1)
    with pytest.raises(ValueError, match="backend"):
        search(torch.randn(4, 2, 3), table, 1, backend="gpu")


@pytest.mark.skipif(not HAS_C, reason="no C compiler")
@pytest.mark.parametrize("per", [1, 3])
def test_rows_add_equals_index_add_in_the_same_order(per):
    g = torch.Generator().manual_seed(7)
    idx = torch.randint(0, 20, (50, per), generator=g)  # many repeats: the summation order matters
    src = torch.randn(50, 6, generator=g) * torch.logspace(-6, 6, 50)[:, None]
    ours = small_d.rows_add_(torch.zeros(20, 6), idx, src)
    ref = torch.zeros(20, 6).index_add_(0, idx.reshape(-1), src.repeat_interleave(per, 0))
    assert torch.equal(ours, ref)
    # float64 goes through index_add_ itself
    torch.testing.assert_close(small_d.rows_add_(torch.zeros(20, 6, dtype=torch.float64), idx, src.double()),
                               ref.double(), rtol=1e-6, atol=0)


def test_nearest_with_a_new_mask_each_call_on_the_same_codes():
    # small_d.nearest remembers the prepared codes of the last call; two calls in a row with
    # different mask tensors (an eval mask rebuilt after training) must each use their own mask
    g = torch.Generator().manual_seed(3)
    x, codes = torch.randn(40, 2, 5, generator=g), torch.randn(2, 30, 5, generator=g)
    for _ in range(3):
        mask = torch.rand(2, 30, generator=g) < 0.5
        mask[:, 0] = True
        dist, idx = small_d.nearest(x, codes, 2, mask=mask)
        rv, ri = reference(x, codes, 2, mask=mask)
        assert torch.equal(idx, ri)


@pytest.mark.skipif(not (HAS_C and small_d.c_kernel().has_q8), reason="no int8 pre-filter on this CPU")
def test_int8_pre_filter_on_crowded_keys_scores_few_candidates():
    """Keys crowding where the rows are (as k-means keys of real data do): the bound grows with
    the distance to each key, so the near keys are told apart with few float64 scores -- few
    enough that 'auto' keeps the int8 kernel. Keys far out (setting the codes' int8 scale) and
    an outlying row cost candidates but never exactness."""
    g = torch.Generator().manual_seed(9)
    x, codes = clustered(512, 2, 1024, 14, g)
    for outliers in (False, True):
        if outliers:
            codes[:, :4] *= 8
            x[3] *= 50
        table = CodeTable(codes, "l2")
        for k in (1, 3):
            dist, idx = search(x, table, k, backend="c")
            rv, ri = reference(x, codes, k)
            assert torch.equal(idx, ri)
            torch.testing.assert_close(dist, rv, rtol=1e-12, atol=1e-12)
            if not outliers:
                assert small_d._STATE["last_candidates"] < small_d.Q8_MAX_CANDIDATES / 2


@pytest.mark.skipif(not (HAS_C and small_d.c_kernel().has_q8), reason="no int8 pre-filter on this CPU")
def test_auto_measures_the_int8_candidates_once_and_keeps_or_leaves_it():
    g = torch.Generator().manual_seed(10)
    x, codes = torch.randn(256, 2, 14, generator=g), torch.randn(2, 300, 14, generator=g)
    table = CodeTable(codes, "l2")
    assert table.kernel is None
    _, idx = search(x, table, 1)
    assert table.kernel == "q8" and torch.equal(idx, reference(x, codes, 1)[1])
    # a hundred copies of the code every row sits on: every copy is a candidate, too many to score
    codes[:, 100:200] = codes[:, 7:8]
    x = codes[:, [7] * 256].transpose(0, 1) + 1e-4 * x
    table = CodeTable(codes, "l2")
    for kernel in ("f32", "f32"):  # measured on the first call, the float32 kernel on both
        _, idx = search(x, table, 1)
        assert table.kernel == kernel and torch.equal(idx, reference(x, codes, 1)[1])
    small_few = CodeTable(codes, "l2")
    search(x[:4], small_few, 1)  # 8 rows x codebooks: too few to measure, nothing decided yet
    assert small_few.kernel is None


@pytest.mark.skipif(not (HAS_C and small_d.c_kernel().has_q8), reason="no int8 pre-filter on this CPU")
def test_int8_jobs_on_openmp_and_python_threads_agree(monkeypatch):
    g = torch.Generator().manual_seed(11)
    x, codes = clustered(300, 5, 200, 14, g)
    table = CodeTable(codes, "l2")
    ref = reference(x, codes, 2)
    for threads in (1, 2, 3):
        omp = search(x, table, 2, backend="c", threads=threads)
        monkeypatch.setenv("BOTTLENECKS_SMALL_D_PYTHON_THREADS", "1")
        py = search(x, table, 2, backend="c", threads=threads)
        monkeypatch.delenv("BOTTLENECKS_SMALL_D_PYTHON_THREADS")
        assert torch.equal(omp[1], ref[1]) and torch.equal(py[1], ref[1]) and torch.equal(omp[0], py[0])
