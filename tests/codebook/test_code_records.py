"""code_examples / code_records: where codes fire, for the HTML code browser."""

import pytest
import torch

from bottlenecks.codebook.analysis import code_examples, code_label_counts, code_records, precision_recall


def test_code_examples_counts_and_positions():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 7, (5, 11, 2), generator=g)
    usage, examples = code_examples(ids, 9, per_code=3, generator=torch.Generator().manual_seed(1))
    assert usage.tolist() == torch.bincount(ids.reshape(-1), minlength=9).tolist()
    assert set(examples) == set(torch.nonzero(usage).flatten().tolist())
    for c, where in examples.items():
        assert len(where) == min(3, int(usage[c]))
        for s, p in where.tolist():
            assert c in ids[s, p].tolist()  # every example is a token where the code is chosen
    again = code_examples(ids, 9, per_code=3, generator=torch.Generator().manual_seed(1))[1]
    assert all(torch.equal(again[c], examples[c]) for c in examples)  # same generator, same examples


def test_code_examples_samples_every_use_alike():
    ids = torch.zeros(1, 200, dtype=torch.long)  # one code used everywhere
    picks = torch.cat([code_examples(ids, 1, per_code=5, generator=torch.Generator().manual_seed(s))[1][0][:, 1]
                       for s in range(40)])
    assert picks.float().mean().item() == pytest.approx(99.5, abs=12)  # not always the first positions


def test_code_examples_bad_input():
    with pytest.raises(ValueError, match=r"expected values in \[0, 3\), got \[0, 5\]"):
        code_examples(torch.tensor([[0, 5]]), 3)
    with pytest.raises(ValueError, match=r"expected shape \(n, T\) or \(n, T, k\)"):
        code_examples(torch.zeros(4, dtype=torch.long), 3)


def test_code_records_precision_matches_the_analysis():
    g = torch.Generator().manual_seed(0)
    n, T, K = 6, 10, 12
    labels = torch.randint(0, 3, (n, T), generator=g)
    labels[:, ::2] = -1  # half the tokens unlabelled
    # labelled tokens choose code = label (precise codes 0, 1, 2); the others a code in 3 .. K-1
    ids = torch.where(labels >= 0, labels, torch.randint(3, K, (n, T), generator=g))[:, :, None, None]
    text = [[f"t{p}" for p in range(T)] for _ in range(n)]
    recs = code_records({"site": ids}, K, text, labels=labels, per_codebook=1, per_code=2, min_count=1,
                        generator=torch.Generator().manual_seed(0))
    mask = labels.reshape(-1) >= 0
    counts = code_label_counts(ids.reshape(-1, 1)[mask], labels.reshape(-1)[mask], K, 3)
    prec, rec = precision_recall(counts)
    for r in recs:
        c = r["code"]
        assert r["usage"] == int((ids == c).sum())
        if r["top"]:
            best = r["top"][0]
            assert best["precision"] == pytest.approx(float(prec[c].max()))
            assert best["recall"] == pytest.approx(float(rec[c, int(best["label"])]))
        for x in r["contexts"]:
            assert x["tokens"][x["at"]].startswith("t")
    # one code kept for its usage, and the three precise ones whatever their usage rank
    precise = {r["code"]: r["top"][0] for r in recs if r["code"] < 3}
    assert set(precise) == {0, 1, 2} and len(recs) <= 4
    assert all(t["precision"] == 1.0 and t["label"] == str(c) for c, t in precise.items())


def test_code_records_keeps_the_most_precise_codes_only():
    # label 0 has 40 tokens, labels 1..7 have 20; code c is chosen on label c's tokens and on c of
    # label 0's (code 0 on the rest): precision 20 / (20 + c) falls with c, code 0's is 1
    labels = torch.cat([torch.zeros(40, dtype=torch.long), torch.arange(1, 8).repeat_interleave(20)])[None]
    ids = labels.clone()
    start = 0
    for c in range(1, 8):
        ids[0, start:start + c] = c
        start += c
    recs = code_records({"s": ids[:, :, None, None]}, 8, [["x"] * labels.shape[1]], labels=labels, per_codebook=0,
                        precise_per_codebook=3, min_count=1)
    assert sorted(r["code"] for r in recs) == [0, 1, 2]
    assert recs[1]["top"][0]["precision"] == pytest.approx(20 / 21)


def test_code_records_bad_shapes():
    with pytest.raises(ValueError, match=r"ids\['s'\]: expected shape \(n, T, groups, k\)"):
        code_records({"s": torch.zeros(2, 3, dtype=torch.long)}, 4, [["a"] * 3] * 2)
    with pytest.raises(ValueError, match=r"labels: expected shape \(n, T\) = \(2, 3\)"):
        code_records({"s": torch.zeros(2, 3, 1, 1, dtype=torch.long)}, 4, [["a"] * 3] * 2,
                     labels=torch.zeros(2, 4, dtype=torch.long))
