"""Many independent k-means at once: ``x: (n, C, d)`` -> ``C`` codebooks ``(C, k, d)``.

Every codebook runs its own exact Lloyd's algorithm, as :func:`bottlenecks.cluster.lloyd.lloyd`
would alone (float64 centroid updates, absolute ``tol`` on the squared centre shift, stop on
unchanged labels, farthest-point re-seeding of empty clusters, one final assignment when
stopped by ``tol`` or ``max_iter``), but the assignment step of all still-running codebooks is
one call of the exact small-dimension search (:mod:`bottlenecks.cluster.small_d`) and the
update one ``index_add`` over all of them. A codebook that has converged is left alone, so
each codebook's result equals fitting it alone from the same initial centres.
"""

from __future__ import annotations

import math
import time

import torch

from ..validation import check_finite, check_float, check_ndim, check_positive_int
from .exact import exact_sq_dist, f64_rows
from .lloyd import KMeansResult, make_generator
from .small_d import CodeTable, cluster_sums, in_range, search


def check_batched(x, name: str = "x") -> torch.Tensor:
    """A 3-D ``(n, C, d)``, non-empty, finite floating tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (n_samples, n_codebooks, n_features), "
                        f"got {type(x).__name__}")
    check_float(x, name)
    check_ndim(x, 3, name, "(n_samples, n_codebooks, n_features)")
    if min(x.shape) == 0:
        raise ValueError(f"{name}: expected a non-empty (n_samples, n_codebooks, n_features) tensor, "
                         f"got shape {tuple(x.shape)}")
    check_finite(x, name)
    return x


def _weights(sample_weight, n: int, C: int, device) -> torch.Tensor | None:
    """``None``, ``(n,)`` or ``(n, C)`` non-negative finite weights -> ``None`` or ``(n, C)`` float64."""
    if sample_weight is None:
        return None
    w = torch.as_tensor(sample_weight, dtype=torch.float64, device=device)
    if w.shape == (n,):
        w = w[:, None].expand(n, C)
    if w.shape != (n, C):
        raise ValueError(f"sample_weight: expected shape ({n},) or ({n}, {C}), got {tuple(w.shape)}")
    check_finite(w, "sample_weight")
    if bool((w < 0).any()):
        raise ValueError("sample_weight: expected non-negative weights")
    return w


def _column_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 sums and sums of squares over the rows, in bounded chunks: ``(n, C, d) -> (C, d), (C, d)``."""
    n, C, d = x.shape
    s1 = x.sum(0, dtype=torch.float64)
    s2 = torch.zeros_like(s1)
    step = max(1, 4 * f64_rows(C * d))
    for s in range(0, n, step):
        xs = x[s:s + step].double()
        s2 += (xs * xs).sum(0)
    return s1, s2


def kmeans_plusplus(x: torch.Tensor, k: int, g: torch.Generator, w: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy k-means++ (local trials, as scikit-learn) in every codebook at once:
    ``x: (n, C, d) -> (C, k, d)`` float64 centres drawn among each codebook's rows."""
    n, C, d = x.shape
    trials = 2 + int(math.log(k))
    ww = torch.ones(n, C, dtype=torch.float64, device=x.device) if w is None else w
    xt = x.transpose(0, 1).float().contiguous()  # (C, n, d): one bmm per step
    x_sq = (xt.double() ** 2).sum(-1)  # (C, n)
    cb = torch.arange(C, device=x.device)
    first = torch.multinomial(ww.t().cpu(), 1, generator=g)[:, 0].to(x.device)  # (C,)
    chosen = [first]

    def sq_dist(idx):  # (C, t) row indices -> (C, n, t) float64 squared distances
        p = xt[cb[:, None], idx]  # (C, t, d)
        s = torch.bmm(xt, p.transpose(1, 2)).double()
        return (x_sq[:, :, None] + (p.double() ** 2).sum(-1)[:, None, :] - 2 * s).clamp_min_(0)

    closest = sq_dist(first[:, None])[:, :, 0]  # (C, n)
    wt = ww.t()
    potential = (closest * wt).sum(1)  # (C,)
    for _ in range(1, k):
        r = torch.rand(C, trials, generator=g, dtype=torch.float64).to(x.device) * potential[:, None]
        cum = torch.cumsum(wt * closest, 1)
        cand = torch.searchsorted(cum, r).clamp_(max=n - 1)  # (C, trials)
        dd = torch.minimum(sq_dist(cand), closest[:, :, None])
        pots = (dd * wt[:, :, None]).sum(1)  # (C, trials)
        best = pots.argmin(1)
        closest = dd[cb, :, best]
        potential = pots[cb, best]
        chosen.append(cand[cb, best])
    idx = torch.stack(chosen, 1)  # (C, k)
    return xt[cb[:, None], idx].double() if x.dtype != torch.float64 else x.transpose(0, 1)[cb[:, None], idx].clone()


def init_centroids(x: torch.Tensor, k: int, init, g: torch.Generator, w: torch.Tensor | None) -> torch.Tensor:
    """``'k-means++'``, ``'random'`` (k distinct rows per codebook, by weight) or an array
    ``(C, k, d)`` -> float64 ``(C, k, d)``."""
    n, C, d = x.shape
    if isinstance(init, str):
        if init == "k-means++":
            return kmeans_plusplus(x, k, g, w)
        if init == "random":
            ww = torch.ones(C, n, dtype=torch.float64) if w is None else w.t().cpu()
            idx = torch.multinomial(ww, k, replacement=False, generator=g).to(x.device)  # (C, k)
            return x[idx, torch.arange(C, device=x.device)[:, None]].double()
        raise ValueError(f"init: expected 'k-means++', 'random' or an array of shape ({C}, {k}, {d}), got {init!r}")
    c = torch.as_tensor(init).to(device=x.device, dtype=torch.float64)
    if c.shape != (C, k, d):
        raise ValueError(f"init: expected an array of shape ({C}, {k}, {d}) (n_codebooks, n_clusters, n_features), "
                         f"got {tuple(c.shape)}")
    check_finite(c, "init")
    return c.clone()


def _sums(x, labels, w, k, cbs):
    """Float64 per-cluster sums ``(C', k, d)`` and weights ``(C', k)`` of the codebooks ``cbs``;
    ``labels: (n, C')``."""
    fast = cluster_sums(x, labels, k, cbs, w)
    if fast is not None:
        return fast
    n, _, d = x.shape
    nc = len(cbs)
    every = nc == x.shape[1]
    sums = torch.zeros(nc * k, d, dtype=torch.float64, device=x.device)
    offset = torch.arange(nc, device=x.device) * k
    flat = (labels + offset).reshape(-1)
    if w is None:
        counts = torch.bincount(flat, minlength=nc * k).double()
    else:
        counts = torch.zeros(nc * k, dtype=torch.float64, device=x.device)
        counts.index_add_(0, flat, (w if every else w[:, cbs]).reshape(-1))
    step = max(1, f64_rows(nc * d))
    for s in range(0, n, step):
        xs = (x[s:s + step] if every else x[s:s + step, cbs]).double()
        if w is not None:
            xs = xs * (w[s:s + step] if every else w[s:s + step, cbs])[..., None]
        sums.index_add_(0, flat[s * nc:(s + step) * nc], xs.reshape(-1, d))
    return sums.view(nc, k, d), counts.view(nc, k)


def _relocate_empty(xc, wc, labels, c_old, sums, counts) -> int:
    """One codebook: re-seed its empty clusters with the rows farthest from their centres, as
    :func:`bottlenecks.cluster.lloyd._relocate_empty` does (same order, same arithmetic)."""
    empty = (counts == 0).nonzero().squeeze(1)
    dist_old = exact_sq_dist(xc, c_old, labels)
    m = min(len(empty), xc.shape[0])
    far_d, far_i = dist_old.topk(m, sorted=True)
    far_x = xc[far_i].double()
    far_w = wc[far_i] if wc is not None else torch.ones(m, dtype=torch.float64, device=xc.device)
    far_l = labels[far_i]
    for j in range(m):
        new, old = int(empty[j]), int(far_l[j])
        sums[old] -= far_x[j] * far_w[j]
        counts[old] -= far_w[j]
        sums[new] = far_x[j] * far_w[j]
        counts[new] = far_w[j]
    return len(empty)


def kmeans(x: torch.Tensor, k: int, *, init="k-means++", n_init: int = 1, max_iter: int = 300,
           tol: float = 1e-4, seed=None, sample_weight=None, progress: bool = False,
           backend: str = "auto") -> KMeansResult:
    """Exact k-means of every codebook of ``x: (n, C, d)`` into ``k`` clusters.

    Returns a :class:`~bottlenecks.cluster.lloyd.KMeansResult` whose ``centroids`` are
    ``(C, k, d)``, ``labels`` ``(n, C)``, ``inertia`` the sum over codebooks and ``n_iter`` the
    most iterations any codebook ran; ``info`` holds ``inertia_per_codebook`` and
    ``n_iter_per_codebook``. ``init``: ``'k-means++'`` or ``'random'`` (per codebook, from one
    generator seeded by ``seed``) or an array ``(C, k, d)``. ``tol`` is relative to each
    codebook's mean feature variance, as in scikit-learn. ``sample_weight``: ``(n,)`` or
    ``(n, C)``. ``backend``: the search's (``'auto'``, ``'c'``, ``'torch'``).
    """
    check_batched(x)
    check_positive_int(k, "k")
    check_positive_int(max_iter, "max_iter")
    if n_init != 1:
        raise ValueError(f"n_init={n_init}: batched k-means (3-D x) runs one initialisation per codebook; "
                         "expected n_init=1")
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol: expected a non-negative number, got {tol}")
    t_start = time.perf_counter()
    n, C, d = x.shape
    w = _weights(sample_weight, n, C, x.device)
    support = (w > 0).sum(0) if w is not None else torch.full((C,), n)
    if k > int(support.min()):
        worst = int(support.argmin())
        raise ValueError(f"k={k} is larger than the number of samples of codebook {worst} "
                         f"({int(support[worst])} with positive weight); expected k <= n_samples")
    g = make_generator(seed)
    c = init_centroids(x, k, init, g, w)  # (C, k, d) float64
    amax = max(float(x.abs().amax()), float(c.abs().amax()))
    scale = 1.0 if in_range(amax) else 2.0 ** round(math.log2(amax))  # exact: the labels stand
    if scale != 1.0:
        x, c = x / scale, c / scale
    # scikit-learn's tol scale, per codebook; and the search's shift: the data mean (rounded to
    # float32, so both sides shift alike) where it is large against the spread
    s1, s2 = _column_stats(x)
    mean = s1 / n
    var = (s2 / n - mean * mean).clamp_min(0)
    tol_abs = var.mean(1) * tol  # (C,)
    far = (mean * mean).sum(1) >= 0.25 * var.sum(1)
    center = torch.where(far[:, None], mean, torch.zeros_like(mean)).float()

    labels = torch.full((n, C), -1, dtype=torch.long, device=x.device)
    dist = torch.empty(n, C, dtype=torch.float64, device=x.device)
    active = torch.ones(C, dtype=torch.bool)
    strict = torch.zeros(C, dtype=torch.bool)
    n_iter = torch.zeros(C, dtype=torch.long)
    relocated = 0
    info = {"iteration_seconds": [], "active_codebooks": []}
    iterator = range(max_iter)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc="batched k-means", leave=False, disable=None)
    for _ in iterator:
        t_iter = time.perf_counter()
        cbs = active.nonzero().squeeze(1)
        info["active_codebooks"].append(len(cbs))
        table = CodeTable(c, "l2", center=center)
        dd, ii = search(x, table, 1, codebooks=cbs, backend=backend)
        new = ii[:, :, 0]
        cbs_dev = cbs.to(x.device)
        changed = (new != labels[:, cbs_dev]).sum(0).cpu()
        labels[:, cbs_dev] = new
        dist[:, cbs_dev] = dd[:, :, 0]
        sums, counts = _sums(x, new, w, k, cbs_dev)
        c_old = c[cbs_dev]
        for pos in (counts == 0).any(1).nonzero().squeeze(1).tolist():
            cb = int(cbs[pos])
            relocated += _relocate_empty(x[:, cb], None if w is None else w[:, cb], new[:, pos], c_old[pos],
                                         sums[pos], counts[pos])
        nonzero = counts > 0
        c_new = c_old.clone()
        c_new[nonzero] = sums[nonzero] / counts[nonzero][:, None]
        shift = ((c_new - c_old) ** 2).sum(-1).sum(-1).cpu()  # (C',)
        c[cbs_dev] = c_new
        n_iter[cbs] += 1
        done_strict = changed == 0
        strict[cbs[done_strict]] = True
        active[cbs[done_strict | (shift <= tol_abs[cbs.to(tol_abs.device)].cpu())]] = False
        info["iteration_seconds"].append(round(time.perf_counter() - t_iter, 4))
        if not bool(active.any()):
            break
    last = (~strict).nonzero().squeeze(1)
    if len(last):  # like scikit-learn: labels that match the final centres
        table = CodeTable(c, "l2", center=center)
        dd, ii = search(x, table, 1, codebooks=last, backend=backend)
        last_dev = last.to(x.device)
        labels[:, last_dev] = ii[:, :, 0]
        dist[:, last_dev] = dd[:, :, 0]
    per_cb = (dist * w).sum(0) if w is not None else dist.sum(0)
    c, per_cb = c * scale, per_cb * scale * scale
    info.update(seconds=time.perf_counter() - t_start, relocated=relocated,
                inertia_per_codebook=per_cb.tolist(), n_iter_per_codebook=n_iter.tolist())
    out_dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    return KMeansResult(c.to(out_dtype), labels, float(per_cb.sum()), int(n_iter.max()), info)
