"""Reading codes: how well does a code (or a neuron) pick out a label?

For a code ``c`` and a label ``s`` over ``n`` tokens:
    precision(c, s) = P(label = s | c chosen)       recall(c, s) = P(c chosen | label = s)

The neuron baseline thresholds one neuron's activation so that its recall for ``s`` equals a
given recall (the best code's), then measures its precision at that threshold.

Two protocols (:data:`PROTOCOLS`, :func:`codes_vs_neurons`):

- ``'paper'`` — the public code of Codebook Features (``code_search_utils.get_code_pr`` /
  ``get_neuron_pr``): tokens are every token of the evaluation sequences, labelled or not; a
  code's precision divides its hits on the labelled tokens by its activations on *every* token;
  codes are kept when their recall is above 1%; the neuron baseline is the block outputs (the
  caller passes them), top side only, its threshold the ``floor(recall * m)``-th largest
  activation on the ``m`` labelled tokens and its precision ``floor(recall * m)`` over the
  tokens at or above that threshold.
- ``'aligned'`` — this project's earlier protocol: only the labelled tokens count (activations
  elsewhere are never false positives), codes need recall >= 5% and 10 uses, and neurons compete
  with both signs at a quantile threshold. Kept as a comparison row.
"""

from __future__ import annotations

import torch

from ..validation import check_positive_int

__all__ = ["PROTOCOLS", "best_codes", "code_examples", "code_label_counts", "code_precision_recall", "code_records",
           "codes_vs_neurons", "neuron_precision_at_recall", "neuron_precision_at_recalls",
           "precision_recall"]

PROTOCOLS = ("paper", "aligned")


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
    many = neuron_precision_at_recalls(acts, labels, {label: [r] for label, r in recalls.items()}, both_signs)
    return {label: v[0] for label, v in many.items()}


def neuron_precision_at_recalls(acts: torch.Tensor, labels: torch.Tensor, recalls: dict[int, list[float]],
                                both_signs: bool = True) -> dict[int, list[tuple[float, int]]]:
    """:func:`neuron_precision_at_recall` at several recalls per label, ``{label: [recalls]}`` ->
    ``{label: [(precision, neuron)]}``: the activations are sorted once, and each label's
    quantiles come from one sort of its tokens (the same numbers as one call per recall)."""
    a = acts.float()
    labels = torch.as_tensor(labels).reshape(-1)
    if a.dim() != 2 or a.shape[0] != labels.shape[0]:
        raise ValueError(f"acts: expected shape (n, N) with n = len(labels) = {labels.shape[0]}, got {tuple(a.shape)}")
    for label, rs in recalls.items():
        for recall in rs:
            if not 0.0 < recall <= 1.0:
                raise ValueError(f"recall for label {label}: expected a number in (0, 1], got {recall}")
    if both_signs:
        a = torch.cat([a, -a], 1)
    sorted_all = torch.sort(a.t().contiguous(), dim=1).values  # (N, n), sorted once for every label
    out = {}
    for label, rs in recalls.items():
        pos = labels == label
        if not bool(pos.any()):
            raise ValueError(f"label {label} does not occur in labels")
        if not rs:
            out[label] = []
            continue
        ap = a[pos]
        q = torch.tensor([1.0 - r for r in rs], dtype=ap.dtype)
        thr = torch.quantile(ap, q, dim=0)  # (len(rs), N)
        fire_all = a.shape[0] - torch.searchsorted(sorted_all, thr.t().contiguous())  # (N, len(rs))
        res = []
        for i in range(len(rs)):
            fire_pos = (ap >= thr[i]).sum(0)
            precision = fire_pos.double() / fire_all[:, i].double().clamp_min(1)
            j = int(precision.argmax())
            res.append((float(precision[j]), j))
        out[label] = res
    return out


def _check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {list(PROTOCOLS)}, got {protocol!r}")
    return protocol


def _token_labels(labels, n: int, num_labels: int) -> torch.Tensor:
    labels = torch.as_tensor(labels).long().reshape(-1)
    if labels.shape[0] != n:
        raise ValueError(f"labels: expected one label per token ({n}), got {labels.shape[0]}")
    if labels.numel() and (int(labels.min()) < -1 or int(labels.max()) >= num_labels):
        raise ValueError(f"labels: expected values in [0, {num_labels}) or -1 (no label), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return labels


def code_precision_recall(ids: torch.Tensor, labels: torch.Tensor, num_codes: int, num_labels: int, *,
                          protocol: str = "paper") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precision and recall of every code for every label, over all tokens of some sequences.

    ids: ``(n,)`` or ``(n, k)`` code ids at each of ``n`` tokens; labels: ``(n,)`` label of each
    token, ``-1`` for a token without one. Returns ``precision (K, L)``, ``recall (K, L)`` and the
    hit counts ``(K, L)`` on labelled tokens. ``'paper'``: precision = hits / the code's
    activations on every token (unlabelled ones included); ``'aligned'``: unlabelled tokens are
    dropped first. Recall is the same under both: hits / the label's tokens (summing to ``k``).
    """
    _check_protocol(protocol)
    ids = torch.as_tensor(ids).long()
    ids = ids[:, None] if ids.dim() == 1 else ids
    labels = _token_labels(labels, ids.shape[0], num_labels)
    keep = labels >= 0
    counts = code_label_counts(ids[keep], labels[keep], num_codes, num_labels)
    precision, recall = precision_recall(counts, ids.shape[1])
    if protocol == "paper":
        acts = torch.bincount(ids.reshape(-1), minlength=num_codes).double()[:, None]
        precision = torch.where(acts > 0, counts.double() / acts.clamp_min(1), torch.zeros_like(precision))
    return precision, recall, counts


def _neuron_precision_paper(acts: torch.Tensor, labels: torch.Tensor, recalls: dict[int, float]) -> dict:
    """``get_neuron_pr`` of the public code: top side only, rank threshold on the labelled tokens."""
    sorted_all = torch.sort(acts.t().contiguous(), dim=1).values  # (N, n)
    out = {}
    for label, recall in recalls.items():
        pos = labels == label
        m = int(pos.sum())
        if m == 0:
            raise ValueError(f"label {label} does not occur in labels")
        hits = int(recall * m + 1e-9)  # the public int(recall * m), without float round-off (0.3 * 10 = 2.99..)
        if hits == 0:  # fewer than one matched token at this recall: the public code's precision is 0
            out[label] = (0.0, 0)
            continue
        thr = torch.sort(acts[pos], dim=0).values[m - hits]  # the hits-th largest activation, per neuron
        above = acts.shape[0] - torch.searchsorted(sorted_all, thr[:, None].contiguous())[:, 0]
        precision = hits / above.double()
        j = int(precision.argmax())
        out[label] = (float(precision[j]), j)
    return out


def codes_vs_neurons(codes: dict[str, torch.Tensor], acts: torch.Tensor, labels: torch.Tensor, num_codes: int,
                     num_labels: int, *, protocol: str = "paper", min_recall: float | None = None,
                     min_count: int | None = None) -> dict:
    """For every label, the most precise code over all codebooks and the best neuron's precision at
    that code's recall, under ``protocol`` (see the module docstring).

    codes: ``{site: (n, groups, k)}`` code ids at ``n`` tokens; acts: ``(n, N)`` neuron activations at
    the same tokens (``'paper'``: the block outputs); labels: ``(n,)``, ``-1`` where a token has no
    label. ``min_recall`` / ``min_count`` override the protocol's rule for keeping a code
    (``'paper'``: recall > 1%, any count; ``'aligned'``: recall >= 5%, >= 10 uses).

    Returns ``{"protocol", "code_precision" (L,), "code_recall" (L,), "codebook": [(site, group) or
    None] * L, "code" (L,) (-1 where none qualifies), "neuron_precision" (L,), "neuron" (L,)}``.
    """
    _check_protocol(protocol)
    if not codes:
        raise ValueError("codes: expected at least one codebook's ids")
    a = torch.as_tensor(acts).float()
    n = a.shape[0]
    labels = _token_labels(labels, n, num_labels)
    if a.dim() != 2:
        raise ValueError(f"acts: expected shape (n, N), got {tuple(a.shape)}")
    paper = protocol == "paper"
    floor = (0.01 if paper else 0.05) if min_recall is None else float(min_recall)
    need = (1 if paper else 10) if min_count is None else int(min_count)
    keep = torch.ones(n, dtype=torch.bool) if paper else labels >= 0
    best_p = torch.zeros(num_labels, dtype=torch.float64)
    best_r = torch.zeros(num_labels, dtype=torch.float64)
    best_code = torch.full((num_labels,), -1, dtype=torch.long)
    where: list = [None] * num_labels
    for site, ids in codes.items():
        ids = torch.as_tensor(ids).long()
        ids = ids[:, None, None] if ids.dim() == 1 else ids[:, :, None] if ids.dim() == 2 else ids
        if ids.dim() != 3 or ids.shape[0] != n:
            raise ValueError(f"codes[{site!r}]: expected shape (n, groups, k) with n = {n}, got {tuple(ids.shape)}")
        for g in range(ids.shape[1]):
            prec, rec, counts = code_precision_recall(ids[keep, g], labels[keep], num_codes, num_labels,
                                                      protocol=protocol)
            ok = (rec > floor) if paper else (rec >= floor)
            ok &= counts.sum(1, keepdim=True) >= need
            score = torch.where(ok, prec + 1e-6 * rec, torch.full_like(prec, -1.0))
            top = score.argmax(0)
            cols = torch.arange(num_labels)
            better = (score[top, cols] >= 0) & (score[top, cols] > best_p + 1e-6 * best_r)
            for s in torch.nonzero(better).flatten().tolist():
                best_p[s], best_r[s], best_code[s] = prec[top[s], s], rec[top[s], s], top[s]
                where[s] = (site, g)
    recalls = {s: min(1.0, float(best_r[s])) for s in range(num_labels) if best_code[s] >= 0}
    if paper:
        neuron = _neuron_precision_paper(a, labels, recalls)
    else:
        neuron = neuron_precision_at_recall(a[keep], labels[keep], recalls, both_signs=True)
    return {"protocol": protocol, "code_precision": best_p, "code_recall": best_r, "codebook": where,
            "code": best_code,
            "neuron_precision": torch.tensor([neuron[s][0] if s in neuron else 0.0 for s in range(num_labels)],
                                             dtype=torch.float64),
            "neuron": torch.tensor([neuron[s][1] if s in neuron else -1 for s in range(num_labels)])}


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
                 precise_per_codebook: int = 24, per_code: int = 5, window: tuple[int, int] = (12, 3),
                 min_precision: float = 0.5, min_count: int = 10,
                 generator: torch.Generator | None = None) -> list[dict]:
    """Plain records of codes for a code browser (one dict per code, JSON-ready).

    ids: ``{site: (n, T, groups, k)}`` code ids recorded on ``n`` sequences of ``T`` tokens;
    token_text: ``n`` lists of ``T`` token strings; labels: ``(n, T)`` label id of each token, -1
    where a token has none (precision / recall count labelled tokens only). Kept per codebook: its
    ``per_codebook`` most used codes and its ``precise_per_codebook`` most precise codes among those
    of precision >= ``min_precision`` for a label with >= ``min_count`` labelled uses (ties: more
    uses first), so the records' size is bounded by the codebooks, not by the data. Each record:
    ``name``, ``site``, ``group``, ``code``, ``usage`` (tokens), ``share`` (of all tokens), ``top``
    (best 3 labels: ``label``, ``precision``, ``recall``, ``count``) and ``contexts`` (``tokens``:
    the window around a random use, ``at``: the firing token's index in it, ``label``).
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
                best = prec.max(1).values
                ok = (best >= min_precision) & (counts.sum(1) >= min_count)
                score = torch.where(ok, best + 1e-9 * counts.sum(1), torch.full_like(best, -1.0))
                top = torch.argsort(score, descending=True, stable=True)[:precise_per_codebook]
                keep |= set(top[score[top] >= 0].tolist())
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
