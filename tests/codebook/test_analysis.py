"""Code/label precision and recall, best codes, and the neuron baseline at matched recall."""

import pytest
import torch

from bottlenecks.codebook.analysis import best_codes, code_label_counts, neuron_precision_at_recall, precision_recall


def test_counts_precision_recall_against_a_loop():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 6, (500, 2), generator=g)
    labels = torch.randint(0, 4, (500,), generator=g)
    counts = code_label_counts(ids, labels, 6, 4)
    assert counts.shape == (6, 4) and int(counts.sum()) == 1000
    want = torch.zeros(6, 4, dtype=torch.long)
    for row, lab in zip(ids.tolist(), labels.tolist(), strict=True):
        for c in row:
            want[c, lab] += 1
    assert torch.equal(counts, want)
    prec, rec = precision_recall(counts, k=2)
    for c in range(6):
        for s in range(4):
            chosen = (ids == c).any(1)  # two draws may hit the same code: count pairs, as counts do
            n_pairs = int((ids == c).sum())
            assert float(prec[c, s]) == pytest.approx(int(((ids == c).sum(1) * (labels == s)).sum()) / n_pairs)
            assert float(rec[c, s]) == pytest.approx(int(((ids == c).sum(1) * (labels == s)).sum())
                                                     / int((labels == s).sum()))
            assert bool(chosen.any())
    torch.testing.assert_close(rec.sum(0), torch.full((4,), 2.0, dtype=torch.float64))
    torch.testing.assert_close(prec.sum(1), torch.ones(6, dtype=torch.float64))


def test_best_codes_respect_recall_and_support():
    labels = torch.tensor([0] * 50 + [1] * 50)
    ids = torch.cat([torch.full((40,), 2), torch.full((10,), 5), torch.full((30,), 3), torch.full((20,), 2)])
    # code 7 is chosen once, for label 1: precision 1 but too rare to count
    ids[99] = 7
    counts = code_label_counts(ids, labels, 8, 2)
    prec, rec = precision_recall(counts)
    code, p, r = best_codes(prec, rec, counts, min_recall=0.1, min_count=5)
    assert code.tolist() == [5, 3]  # label 0: code 5 is pure (precision 1) while code 2 is mixed
    assert p.tolist() == [1.0, 1.0] and r.tolist() == pytest.approx([0.2, 0.6])
    code, p, _ = best_codes(prec, rec, counts, min_recall=0.5, min_count=5)
    assert code.tolist() == [2, 3] and float(p[0]) == pytest.approx(40 / 59)
    code, _, _ = best_codes(prec, rec, counts, min_recall=0.9, min_count=5)
    assert code.tolist() == [-1, -1]


def test_neuron_precision_at_matched_recall_against_brute_force():
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (300,), generator=g)
    acts = torch.randn(300, 5, generator=g)
    acts[:, 2] -= 3 * (labels == 1).float()  # neuron 2 is low exactly on label 1: its negation detects it
    got = neuron_precision_at_recall(acts, labels, {1: 0.5, 0: 0.3})
    p, j = got[1]
    assert j == 5 + 2 and p > 0.9
    for lab, recall in ((1, 0.5), (0, 0.3)):
        best = 0.0
        for sign in (1, -1):
            for n in range(5):
                a = sign * acts[:, n]
                t = torch.quantile(a[labels == lab], 1 - recall)
                fire = a >= t
                best = max(best, float((fire & (labels == lab)).sum() / fire.sum()))
        assert got[lab][0] == pytest.approx(best)


def test_analysis_errors():
    with pytest.raises(ValueError, match=r"expected values in \[0, 4\)"):
        code_label_counts(torch.tensor([0, 4]), torch.tensor([0, 1]), 4, 2)
    with pytest.raises(ValueError, match="expected shape"):
        code_label_counts(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), 4, 2)
    with pytest.raises(ValueError, match="does not occur"):
        neuron_precision_at_recall(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), {2: 0.5})
    with pytest.raises(ValueError, match=r"expected a number in \(0, 1\]"):
        neuron_precision_at_recall(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), {1: 0.0})
