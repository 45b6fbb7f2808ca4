"""Entropy, mutual-information and conditional-MI estimators (k-NN, mixed, plug-in, Gaussian),
with optional resampling confidence intervals.

k-NN statistics come from :mod:`bottlenecks.info.knn` (KD-tree in low dimensions, chunked exact
torch search with bounded memory and no ``n x n`` matrix in high dimensions; same counts either way).
Computation is in float64. Inputs: NumPy arrays or tensors, ``(n,)`` treated as ``(n, 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..cluster import nearest
from ..cluster.search import safe_scale
from ..validation import as_tensor, check_choice, check_finite, check_ndim, check_nonempty, check_positive_int
from . import knn

__all__ = ["METHODS", "METHOD_ALIASES", "Estimate", "canonical_method", "conditional_mutual_information", "entropy",
           "mutual_information"]

UNITS = {"nats": 1.0, "bits": 1.0 / math.log(2.0)}
METHODS = ("ksg1", "ksg2", "mixed", "plugin", "gaussian")
# names users guess -> the canonical one (the same names work in InfoPlane and degree_of_ib)
METHOD_ALIASES = {"ksg": "ksg1", "cca": "gaussian", "binning": "plugin"}


def canonical_method(method, name: str = "method") -> str:
    """The canonical estimator name for ``method`` (an alias in :data:`METHOD_ALIASES` or a name in
    :data:`METHODS`); anything else is a ``ValueError`` listing both."""
    if isinstance(method, str) and method in METHOD_ALIASES:
        return METHOD_ALIASES[method]
    if isinstance(method, str) and method in METHODS:
        return method
    aliases = ", ".join(f"{a!r} (= {c!r})" for a, c in METHOD_ALIASES.items())
    raise ValueError(f"{name}: expected one of {list(METHODS)} or an alias {aliases}, got {method!r}")


def _prepare(x, name: str, *, min_samples: int = 1) -> torch.Tensor:
    # estimates are computed on the CPU (KD-trees, float64); tensors may come from any device / graph
    t = as_tensor(x.detach().cpu() if isinstance(x, torch.Tensor) else x, name)
    if t.dim() == 1:
        t = t.reshape(-1, 1)
    check_ndim(t, 2, name, "(n, d)")
    check_nonempty(t, name, min_samples)
    if t.is_complex():
        raise TypeError(f"{name}: expected real numeric data, got {t.dtype}")
    if t.is_floating_point():
        check_finite(t, name)
    return t


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of samples, got {x.shape[0]} (x) and {y.shape[0]} (y)")


def _check_k(k, n: int, name: str = "x") -> int:
    k = check_positive_int(k, "k")
    if n <= k:
        raise ValueError(f"{name}: k-NN estimation with k={k} needs more than k samples, got n={n}; "
                         f"use a smaller k or more samples")
    return k


def _standardize(t: torch.Tensor, name: str) -> torch.Tensor:
    t = t.to(torch.float64)
    scale = safe_scale(float(t.abs().max()) if t.numel() else 0.0, t.dtype)
    if scale != 1.0:  # a power of two (exact): squares of |t| ~ 1e200 would overflow in the std
        t = t / scale
    std = t.std(dim=0)
    const = torch.nonzero(std == 0).flatten().tolist()
    if const:
        raise ValueError(f"{name}: column(s) {const} are constant, so they cannot be standardized "
                         "(and carry no information); drop them or pass standardize=False")
    return (t - t.mean(dim=0)) / std


def _convert(value: float, units: str) -> float:
    check_choice(units, "units", UNITS)
    return float(value) * UNITS[units]


def _digamma(t: torch.Tensor) -> torch.Tensor:
    return torch.special.digamma(t.to(torch.float64))


# ---------------------------------------------------------------------------------------------
# entropy
# ---------------------------------------------------------------------------------------------

def _plugin_entropy_codes(codes: torch.Tensor) -> float:
    counts = torch.bincount(codes).to(torch.float64)
    p = counts[counts > 0] / codes.numel()
    return float(-(p * p.log()).sum())


def _discrete_codes(t: torch.Tensor) -> torch.Tensor:
    """Rows of a discrete ``(n, d)`` array -> integer symbol ids ``(n,)``."""
    return torch.unique(t, dim=0, return_inverse=True)[1]


def _check_symbols(t: torch.Tensor, name: str) -> None:
    """The plug-in estimator without ``bins`` takes each distinct row as a symbol. Data with
    non-integer values where more than half the rows are distinct look continuous: every sample
    would be its own symbol and the estimate ``log n``, whatever the dependence. Refuse them."""
    if not t.is_floating_point() or bool((t == t.round()).all()):
        return
    n_distinct = int(torch.unique(t, dim=0).shape[0])
    if 2 * n_distinct > t.shape[0]:
        raise ValueError(f"{name}: method='plugin' counts distinct rows as symbols, but {name} has non-integer values "
                         f"and {n_distinct} distinct rows among {t.shape[0]} samples (continuous data: the estimate "
                         f"would be about log n); pass bins=... to discretise it, or use method='ksg1' / 'mixed'")


def _bin_columns(t: torch.Tensor, bins: int | None) -> torch.Tensor:
    """Equal-width bins per column over its own range (``bins`` of them): ``(n, d) -> (n, d)`` int.
    ``bins=None`` leaves the data as symbols (exact values)."""
    if bins is None:
        return t
    bins = check_positive_int(bins, "bins")
    t = t.to(torch.float64)
    lo, hi = t.amin(0), t.amax(0)
    width = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    return ((t - lo) / width * bins).floor().clamp_(0, bins - 1).to(torch.int64)


def _kl_entropy(t: torch.Tensor, k: int, max_memory: int | None) -> float:
    n, d = t.shape
    # H(x) = H(x / s) + d log s: with s a power of two (exact), squared distances of |x| ~ 1e200
    # or 1e-200 neither overflow nor underflow
    scale = safe_scale(float(t.abs().max()), t.dtype)  # 1.0 for data in the usual range
    log_s = math.log(scale)
    t = t / scale if scale != 1.0 else t
    dist, _ = nearest(t, t, k=k + 1, metric="l2", max_memory=max_memory)
    r2 = dist[:, k].clamp_min(0)
    if bool((r2 == 0).any()):
        n_dup = int((r2 == 0).sum())
        raise ValueError(f"x: {n_dup} sample(s) have their {k}-th nearest neighbour at distance 0 "
                         "(duplicate points); the KL estimator needs continuous data — add tiny jitter "
                         "or use method='plugin' for discrete data")
    log_vd = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1)
    return (float(_digamma(torch.tensor(n))) - float(_digamma(torch.tensor(k))) + log_vd
            + d * float(0.5 * r2.log().mean()) + d * log_s)


def entropy(x, method: str = "kl", k: int = 3, units: str = "nats", *, bins: int | None = None,
            ci: float | None = None, n_resamples: int = 200, seed: int = 0, max_memory: int | None = None):
    """Entropy of samples ``x: (n, d)`` (a 1-D ``x`` is ``(n, 1)``).

    ``method='kl'``: Kozachenko–Leonenko differential entropy with **Euclidean** k-NN
    distances ``r_i`` (exact, chunked search via ``bottlenecks.cluster.nearest``)::

        H = psi(n) - psi(k) + log V_d + d * mean(log r_i),   V_d = pi^(d/2) / Gamma(d/2 + 1)

    It is consistent; at finite ``n`` the bias is small for smooth low-dimensional densities and
    grows with ``d`` (typically an underestimate for heavy tails / curved supports); larger ``k``
    lowers variance and raises bias. Duplicate points (``r_i = 0``) are rejected.

    ``method='plugin'``: Shannon entropy of the empirical distribution of the rows of a discrete
    ``x`` (each distinct row is a symbol; with ``bins``, each column is first cut into ``bins``
    equal-width bins over its range). It is biased low by about ``(K - 1) / (2n)`` nats for ``K``
    symbols (Miller–Madow). ``'binning'`` is an alias. Without ``bins``, data with non-integer
    values and more than ``n/2`` distinct rows (continuous data, whose estimate would be ``log n``)
    are refused: pass ``bins`` or use ``'kl'``.

    ``ci`` (e.g. 0.95) adds a resampling confidence interval and returns an :class:`Estimate`
    instead of a float (see :func:`mutual_information` for the procedure). Returns ``units``
    ('nats' or 'bits').
    """
    method = "plugin" if method == "binning" else check_choice(method, "method", ("kl", "plugin", "binning"))
    check_choice(units, "units", UNITS)
    t = _prepare(x, "x")
    if method == "plugin":
        if bins is None:
            _check_symbols(t, "x")
        codes = _bin_columns(t, bins)

        def fn(idx):
            return _plugin_entropy_codes(_discrete_codes(codes[idx]))
    else:
        k = _check_k(k, t.shape[0])
        t = t.to(torch.float64)

        def fn(idx):
            return _kl_entropy(t[idx], k, max_memory)
    return _finish(fn, t.shape[0], units, ci, n_resamples, seed, method, resample="subsample" if method == "kl"
                   else "bootstrap", min_n=(k + 2 if method == "kl" else 1))


# ---------------------------------------------------------------------------------------------
# confidence intervals
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Estimate:
    """A point estimate with a resampling confidence interval ``[low, high]`` (``float(e)`` is
    the estimate on all the data)."""

    value: float
    low: float
    high: float
    level: float
    units: str
    method: str
    resampling: str
    n_resamples: int

    def __float__(self) -> float:
        return self.value


def _finish(fn, n: int, units: str, ci, n_resamples: int, seed: int, method: str, *, resample: str,
            min_n: int = 1):
    """Evaluate ``fn(indices)`` on all ``n`` samples; with ``ci``, also on resamples.

    ``'bootstrap'``: ``n`` draws with replacement. ``'subsample'`` (k-NN estimators, for which
    repeated points would be exact ties): half-sampling, ``m = n // 2`` draws without replacement.
    Given the data, a size-``m`` subsample estimate varies around the full one with variance
    ``sigma^2 (1/m - 1/n)`` (for root-n statistics), so deviations are scaled by
    ``sqrt(m / (n - m))`` to ``sigma^2 / n`` (a factor 1 for half-samples). Both give the *basic* interval
    ``[T - s q_hi, T - s q_lo]`` with ``q`` the quantiles of the resample estimates minus their mean:
    it measures sampling variability around the estimate, not the estimator's bias."""
    full = torch.arange(n)
    value = _convert(fn(full), units)
    if ci is None:
        return value
    if isinstance(ci, bool) or not isinstance(ci, (int, float)) or not 0 < ci < 1:
        raise ValueError(f"ci: expected a confidence level in (0, 1) such as 0.95, got {ci!r}")
    n_resamples = check_positive_int(n_resamples, "n_resamples", 2)
    g = torch.Generator().manual_seed(int(seed))
    m = n if resample == "bootstrap" else n // 2
    if m < min_n:
        raise ValueError(f"ci: resamples of {m} samples are too small for this estimator (needs >= {min_n}); "
                         "use more samples")
    stats = []
    for _ in range(n_resamples):
        idx = (torch.randint(0, n, (n,), generator=g) if resample == "bootstrap"
               else torch.randperm(n, generator=g)[:m])
        stats.append(_convert(fn(idx), units))
    dev = np.asarray(stats) - float(np.mean(stats))
    scale = 1.0 if resample == "bootstrap" else math.sqrt(m / (n - m))
    q_lo, q_hi = np.quantile(dev, [(1 - ci) / 2, (1 + ci) / 2])
    return Estimate(value, value - scale * float(q_hi), value - scale * float(q_lo), float(ci), units, method,
                    resample, n_resamples)


# ---------------------------------------------------------------------------------------------
# mutual information
# ---------------------------------------------------------------------------------------------

def _gaussian_mi(x: torch.Tensor, y: torch.Tensor) -> float:
    z = torch.cat([x, y], dim=1)
    z = z - z.mean(0)
    cov = z.T @ z / (z.shape[0] - 1)
    std = cov.diagonal().sqrt()
    corr = cov / (std[:, None] * std[None, :])
    dx = x.shape[1]
    ld = torch.linalg.slogdet
    sx, lx = ld(corr[:dx, :dx])
    sy, ly = ld(corr[dx:, dx:])
    sz, lz = ld(corr)
    if float(sx) <= 0 or float(sy) <= 0 or float(sz) <= 0:
        raise ValueError("gaussian MI: the correlation matrix is singular (collinear columns); "
                         "remove redundant columns")
    return float(0.5 * (lx + ly - lz))


def _check_algorithm(algorithm: str) -> str:
    return check_choice(algorithm, "algorithm", ("auto", "tree", "brute"))


def _mi_function(tx: torch.Tensor, ty: torch.Tensor, method: str, k: int, standardize: bool, bins,
                 algorithm: str, max_memory):
    """The estimator as a function of sample indices (so resampling reuses the prepared data)."""
    n = tx.shape[0]
    if method == "plugin":
        if bins is None:
            _check_symbols(tx, "x")
            _check_symbols(ty, "y")
        cx, cy = _discrete_codes(_bin_columns(tx, bins)), _discrete_codes(_bin_columns(ty, bins))

        def fn(idx):
            a, b = cx[idx], cy[idx]
            ab = _discrete_codes(torch.stack([a, b], dim=1))
            mi = _plugin_entropy_codes(a) + _plugin_entropy_codes(b) - _plugin_entropy_codes(ab)
            return max(mi, 0.0)  # >= 0 exactly; clamp float round-off
        return fn
    if method == "gaussian":
        if n < 3:
            raise ValueError(f"gaussian MI needs at least 3 samples, got n={n}")
        sx, sy = _standardize(tx, "x"), _standardize(ty, "y")
        return lambda idx: _gaussian_mi(sx[idx], sy[idx])
    k = _check_k(k, n)
    if method == "mixed":
        ax, ay = tx.to(torch.float64).numpy(), ty.to(torch.float64).numpy()
        return lambda idx: knn.mixed_ksg(ax[idx.numpy()], ay[idx.numpy()], k)
    if standardize:
        tx, ty = _standardize(tx, "x"), _standardize(ty, "y")
    ax, ay = tx.to(torch.float64).numpy(), ty.to(torch.float64).numpy()
    variant = 1 if method == "ksg1" else 2
    return lambda idx: knn.ksg(ax[idx.numpy()], ay[idx.numpy()], k, variant, algorithm, max_memory)


def mutual_information(x, y, method: str = "ksg1", k: int = 3, units: str = "nats", *,
                       standardize: bool = True, bins: int | None = None, algorithm: str = "auto",
                       ci: float | None = None, n_resamples: int = 200, seed: int = 0,
                       max_memory: int | None = None):
    """Mutual information ``I(x; y)`` of paired samples ``x: (n, dx)``, ``y: (n, dy)`` (NumPy or torch;
    1-D inputs are one column).

    Methods:

    - ``'ksg1'`` / ``'ksg2'``: Kraskov–Stögbauer–Grassberger (2004) estimators 1 and 2, with the
      max-norm in the joint space and exact neighbour counts in the marginals (strictly less
      than the joint k-NN radius for KSG1, ``<=`` the per-marginal radii for KSG2). Both are
      nearly unbiased at ``I = 0`` (errors largely cancel) and biased low for strongly dependent
      or high-dimensional data (e.g. about -20% at 5+5 dims, I = 1.1 nats, n = 2000); KSG1 has
      slightly smaller variance / larger bias, KSG2 smaller bias at high ``I``. Exactly symmetric
      in ``x`` and ``y``. Can be slightly negative at independence. Continuous data only: tied
      samples (k-th neighbour at distance 0) are an error.
      ``algorithm``: ``'tree'`` (KD-tree search and range counts, near ``O(n log n)`` in low
      dimensions), ``'brute'`` (chunked torch search, ``O(n^2 d)`` time, about ``max_memory``
      bytes (default 64 MiB), never an ``n x n`` matrix) or ``'auto'`` (tree up to 24 joint
      dimensions). Both give the same counts, hence the same estimate.
    - ``'mixed'``: Gao et al. (2017) for discrete, continuous or mixed data (ties allowed; see
      :func:`bottlenecks.info.knn.mixed_ksg`). Equals KSG1 on continuous data; consistent for
      mixtures, with KSG1's low bias on continuous parts and about ``+(K-1)/2n``-type plug-in
      bias on discrete parts. No standardisation (ties must stay ties): rescale columns yourself.
    - ``'plugin'`` (alias ``'binning'``): for discrete data, ``H(X) + H(Y) - H(X, Y)`` of the
      empirical distribution (distinct rows are symbols; ``bins`` cuts each column into equal-width
      bins over its range first). Biased high, by about ``(Kx - 1)(Ky - 1) / (2n)`` nats. Without
      ``bins``, a side with non-integer values and more than ``n/2`` distinct rows is refused
      (continuous data: every sample its own symbol, the estimate ``log n``); pass ``bins``.
    - ``'gaussian'``: closed form ``0.5 (log det R_xx + log det R_yy - log det R)`` from the
      sample correlation matrix ``R`` (equals ``-0.5 sum log(1 - rho_i^2)`` over the canonical
      correlations). Consistent for jointly Gaussian data, biased high by about ``dx*dy/(2n)``;
      for non-Gaussian data it only sees linear dependence. Alias ``'cca'``.

    ``'ksg'`` is an alias of ``'ksg1'`` (the names in :data:`METHOD_ALIASES` work here, in
    :class:`~bottlenecks.info.InfoPlane` and in :func:`~bottlenecks.info.degree_of_ib`).

    ``standardize`` (KSG only) rescales each column to zero mean and unit variance first, which
    makes the estimate invariant to per-column affine rescaling; constant columns are then an
    error. ``units``: 'nats' or 'bits'.

    ``ci`` (e.g. 0.95): also compute a confidence interval from ``n_resamples`` resamples drawn
    with ``seed`` and return an :class:`Estimate` ``(value, low, high, ...)`` instead of a float.
    Plug-in, Gaussian and mixed use the bootstrap; KSG uses half-size subsamples without
    replacement (bootstrap duplicates would be ties), whose spread around their mean has the
    full-sample variance. The interval covers sampling variability only, not the bias described
    above (nor the bias difference between ``n/2`` and ``n`` samples).
    """
    method = canonical_method(method)
    check_choice(units, "units", UNITS)
    _check_algorithm(algorithm)
    tx = _prepare(x, "x")
    ty = _prepare(y, "y")
    _check_pair(tx, ty)
    fn = _mi_function(tx, ty, method, k, standardize, bins, algorithm, max_memory)
    knn_method = method in ("ksg1", "ksg2")
    return _finish(fn, tx.shape[0], units, ci, n_resamples, seed, method,
                   resample="subsample" if knn_method else "bootstrap",
                   min_n=(k + 2 if method in ("ksg1", "ksg2", "mixed") else 3))


def conditional_mutual_information(x, y, labels=None, method: str = "ksg1", k: int = 3, units: str = "nats", *,
                                   min_class_size: int | None = None, **kwargs) -> float:
    """``I(X; Y | labels)`` for ``x: (n, dx)``, ``y: (n, dy)`` and **discrete** ``labels: (n,)`` (of any
    numeric type): the exact decomposition ``sum_c p(c) I(X; Y | labels=c)`` with ``p`` the empirical
    class frequencies and each term estimated by :func:`mutual_information` (``method``, ``k`` and
    ``kwargs`` passed on, ``ci`` excepted) on the samples of class ``c``.

    Bias: the weighted sum of the per-class estimators' biases (see :func:`mutual_information`), at
    the smaller per-class sample sizes. Classes with fewer than ``min_class_size`` samples
    (default ``k + 2`` for k-NN methods, 2 otherwise) are an error rather than silently dropped;
    so are labels that look continuous (non-integer values, more than ``n/2`` distinct).
    """
    if "z" in kwargs or labels is None:
        raise TypeError("conditional_mutual_information: the arguments are (x, y, labels) for I(X; Y | labels) and "
                        "labels are required (the old keywords z=, y= are now y=, labels=; positions are unchanged)")
    if "ci" in kwargs:
        raise TypeError("conditional_mutual_information: ci is not supported; resample the rows yourself")
    method = canonical_method(method)
    check_choice(units, "units", UNITS)
    tx, ty = _prepare(x, "x"), _prepare(y, "y")
    tl = _prepare(labels, "labels")
    if tl.shape[1] != 1:
        raise ValueError(f"labels: expected discrete labels of shape (n,) or (n, 1), got {tuple(tl.shape)}")
    for name, t in (("y", ty), ("labels", tl)):
        if t.shape[0] != tx.shape[0]:
            raise ValueError(f"x and {name} must have the same number of samples, got {tx.shape[0]} (x) and "
                             f"{t.shape[0]} ({name})")
    values, codes, counts = torch.unique(tl[:, 0], return_inverse=True, return_counts=True)
    n = tx.shape[0]
    if tl.is_floating_point() and not bool((values == values.round()).all()) and 2 * len(values) > n:
        raise ValueError(f"labels: expected discrete class labels, got {len(values)} distinct non-integer values "
                         f"among {n} samples (continuous?); discretise them first (e.g. numpy.digitize)")
    need = min_class_size if min_class_size is not None else (k + 2 if method in ("ksg1", "ksg2", "mixed") else 2)
    small = torch.nonzero(counts < need).flatten()
    if len(small):
        shown = ", ".join(f"{values[i].item():g} ({int(counts[i])})" for i in small[:5])
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        raise ValueError(f"labels: {len(small)} of {len(values)} classes have fewer than {need} samples: "
                         f"{shown}{more}; merge rare classes or lower k")
    total = 0.0
    for c in range(len(counts)):
        mask = codes == c
        try:
            part = mutual_information(tx[mask], ty[mask], method=method, k=k, units=units, **kwargs)
        except ValueError as err:
            raise ValueError(f"class labels={values[c].item():g}: {err}") from err
        total += float(counts[c]) / n * part
    return total
