"""Reading codes: how well does a code (or a neuron) pick out a label?

For a code ``c`` and a label ``s`` over ``n`` tokens:
    precision(c, s) = P(label = s | c chosen)       recall(c, s) = P(c chosen | label = s)

The neuron baseline thresholds one neuron's activation so that its recall for ``s`` equals a
given recall (the best code's), then measures its precision at that threshold.
"""

from __future__ import annotations

import torch

from ..validation import check_positive_int

__all__ = ["best_codes", "code_label_counts", "neuron_precision_at_recall", "precision_recall"]


def code_label_counts(ids: torch.Tensor, labels: torch.Tensor, num_codes: int, num_labels: int) -> torch.Tensor:
    """Co-occurrence counts ``(num_codes, num_labels)`` of codes and labels.

    ids: ``(n,)`` or ``(n, k)`` code ids chosen for each token (each of the ``k`` counts once);
    labels: ``(n,)`` label of each token, in ``[0, num_labels)``.
    """
    check_positive_int(num_codes, "num_codes")
    check_positive_int(num_labels, "num_labels")
    ids = torch.as_tensor(ids).long()
    labels = torch.as_tensor(labels).long().reshape(-1)
    if ids.dim() == 1:
        ids = ids[:, None]
    if ids.dim() != 2 or ids.shape[0] != labels.shape[0]:
        raise ValueError(f"ids: expected shape (n,) or (n, k) with n = len(labels) = {labels.shape[0]}, "
                         f"got {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_codes):
        raise ValueError(f"ids: expected values in [0, {num_codes}), got [{int(ids.min())}, {int(ids.max())}]")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
        raise ValueError(f"labels: expected values in [0, {num_labels}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    flat = ids * num_labels + labels[:, None]
    return torch.bincount(flat.reshape(-1), minlength=num_codes * num_labels).view(num_codes, num_labels)


def precision_recall(counts: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``counts: (K, L)`` -> ``precision (K, L)``, ``recall (K, L)`` (0 where undefined).

    ``k``: codes chosen per token, so a label's token count is its column sum over ``k`` (and
    its recalls over codes sum to ``k``).
    """
    check_positive_int(k, "k")
    c = counts.double()
    per_code = c.sum(1, keepdim=True)
    per_label = c.sum(0, keepdim=True) / k
    precision = torch.where(per_code > 0, c / per_code.clamp_min(1), torch.zeros_like(c))
    recall = torch.where(per_label > 0, c / per_label.clamp_min(1e-12), torch.zeros_like(c))
    return precision, recall


def best_codes(precision: torch.Tensor, recall: torch.Tensor, counts: torch.Tensor, *, min_recall: float = 0.05,
               min_count: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every label, the code of highest precision among codes with recall >= ``min_recall``
    and at least ``min_count`` tokens (ties: higher recall).

    Returns ``(code (L,), precision (L,), recall (L,))``; code -1 and zeros where no code qualifies.
    """
    ok = (recall >= min_recall) & (counts.sum(1, keepdim=True) >= min_count)
    score = torch.where(ok, precision + 1e-6 * recall, torch.full_like(precision, -1.0))
    best = score.argmax(0)
    cols = torch.arange(precision.shape[1])
    found = score[best, cols] >= 0
    code = torch.where(found, best, torch.full_like(best, -1))
    prec = torch.where(found, precision[best, cols], torch.zeros(()).double())
    rec = torch.where(found, recall[best, cols], torch.zeros(()).double())
    return code, prec, rec


def neuron_precision_at_recall(acts: torch.Tensor, labels: torch.Tensor, recalls: dict[int, float],
                               both_signs: bool = True) -> dict[int, tuple[float, int]]:
    """Best precision over neurons for each label when every neuron fires above the threshold
    that gives it the requested recall on that label.

    acts: ``(n, N)`` activations; labels: ``(n,)``; recalls: ``{label: recall in (0, 1]}``. A
    neuron ``j`` fires on ``acts[:, j] >= t``, ``t`` the ``(1 - recall)`` quantile of its
    activations on the label's tokens; with ``both_signs`` the negated neurons compete too.
    Returns ``{label: (precision, neuron)}`` (``neuron >= N``: the negated neuron ``neuron - N``).
    """
    a = acts.float()
    labels = torch.as_tensor(labels).reshape(-1)
    if a.dim() != 2 or a.shape[0] != labels.shape[0]:
        raise ValueError(f"acts: expected shape (n, N) with n = len(labels) = {labels.shape[0]}, got {tuple(a.shape)}")
    if both_signs:
        a = torch.cat([a, -a], 1)
    sorted_all = torch.sort(a.t().contiguous(), dim=1).values  # (N, n), sorted once for every label
    out = {}
    for label, recall in recalls.items():
        if not 0.0 < recall <= 1.0:
            raise ValueError(f"recall for label {label}: expected a number in (0, 1], got {recall}")
        pos = labels == label
        if not bool(pos.any()):
            raise ValueError(f"label {label} does not occur in labels")
        ap = a[pos]
        thr = torch.quantile(ap, 1.0 - recall, dim=0)  # (N,)
        fire_all = a.shape[0] - torch.searchsorted(sorted_all, thr[:, None].contiguous())[:, 0]
        fire_pos = (ap >= thr).sum(0)
        precision = fire_pos.double() / fire_all.double().clamp_min(1)
        j = int(precision.argmax())
        out[label] = (float(precision[j]), j)
    return out
