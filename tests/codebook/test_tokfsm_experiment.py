import torch

from bottlenecks.codebook.analysis import best_codes, code_label_counts, precision_recall
from bottlenecks.codebook.experiment import _spec


def _codebook(site, group, ids, states, num_codes=6, num_states=3):
    counts = code_label_counts(ids, states, num_codes, num_states)
    prec, rec = precision_recall(counts)
    code, p, r = best_codes(prec, rec, counts, min_recall=0.05, min_count=1)
    return {"site": site, "group": group, "code": code, "precision": p, "recall": r, "counts": counts}


def test_steering_codes_precise_vs_frequent():
    states = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    # head 0: state 0 mostly writes code 1, which state 1 also uses; code 2 is rare but only on state 0
    head0 = torch.tensor([1, 1, 1, 2, 1, 1, 3, 4, 4, 4])
    # head 1: no code is precise for state 0 (code 5: half of its uses are on state 0)
    head1 = torch.tensor([5, 5, 5, 5, 5, 5, 5, 5, 0, 0])
    per_cb = [_codebook("attn", 0, head0, states), _codebook("attn", 1, head1, states)]
    assert _spec(per_cb, 0, 0.6, "precise") == {"attn": {0: [2]}}
    assert _spec(per_cb, 0, 0.5, "frequent") == {"attn": {0: [1], 1: [5]}}
    assert _spec(per_cb, 2, 0.5, "frequent") == {"attn": {0: [4], 1: [0]}}
