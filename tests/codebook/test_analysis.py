"""Code/label precision and recall, best codes, and the neuron baseline at matched recall."""

import pytest
import torch

from bottlenecks.codebook import analysis
from bottlenecks.codebook.analysis import best_codes, code_label_counts, neuron_precision_at_recall, precision_recall

code_precision_recall, codes_vs_neurons = analysis.code_precision_recall, analysis.codes_vs_neurons


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


def test_several_recalls_per_label_give_the_one_recall_answers():
    g = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 4, (500,), generator=g)
    acts = torch.randn(500, 12, generator=g)
    acts[:, :3] = acts[:, :3].round()  # ties at the thresholds
    acts[:, 5] += 2 * (labels == 2).float()
    recalls = {0: [0.05, 0.5, 1.0], 2: [0.3, 0.75], 3: []}
    for both in (True, False):
        got = analysis.neuron_precision_at_recalls(acts, labels, recalls, both_signs=both)
        assert [len(got[lab]) for lab in recalls] == [3, 2, 0]
        for lab, rs in recalls.items():
            for r, pair in zip(rs, got[lab], strict=True):
                assert pair == neuron_precision_at_recall(acts, labels, {lab: r}, both_signs=both)[lab]
    assert got[2][0][1] == 5  # the neuron raised on label 2
    with pytest.raises(ValueError, match="recall for label 0"):
        analysis.neuron_precision_at_recalls(acts, labels, {0: [0.5, 1.5]})


def test_analysis_errors():
    with pytest.raises(ValueError, match=r"expected values in \[0, 4\)"):
        code_label_counts(torch.tensor([0, 4]), torch.tensor([0, 1]), 4, 2)
    with pytest.raises(ValueError, match="expected shape"):
        code_label_counts(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), 4, 2)
    with pytest.raises(ValueError, match="does not occur"):
        neuron_precision_at_recall(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), {2: 0.5})
    with pytest.raises(ValueError, match=r"expected a number in \(0, 1\]"):
        neuron_precision_at_recall(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), {1: 0.0})


# --- issue 17: the paper's protocol ------------------------------------------------------------

def hand_made():
    """12 tokens, state labels on every second token (-1: no label), one codebook, two neurons.

    label 0 at tokens 1, 5, 9 (codes 3, 3, 2); label 1 at tokens 3, 7, 11 (code 4 each time).
    Code 3 also fires on the unlabelled token 2; code 5 only on unlabelled tokens.
    Neuron 0 is 1 on the label-0 tokens and on tokens 0 and 2; neuron 1 is -1 on the label-0 tokens."""
    labels = torch.tensor([-1, 0, -1, 1, -1, 0, -1, 1, -1, 0, -1, 1])
    ids = torch.tensor([5, 3, 3, 4, 5, 3, 5, 4, 5, 2, 5, 4])
    acts = torch.zeros(12, 2)
    acts[[0, 1, 2, 5, 9], 0] = 1.0
    acts[[1, 5, 9], 1] = -1.0
    return labels, ids, acts


def test_code_precision_counts_every_token_under_the_paper_protocol():
    labels, ids, _ = hand_made()
    prec, rec, counts = code_precision_recall(ids, labels, 6, 2, protocol="paper")
    assert float(prec[3, 0]) == pytest.approx(2 / 3)  # 2 hits over its 3 activations (token 2 included)
    assert float(rec[3, 0]) == pytest.approx(2 / 3) and float(prec[2, 0]) == 1.0 and float(prec[4, 1]) == 1.0
    assert int(counts[5].sum()) == 0 and float(prec[5].sum()) == 0.0
    prec, rec2, _ = code_precision_recall(ids, labels, 6, 2, protocol="aligned")
    assert float(prec[3, 0]) == 1.0  # the unlabelled token never counts against it
    assert torch.equal(rec, rec2)


def test_codes_vs_neurons_on_a_hand_made_sequence():
    labels, ids, acts = hand_made()
    codes = {"attn": ids[:, None, None]}
    paper = codes_vs_neurons(codes, acts, labels, 6, 2, protocol="paper")
    # label 0: code 2 (precision 1, recall 1/3) beats code 3 (2/3); at recall 1/3 the threshold is
    # neuron 0's largest value 1, reached on 5 tokens: 1/5; neuron 1 counts on its top side only (1/12)
    assert paper["code"].tolist() == [2, 4] and paper["codebook"] == [("attn", 0), ("attn", 0)]
    assert paper["code_precision"].tolist() == [1.0, 1.0]
    assert paper["code_recall"].tolist() == pytest.approx([1 / 3, 1.0])
    assert paper["neuron_precision"].tolist() == pytest.approx([1 / 5, 1 / 3])
    assert paper["neuron"].tolist() == [0, 1]
    # the earlier protocol: labelled tokens only, both signs, recall >= 5% and >= min_count uses
    ours = codes_vs_neurons(codes, acts, labels, 6, 2, protocol="aligned", min_count=1)
    assert ours["code"].tolist() == [3, 4]  # code 3 is pure on labelled tokens, with the higher recall
    assert ours["neuron_precision"].tolist() == pytest.approx([1.0, 1.0])
    # neuron 0 is perfect once its activations on unlabelled tokens stop counting (1/5 above)
    assert ours["neuron"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="protocol"):
        codes_vs_neurons(codes, acts, labels, 6, 2, protocol="public")
    with pytest.raises(ValueError, match=r"labels: expected values in \[0, 2\) or -1"):
        codes_vs_neurons(codes, acts, labels - 1, 6, 2)


def test_paper_neuron_precision_matches_the_public_formula():
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(-1, 3, (400,), generator=g)
    acts = torch.randn(400, 6, generator=g)
    acts[:, 4] += 2 * (labels == 2).float()
    codes = {"mlp": torch.randint(0, 8, (400, 1, 2), generator=g)}
    res = codes_vs_neurons(codes, acts, labels, 8, 3, protocol="paper")
    for s in range(3):
        recall = float(res["code_recall"][s])
        matched = torch.sort(acts[labels == s], dim=0).values  # (m, N)
        hits = int(recall * matched.shape[0] + 1e-9)
        thr = matched[-hits]
        want = max(hits / int((acts[:, j] >= thr[j]).sum()) for j in range(6))
        assert float(res["neuron_precision"][s]) == pytest.approx(want)
    assert int(res["neuron"][2]) == 4
