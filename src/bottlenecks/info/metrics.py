"""Information-bottleneck metrics built on the estimators.

- :func:`rate_distortion` — the complexity/distortion trade-off of a clustering ("From Tokens to
  Thoughts", Shani et al. 2025): ``H(C) + beta * mean ||x - c(x)||^2`` with the k-means engine.
- :func:`degree_of_ib` — Kawaguchi et al. (ICML 2023), "How Does Information Bottleneck Help Deep
  Learning?": the generalisation bound grows with ``I(X; Z | Y)`` of a layer's representation ``Z``.
- :func:`ib_generalization_correlation` — Kendall's tau between that quantity and the measured
  generalisation gap over a set of runs, per layer.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..cluster import kmeans
from ..validation import as_tensor, check_choice, check_finite, check_ndim, check_nonempty, check_positive_int
from .binning import _bin_codes
from .estimators import conditional_mutual_information

__all__ = ["degree_of_ib", "ib_generalization_correlation", "rate_distortion"]

UNITS = {"nats": 1.0, "bits": 1.0 / math.log(2.0)}


def _as_2d(v, name: str) -> torch.Tensor:
    t = as_tensor(v.detach().cpu() if isinstance(v, torch.Tensor) else v, name)
    t = t.reshape(-1, 1) if t.dim() == 1 else t.reshape(t.shape[0], -1)
    check_nonempty(t, name)
    if t.is_floating_point():
        check_finite(t, name)
    return t


def rate_distortion(x, n_clusters: int | None = None, beta: float = 1.0, *, labels=None, seed: int = 0,
                    units: str = "bits", n_init: int = 1) -> dict:
    """Rate-distortion objective of a hard clustering of the rows of ``x: (n, d)`` (equally likely items).

    The clustering is k-means with ``n_clusters`` (``bottlenecks.cluster.kmeans``, seeded) or the
    given ``labels: (n,)`` (e.g. human categories), with centroids the class means. Returns
    ``{"rate": H(C), "distortion": mean_i ||x_i - c(x_i)||^2, "objective": rate + beta * distortion,
    "n_clusters", "labels"}``. For a deterministic clustering of uniformly weighted items the rate
    ``I(X; C)`` equals ``H(C)`` (plug-in entropy of the cluster sizes, in ``units``; exact for the
    given items, no estimation bias). The distortion is the exact mean squared Euclidean distance.
    """
    check_choice(units, "units", UNITS)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta: expected a finite number >= 0, got {beta!r}")
    t = _as_2d(x, "x")
    check_ndim(t, 2, "x", "(n, d)")
    t = t.to(torch.float64)
    if (labels is None) == (n_clusters is None):
        raise ValueError("rate_distortion: pass exactly one of n_clusters (k-means) or labels (a given clustering)")
    if labels is None:
        n_clusters = check_positive_int(n_clusters, "n_clusters")
        res = kmeans(t, n_clusters, seed=seed, n_init=check_positive_int(n_init, "n_init"))
        lab = res.labels.cpu()
    else:
        lab = torch.unique(as_tensor(labels, "labels").reshape(-1), return_inverse=True)[1]
        if lab.shape[0] != t.shape[0]:
            raise ValueError(f"x and labels must have the same number of samples, got {t.shape[0]} (x) and "
                             f"{lab.shape[0]} (labels)")
    k = int(lab.max()) + 1
    counts = torch.bincount(lab, minlength=k).to(torch.float64)
    centroids = torch.zeros(k, t.shape[1], dtype=torch.float64).index_add_(0, lab, t) / counts.clamp_min(1)[:, None]
    distortion = float((t - centroids[lab]).pow(2).sum(1).mean())
    p = counts[counts > 0] / t.shape[0]
    rate = float(-(p * p.log()).sum()) * UNITS[units]
    return {"rate": rate, "distortion": distortion, "objective": rate + beta * distortion,
            "n_clusters": int((counts > 0).sum()), "beta": float(beta), "units": units, "labels": lab}


def degree_of_ib(t, x, y, method: str = "binning", *, bins: int = 30, k: int = 3, units: str = "bits") -> float:
    """Kawaguchi et al.'s degree of information bottleneck ``I(X; Z | Y)`` of a representation
    ``t: (n, ...)`` (activations of one layer on inputs ``x: (n, ...)``, labels ``y: (n,)`` discrete).

    ``'binning'``: each activation goes into one of ``bins`` equal bins over the layer's range (as in
    the information plane), then the plug-in ``I(X; T_b | Y)`` over the rows (distinct ``x`` rows
    are symbols); for a deterministic layer on distinct inputs it equals ``H(T_b | Y)``. Biased like
    the plug-in estimator (high, by about ``(K-1)/2n`` per class) and sensitive to ``bins``.
    Any method of :func:`bottlenecks.info.conditional_mutual_information` (e.g. ``'ksg1'``,
    ``'mixed'``) uses that estimator on ``(x, t)`` within each class instead (``k`` neighbours).
    """
    tt, xx = _as_2d(t, "t"), _as_2d(x, "x")
    if method in ("binning", "plugin"):  # one estimator, two names (as in InfoPlane)
        codes = torch.from_numpy(_bin_codes(tt.double().numpy(), check_positive_int(bins, "bins")))
        # the inputs are the symbols (X uniform over the n inputs): pass their row ids, not raw values
        ids = torch.unique(xx, dim=0, return_inverse=True)[1]
        return conditional_mutual_information(ids, codes, y, method="plugin", units=units)
    return conditional_mutual_information(xx, tt, y, method=method, k=k, units=units)


def ib_generalization_correlation(degrees, gaps) -> dict:
    """Kendall's tau between degrees of IB and generalisation gaps over a set of runs.

    ``degrees``: a sequence of ``R`` numbers (one per run) or a dict ``{layer: sequence of R numbers}``;
    ``gaps``: ``R`` generalisation gaps (e.g. test loss - train loss, or train acc - test acc). Returns
    ``{layer: {"tau", "p_value", "n_runs"}}`` (the key ``"all"`` for a plain sequence), from
    ``scipy.stats.kendalltau`` (tau-b, ties handled; p-value of the two-sided test of tau = 0). Kawaguchi
    et al. predict a positive tau.
    """
    from scipy.stats import kendalltau

    g = np.asarray(gaps, dtype=np.float64).reshape(-1)
    if g.size < 2:
        raise ValueError(f"gaps: expected at least 2 runs, got {g.size}")
    table = degrees if isinstance(degrees, dict) else {"all": degrees}
    out = {}
    for layer, vals in table.items():
        v = np.asarray(vals, dtype=np.float64).reshape(-1)
        if v.shape != g.shape:
            raise ValueError(f"degrees[{layer!r}]: expected {g.size} values (one per run, like gaps), got {v.size}")
        if not (np.isfinite(v).all() and np.isfinite(g).all()):
            raise ValueError(f"degrees[{layer!r}] or gaps contain NaN or infinity; expected finite values")
        res = kendalltau(v, g)
        out[layer] = {"tau": float(res.statistic), "p_value": float(res.pvalue), "n_runs": int(g.size)}
    return out
