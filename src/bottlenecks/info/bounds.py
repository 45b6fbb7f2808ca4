"""Pairwise-distance bounds on the information in a noisy layer (Kolchinsky & Tracey, 2017,
"Estimating mixture entropy with pairwise distances"; used for the information plane of noisy
networks by Saxe et al. 2018 and Kolchinsky, Tracey & Wolpert 2019).

Model: the layer is ``T = h(X) + N(0, noise_var * I)`` with ``X`` uniform over the ``n`` inputs, so
``T`` is a mixture of ``n`` Gaussians ``p_i = N(h_i, noise_var I)`` and ``H(T | X)`` is the entropy of
one component. For mixtures, with ``D`` a divergence between components::

    H(T) ~ H(T|X) - (1/n) sum_i log (1/n) sum_j exp(-D(p_i || p_j))

is an **upper** bound for ``D = KL`` (``||h_i - h_j||^2 / (2 noise_var)``) and a **lower** bound for
``D = Bhattacharyya`` (``||h_i - h_j||^2 / (8 noise_var)``). Hence ``I(X;T) = H(T) - H(T|X)``:

    I_KL = -(1/n) sum_i log (1/n) sum_j exp(-||h_i - h_j||^2 / (2 s2))      >= I(X;T)
    I_BD = -(1/n) sum_i log (1/n) sum_j exp(-||h_i - h_j||^2 / (8 s2))      <= I(X;T)

Both lie in ``[0, log n]``. With discrete labels ``y`` the same estimates of ``H(T)`` and of
``H(T | Y=c)`` (the mixture of class ``c``'s components) give ``I(T;Y) = H(T) - sum_c p_c H(T|Y=c)``;
that difference of two upper (or two lower) bounds is an estimate, **not** a bound.
"""

from __future__ import annotations

import math

import torch

from ..validation import as_tensor, check_finite, check_ndim, check_nonempty

__all__ = ["pairwise_information_bounds"]

UNITS = {"nats": 1.0, "bits": 1.0 / math.log(2.0)}
_DEFAULT_MEMORY = 64 * 2**20


def _mixture_term(h: torch.Tensor, scale: float, max_memory: int | None) -> float:
    """``-(1/n) sum_i log (1/n) sum_j exp(-||h_i - h_j||^2 * scale)`` in rows of chunks: ``(n, d) -> float``."""
    n = h.shape[0]
    budget = _DEFAULT_MEMORY if max_memory is None else int(max_memory)
    m = max(1, min(n, budget // (8 * n * 3)))
    sq = (h * h).sum(1)
    total = 0.0
    for s in range(0, n, m):
        d2 = (sq[s:s + m, None] + sq[None, :] - 2.0 * h[s:s + m] @ h.T).clamp_min_(0)
        total += float(torch.logsumexp(-d2 * scale, dim=1).sum())
    return -(total / n - math.log(n))


def pairwise_information_bounds(t, noise_var: float, y=None, units: str = "bits", *,
                                max_memory: int | None = None) -> dict[str, float]:
    """Kolchinsky–Tracey bounds on ``I(X;T)`` for ``T = t + N(0, noise_var I)``; ``t: (n, d)`` holds the
    layer's noiseless activations on the ``n`` (equally likely) inputs.

    Returns ``{"i_xt_upper": KL bound, "i_xt_lower": Bhattacharyya bound}`` and, with discrete labels
    ``y: (n,)``, ``"i_ty_kl"`` / ``"i_ty_bd"``: ``I(T;Y)`` from the KL and from the Bhattacharyya
    mixture-entropy estimates (estimates, not bounds; see the module docstring). ``units``: 'bits'
    or 'nats'. Bias: none beyond the bound gaps (the ``n`` inputs define the distribution exactly);
    the gap between the two bounds is at most ``d/2 log(4/e)``-ish and vanishes when the centres are
    much closer or much farther apart than ``sqrt(noise_var)``. ``O(n^2 d)`` time, chunked rows.
    """
    if units not in UNITS:
        raise ValueError(f"units: expected one of {sorted(UNITS)}, got {units!r}")
    if isinstance(noise_var, bool) or not isinstance(noise_var, (int, float)) or not (
            math.isfinite(noise_var) and noise_var > 0):
        raise ValueError(f"noise_var: expected a finite number > 0, got {noise_var!r}")
    h = as_tensor(t.detach().cpu() if isinstance(t, torch.Tensor) else t, "t")
    h = h.reshape(-1, 1) if h.dim() == 1 else h
    check_ndim(h, 2, "t", "(n, d)")
    check_nonempty(h, "t")
    h = h.to(torch.float64)
    check_finite(h, "t")
    c = UNITS[units]
    kl, bd = 1.0 / (2.0 * noise_var), 1.0 / (8.0 * noise_var)
    out = {"i_xt_upper": c * _mixture_term(h, kl, max_memory), "i_xt_lower": c * _mixture_term(h, bd, max_memory)}
    if y is None:
        return out
    yy = as_tensor(y.detach().cpu() if isinstance(y, torch.Tensor) else y, "y").reshape(-1)
    if yy.shape[0] != h.shape[0]:
        raise ValueError(f"t and y must have the same number of samples, got {h.shape[0]} (t) and {yy.shape[0]} (y)")
    labels, counts = torch.unique(yy, return_inverse=True, return_counts=True)[1:]
    n = h.shape[0]
    # H(T) - H(T|Y): the component entropy H(T|X) cancels, leaving mixture terms
    cond_kl = cond_bd = 0.0
    for cls in range(len(counts)):
        hc = h[labels == cls]
        w = float(counts[cls]) / n
        cond_kl += w * _mixture_term(hc, kl, max_memory)
        cond_bd += w * _mixture_term(hc, bd, max_memory)
    out["i_ty_kl"] = c * (out["i_xt_upper"] / c - cond_kl)
    out["i_ty_bd"] = c * (out["i_xt_lower"] / c - cond_bd)
    return out
