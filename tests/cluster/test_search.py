import pytest
import torch

from bottlenecks.cluster import nearest
from bottlenecks.cluster.search import argmin_rows, top2_rows


def brute(x, codes, k, metric):
    x, codes = x.double(), codes.double()
    if metric == "l2":
        d = torch.cdist(x, codes) ** 2
    elif metric == "cosine":
        d = 1 - torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(codes, dim=-1).T
    else:
        d = -(x @ codes.T)
    return d.topk(k, dim=1, largest=False)


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
@pytest.mark.parametrize("k", [1, 4])
def test_nearest_matches_brute_force_with_tiny_memory_cap(metric, k):
    g = torch.Generator().manual_seed(0)
    x, codes = torch.randn(517, 12, generator=g), torch.randn(203, 12, generator=g)
    dist, idx = nearest(x, codes, k=k, metric=metric, max_memory=20_000)  # forces many chunks
    ref_d, ref_i = brute(x, codes, k, metric)
    assert dist.shape == idx.shape == (517, k)
    assert torch.equal(idx, ref_i)
    torch.testing.assert_close(dist.double(), ref_d, rtol=1e-4, atol=1e-4)


def test_nearest_batched_over_codebooks_searches_each_codebook_separately():
    g = torch.Generator().manual_seed(1)
    x, codes = torch.randn(300, 5, 7, generator=g), torch.randn(5, 40, 7, generator=g)
    dist, idx = nearest(x, codes, k=3, max_memory=50_000)
    assert idx.shape == (300, 5, 3)
    for c in range(5):
        ref_d, ref_i = brute(x[:, c], codes[c], 3, "l2")
        assert torch.equal(idx[:, c], ref_i)
        torch.testing.assert_close(dist[:, c].double(), ref_d, rtol=1e-4, atol=1e-4)


def test_two_level_reductions_equal_torch():
    g = torch.Generator().manual_seed(2)
    for K in (64, 130, 640, 1000):
        s = torch.randn(97, K, generator=g)
        v, i = argmin_rows(s)
        assert torch.equal(i, s.argmin(1)) and torch.equal(v, s.amin(1))
        v1, i1, v2 = top2_rows(s)
        ref = s.topk(2, dim=1, largest=False)
        assert torch.equal(i1, ref.indices[:, 0])
        assert torch.equal(v1, ref.values[:, 0]) and torch.equal(v2, ref.values[:, 1])


def test_nearest_does_not_modify_inputs_and_accepts_non_contiguous():
    x = torch.randn(50, 8).T.contiguous().T  # non-contiguous view
    codes = torch.randn(20, 8)
    xc, cc = x.clone(), codes.clone()
    _, idx = nearest(x, codes)
    assert torch.equal(x, xc) and torch.equal(codes, cc)
    assert torch.equal(idx[:, 0], brute(x, codes, 1, "l2")[1][:, 0])


@pytest.mark.parametrize("bad, match", [
    (dict(x=torch.randn(5, 3), codes=torch.randn(4, 2)), "features"),
    (dict(x=torch.randn(5, 3), codes=torch.randn(4, 3), k=5), "k=5"),
    (dict(x=torch.randn(5, 3), codes=torch.randn(4, 3), k=0), ">= 1"),
    (dict(x=torch.randn(5), codes=torch.randn(4, 5)), "2-D"),
    (dict(x=torch.tensor([[float("nan"), 1.0]]), codes=torch.randn(4, 2)), "NaN"),
    (dict(x=torch.randn(5, 3), codes=torch.randn(4, 3), metric="hamming"), "metric"),
    (dict(x=torch.randn(5, 2, 3), codes=torch.randn(3, 4, 3)), "expected x"),
])
def test_nearest_errors_are_clear(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        nearest(**bad)


def test_nearest_rejects_integer_input():
    with pytest.raises(TypeError, match="floating-point"):
        nearest(torch.ones(3, 2, dtype=torch.long), torch.randn(4, 2))


def test_nearest_mask_excludes_codes():
    g = torch.Generator().manual_seed(4)
    x, codes = torch.randn(200, 3, 5, generator=g), torch.randn(3, 30, 5, generator=g)
    mask = torch.rand(3, 30, generator=g) > 0.5
    _, idx = nearest(x, codes, k=2, mask=mask)
    assert bool(mask.gather(1, idx.permute(1, 0, 2).reshape(3, -1)).all())
    for c in range(3):
        allowed = mask[c].nonzero().squeeze(1)
        ref = brute(x[:, c], codes[c, allowed], 2, "l2")[1]
        assert torch.equal(idx[:, c], allowed[ref])


def test_nearest_mask_shape_error():
    with pytest.raises(ValueError, match="mask"):
        nearest(torch.randn(4, 2), torch.randn(5, 2), mask=torch.ones(4, dtype=torch.bool))


def test_prepared_codes_are_never_stale():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(50, 2, 4, generator=g)
    for _ in range(3):  # fresh codes each time: the allocator may hand out the same memory
        codes = torch.randn(2, 20, 4, generator=g)
        _, idx = nearest(x, codes)
        assert torch.equal(idx[:, 0], brute(x[:, 0], codes[0], 1, "l2")[1])
    codes.mul_(-1)  # in place: the version changes
    _, idx = nearest(x, codes)
    assert torch.equal(idx[:, 1], brute(x[:, 1], codes[1], 1, "l2")[1])


@pytest.mark.parametrize("K", [37, 1000, 1003, 4096, 4111])
@pytest.mark.parametrize("k", [1, 3, 8, 16])
def test_topk_rows_block_prefilter_equals_topk(K, k):
    from bottlenecks.cluster.search import topk_rows

    g = torch.Generator().manual_seed(K + k)
    scores = torch.randn(64, K, generator=g)
    scores[:, -1] = -10.0 - torch.arange(64.0)  # winners in the ragged tail block too
    v, i = topk_rows(scores, k)
    rv, ri = scores.topk(k, dim=1, largest=False, sorted=True)
    assert torch.equal(v, rv) and torch.equal(i, ri)


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
def test_prepared_codes_are_reused_and_refreshed_after_in_place_updates(metric):
    g = torch.Generator().manual_seed(0)
    x, codes = torch.randn(50, 8, generator=g), torch.randn(30, 8, generator=g)
    first = nearest(x, codes, k=3, metric=metric)
    again = nearest(x, codes, k=3, metric=metric)  # served from the prepared-codes cache
    assert torch.equal(first[1], again[1]) and torch.equal(first[0], again[0])
    with torch.no_grad():
        codes[first[1][0, 0]] += 100.0  # in place: the cache must notice
    fresh = nearest(x, codes.clone(), k=3, metric=metric)
    cached = nearest(x, codes, k=3, metric=metric)
    assert torch.equal(fresh[1], cached[1]) and torch.equal(fresh[0], cached[0])
    assert not torch.equal(cached[1], first[1])
    half = nearest(x.double(), codes.double(), k=3, metric=metric)  # another dtype: another table
    assert torch.equal(half[1], cached[1])


def test_nearest_under_inference_mode_then_outside_it():
    # d = 64 takes the GEMM path with its reused scores buffer; a buffer first made under
    # inference_mode must not be written by a later call outside it (it raised before)
    g = torch.Generator().manual_seed(0)
    x, codes = torch.randn(50, 64, generator=g), torch.randn(30, 64, generator=g)
    expected = torch.cdist(x.double(), codes.double()).argmin(1)
    with torch.inference_mode():
        _, i_inf = nearest(x, codes)
    with torch.no_grad():
        _, i_ng = nearest(x, codes)
    _, i = nearest(x, codes)
    for got in (i_inf, i_ng, i):
        assert torch.equal(got[:, 0], expected)
