"""Codebook maintenance shared by the quantisers: EMA, re-seeding, usage statistics."""

import math

import torch

from bottlenecks.cluster import maintenance as mt


def test_code_hits_counts_each_selection_per_codebook():
    ids = torch.tensor([[[0, 1], [2, 2]], [[1, 1], [0, 2]]])  # (n=2, C=2, k=2)
    hits = mt.code_hits(ids, 3)
    assert hits.tolist() == [[1, 3, 0], [1, 0, 3]]


def test_ema_update_is_the_decayed_mean_of_the_rows_that_chose_each_code():
    g = torch.Generator().manual_seed(0)
    C, K, d, decay = 2, 4, 3, 0.5
    codes = torch.randn(C, K, d, generator=g)
    sums, counts = codes.clone(), torch.ones(C, K)
    z = torch.randn(10, C, d, generator=g)
    ids = torch.randint(0, K, (10, C, 1), generator=g)
    old_sums = sums.clone()
    hits = mt.ema_update_(codes, sums, counts, z, ids, decay)
    for c in range(C):
        for j in range(K):
            chose = ids[:, c, 0] == j
            assert int(hits[c, j]) == int(chose.sum())
            want_sum = decay * old_sums[c, j] + (1 - decay) * z[chose, c].sum(0)
            want_count = decay + (1 - decay) * float(chose.sum())
            assert torch.allclose(sums[c, j], want_sum, atol=1e-6)
            assert math.isclose(float(counts[c, j]), want_count, rel_tol=1e-6)
            assert torch.allclose(codes[c, j], want_sum / want_count, atol=1e-6)


def test_reseed_replaces_only_the_marked_codes_and_restarts_their_statistics():
    codes, sums, counts = torch.zeros(2, 3, 2), torch.full((2, 3, 2), 5.0), torch.full((2, 3), 7.0)
    which = torch.tensor([[True, False, False], [False, False, True]])
    new = torch.arange(12.0).view(2, 3, 2)
    assert mt.reseed_(codes, which, new, sums, counts) == 2
    assert torch.equal(codes[which], new[which]) and torch.equal(sums[which], new[which])
    assert torch.equal(counts[which], torch.ones(2)) and bool((counts[~which] == 7).all())
    assert bool((codes[~which] == 0).all()) and bool((sums[~which] == 5).all())


def test_sampled_rows_come_from_each_codebooks_own_inputs_and_follow_the_generator():
    z = torch.arange(20.0).view(5, 2, 2)  # row i, codebook c holds (4i + 2c, 4i + 2c + 1)
    a = mt.sample_rows(z, 6, torch.Generator().manual_seed(1))
    b = mt.sample_rows(z, 6, torch.Generator().manual_seed(1))
    assert a.shape == (2, 6, 2) and torch.equal(a, b)
    for c in range(2):
        assert all(any(torch.equal(r, z[i, c]) for i in range(5)) for r in a[c])


def test_weighted_rows_never_pick_rows_of_zero_weight():
    z = torch.cat([torch.zeros(50, 3), torch.full((5, 3), 10.0)])
    w = torch.cat([torch.zeros(50), torch.ones(5)])
    rows = mt.weighted_rows(z, w, 5, torch.Generator().manual_seed(0), noise=0.0)
    assert torch.equal(rows, torch.full((5, 3), 10.0))


def test_usage_perplexity_and_dead_fraction():
    counts = torch.tensor([[5, 5, 0, 0], [1, 1, 1, 1]])
    assert torch.allclose(mt.usage(counts)[0], torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64))
    assert torch.allclose(mt.perplexity(counts), torch.tensor([2.0, 4.0], dtype=torch.float64))
    assert mt.dead_fraction(counts).tolist() == [0.5, 0.0]
    assert mt.usage(torch.zeros(1, 3, dtype=torch.long)).sum() == 0  # no selection yet: no NaN
