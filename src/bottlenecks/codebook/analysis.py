"""Reading codes: how well does a code (or a neuron) pick out a label?

For a code ``c`` and a label ``s`` over ``n`` tokens:
    precision(c, s) = P(label = s | c chosen)       recall(c, s) = P(c chosen | label = s)

The neuron baseline thresholds one neuron's activation so that its recall for ``s`` equals a
given recall (the best code's), then measures its precision at that threshold.
"""

from __future__ import annotations

import torch

from ..validation import check_positive_int

__all__ = ["best_codes", "code_examples", "code_label_counts", "code_records", "neuron_precision_at_recall",
           "precision_recall"]


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


def code_examples(ids: torch.Tensor, num_codes: int, per_code: int = 5,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Where each code of one codebook is chosen, for a code browser.

    ids: ``(n, T)`` or ``(n, T, k)`` code ids chosen at each of ``T`` tokens of ``n`` sequences.
    Returns ``usage (num_codes,)``: tokens on which each code is among the chosen, and
    ``{code: (m, 2)}``: ``(sequence, position)`` of up to ``per_code`` of them for every used code,
    drawn uniformly at random without replacement through ``generator`` (sorted by position).
    """
    check_positive_int(num_codes, "num_codes")
    check_positive_int(per_code, "per_code")
    ids = torch.as_tensor(ids).long()
    if ids.dim() == 2:
        ids = ids[..., None]
    if ids.dim() != 3:
        raise ValueError(f"ids: expected shape (n, T) or (n, T, k), got {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_codes):
        raise ValueError(f"ids: expected values in [0, {num_codes}), got [{int(ids.min())}, {int(ids.max())}]")
    n, T, k = ids.shape
    codes = ids.reshape(-1)
    token = torch.arange(n * T).repeat_interleave(k)
    usage = torch.bincount(codes, minlength=num_codes)
    # sort by code, ties in a random order: the first per_code of each code are a uniform sample
    order = torch.argsort(codes.double() + torch.rand(codes.shape, generator=generator, dtype=torch.float64))
    starts = torch.cumsum(usage, 0) - usage
    examples = {}
    for c in torch.nonzero(usage).flatten().tolist():
        picked = token[order[int(starts[c]): int(starts[c]) + min(per_code, int(usage[c]))]].sort().values
        examples[c] = torch.stack([picked // T, picked % T], 1)
    return usage, examples


def code_records(ids: dict[str, torch.Tensor], num_codes: int, token_text: list[list[str]], *,
                 labels: torch.Tensor | None = None, label_names: list[str] | None = None, per_codebook: int = 24,
                 per_code: int = 5, window: tuple[int, int] = (12, 3), min_precision: float = 0.5,
                 min_count: int = 10, generator: torch.Generator | None = None) -> list[dict]:
    """Plain records of codes for a code browser (one dict per code, JSON-ready).

    ids: ``{site: (n, T, groups, k)}`` code ids recorded on ``n`` sequences of ``T`` tokens;
    token_text: ``n`` lists of ``T`` token strings; labels: ``(n, T)`` label id of each token, -1
    where a token has none (precision / recall count labelled tokens only). Kept per codebook: its
    ``per_codebook`` most used codes and every code of precision >= ``min_precision`` for a label
    with >= ``min_count`` labelled uses. Each record: ``name``, ``site``, ``group``, ``code``,
    ``usage`` (tokens), ``share`` (of all tokens), ``top`` (best 3 labels: ``label``, ``precision``,
    ``recall``, ``count``) and ``contexts`` (``tokens``: the window around a random use, ``at``:
    the firing token's index in it, ``label``).
    """
    if len(token_text) == 0 or not ids:
        raise ValueError("code_records: expected recorded ids and token_text for at least one sequence")
    n, T = len(token_text), len(token_text[0])
    if labels is not None:
        labels = torch.as_tensor(labels).long()
        if labels.shape != (n, T):
            raise ValueError(f"labels: expected shape (n, T) = {(n, T)}, got {tuple(labels.shape)}")
        num_labels = int(labels.max()) + 1 if bool((labels >= 0).any()) else 0
        names = label_names or [str(i) for i in range(num_labels)]
        mask = labels.reshape(-1) >= 0
    records = []
    for site, site_ids in ids.items():
        site_ids = torch.as_tensor(site_ids).long()
        if site_ids.dim() != 4 or site_ids.shape[:2] != (n, T):
            raise ValueError(f"ids[{site!r}]: expected shape (n, T, groups, k) with (n, T) = {(n, T)}, "
                             f"got {tuple(site_ids.shape)}")
        groups, k = site_ids.shape[2], site_ids.shape[3]
        for g in range(groups):
            usage, examples = code_examples(site_ids[:, :, g], num_codes, per_code, generator=generator)
            most = torch.argsort(usage, descending=True, stable=True)[:per_codebook]
            keep = set(most[usage[most] > 0].tolist())
            prec = rec = counts = None
            if labels is not None and num_labels:
                flat = site_ids[:, :, g].reshape(n * T, k)[mask]
                counts = code_label_counts(flat, labels.reshape(-1)[mask], num_codes, num_labels)
                prec, rec = precision_recall(counts, k)
                precise = (prec.max(1).values >= min_precision) & (counts.sum(1) >= min_count)
                keep |= set(torch.nonzero(precise).flatten().tolist())
            for c in sorted(keep):
                top = []
                if prec is not None:
                    top = [{"label": names[j], "precision": float(prec[c, j]), "recall": float(rec[c, j]),
                            "count": int(counts[c, j])}
                           for j in torch.argsort(prec[c], descending=True, stable=True)[:3].tolist()
                           if counts[c, j] > 0]
                contexts = []
                for s, p in examples[c].tolist():
                    lo, hi = max(0, p - window[0]), min(T, p + window[1] + 1)
                    lab = int(labels[s, p]) if labels is not None and labels[s, p] >= 0 else None
                    contexts.append({"tokens": list(token_text[s][lo:hi]), "at": p - lo,
                                     "label": None if lab is None else names[lab]})
                records.append({"name": f"{site} [{g}] code {c}" if groups > 1 else f"{site} code {c}",
                                "site": site, "group": g, "code": c, "usage": int(usage[c]),
                                "share": float(usage[c]) / (n * T), "top": top, "contexts": contexts})
    return records
