"""Exact Lloyd k-means on torch tensors: k-means++ init, bounded-memory exact assignment,
Hamerly-style pruning, float64 centroid updates, deterministic empty-cluster re-seeding and
``torch.distributed`` data parallelism (every rank holds a shard; sums and counts are all-reduced).
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..progress import track
from ..validation import check_finite, check_float, check_ndim, check_nonempty, check_positive_int
from . import _numba
from .exact import (
    PRECISIONS,
    Assignment,
    CentroidTable,
    assign_exact,
    balanced_groups,
    choose_precision,
    exact_sq_dist,
    f64_rows,
)
from .search import safe_scale

_TIGHTEN_MIN_K = 32
_BOUND_BYTES = 64  # per row, for the group lower bounds (float32 each: at most 16 groups)


@dataclass
class KMeansResult:
    """What :func:`kmeans` returns."""

    centroids: torch.Tensor  # (k, d), the input's float dtype
    labels: torch.Tensor  # (n,) int64
    inertia: float  # sum of (weighted) squared distances to the assigned centroid
    n_iter: int
    info: dict = field(default_factory=dict)  # precision used, undecided rows, pruned fraction, time


# ---------------------------------------------------------------- validation and plumbing

def check_data(x, name: str = "x", finite: bool = True) -> torch.Tensor:
    """A 2-D, non-empty, finite floating tensor (ints are refused: convert them yourself).
    ``finite=False``: the caller checks finiteness itself (see :func:`_max_abs`)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}; "
                        "use bottlenecks.KMeans for NumPy arrays")
    check_float(x, name)
    check_ndim(x, 2, name, "(n_samples, n_features)")
    check_nonempty(x, name)
    if finite:
        check_finite(x, name)
    return x


def _group(distributed):
    """``False`` -> no process group; ``True`` -> the default group; or a given group."""
    if distributed is False or distributed is None:
        return None
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("distributed=True but torch.distributed is not initialised; "
                           "call torch.distributed.init_process_group first")
    return dist.group.WORLD if distributed is True else distributed


def _allreduce(t: torch.Tensor, group) -> torch.Tensor:
    if group is not None:
        dist.all_reduce(t, group=group)
    return t


def _allgather_rows(t: torch.Tensor, group) -> torch.Tensor:
    """Concatenate every rank's rows in rank order (shards may differ in length)."""
    if group is None:
        return t
    world = dist.get_world_size(group)
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n, group=group)
    top = int(max(s.item() for s in sizes))
    pad = torch.zeros((top - t.shape[0],) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device)
    parts = [torch.empty((top,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device) for _ in range(world)]
    dist.all_gather(parts, torch.cat([t, pad]), group=group)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)])


def make_generator(seed) -> torch.Generator:
    """``int`` -> seeded generator; ``None`` -> seeded from torch's global RNG; a Generator as is."""
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator()
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return g.manual_seed(int(seed))


def _sq_dist_to(x: torch.Tensor, x_sq: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Squared distances ``(n, m)`` from rows of ``x`` (squared norms ``x_sq: (n, 1)``) to a few
    ``points: (m, d)``, float64."""
    p = points.to(x.dtype)
    s = torch.addmm((p * p).sum(1), x, p.t(), beta=1.0, alpha=-2.0).double()
    return (s + x_sq).clamp_min_(0)


def _column_sums(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 column sums of ``x`` and of its squares, in one pass of bounded temporaries:
    ``(n, d) -> (d,), (d,)``."""
    if _numba.usable(x) and x.dtype in (torch.float32, torch.float64):
        return _numba.column_sums(x)
    step = f64_rows(x.shape[1])
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    total_sq = torch.zeros_like(total)
    for s in range(0, x.shape[0], step):
        xs = x[s:s + step].double()
        total += xs.sum(0)
        total_sq += (xs * xs).sum(0)
    return total, total_sq


# ---------------------------------------------------------------- initialisation

def kmeans_plusplus(x: torch.Tensor, k: int, *, seed=None, sample_weight: torch.Tensor | None = None,
                    n_local_trials: int | None = None) -> torch.Tensor:
    """Greedy k-means++ (Arthur & Vassilvitskii, with local trials as in scikit-learn).

    ``x: (n, d) -> (k, d)`` float64 centres chosen among the rows of ``x``. Each step samples
    ``2 + log(k)`` candidates in proportion to their (weighted) squared distance to the chosen
    centres, and keeps the one that lowers the potential most: one ``(n, trials)`` GEMM per step.
    """
    g = make_generator(seed)
    n = x.shape[0]
    trials = n_local_trials or 2 + int(math.log(k))
    w = torch.ones(n, dtype=torch.float64, device=x.device) if sample_weight is None else sample_weight.double()
    xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
    x_sq = (xf * xf).sum(1, keepdim=True).double()
    first = int(torch.multinomial(w.cpu(), 1, generator=g).item())
    chosen = [first]
    closest = _sq_dist_to(xf, x_sq, xf[first:first + 1])[:, 0]
    potential = float((closest * w).sum())
    for _ in range(1, k):
        r = torch.rand(trials, generator=g, dtype=torch.float64) * potential
        cum = torch.cumsum(w * closest, 0)
        cand = torch.searchsorted(cum, r.to(cum.device)).clamp_(max=n - 1)
        d = torch.minimum(_sq_dist_to(xf, x_sq, xf[cand]), closest[:, None])
        pots = (d * w[:, None]).sum(0)
        best = int(pots.argmin())
        closest, potential = d[:, best], float(pots[best])
        chosen.append(int(cand[best]))
    return x[torch.tensor(chosen, device=x.device)].double()


def init_centroids(x: torch.Tensor, k: int, init, g: torch.Generator,
                   sample_weight: torch.Tensor | None) -> torch.Tensor:
    """``'k-means++'``, ``'random'`` (k distinct rows), an array ``(k, d)`` or a callable
    ``init(x, k, generator) -> (k, d)`` -> float64 ``(k, d)``."""
    if callable(init):
        init = init(x, k, g)
        if init is None:
            raise ValueError(f"init: the callable returned None; expected an array of shape ({k}, {x.shape[1]})")
    if isinstance(init, str):
        if init == "k-means++":
            return kmeans_plusplus(x, k, seed=g, sample_weight=sample_weight)
        if init == "random":
            if sample_weight is not None and int((sample_weight > 0).sum()) < k:
                raise ValueError(f"init='random' draws k={k} distinct rows with positive sample_weight, but only "
                                 f"{int((sample_weight > 0).sum())} rows have a positive weight; expected at least {k}")
            w = torch.ones(x.shape[0], dtype=torch.float64) if sample_weight is None else sample_weight.double().cpu()
            idx = torch.multinomial(w, k, replacement=False, generator=g)
            return x[idx.to(x.device)].double()
        raise ValueError(f"init: expected 'k-means++', 'random', a callable or an array of shape ({k}, d), "
                         f"got {init!r}")
    c = torch.as_tensor(init).to(device=x.device, dtype=torch.float64)
    if c.shape != (k, x.shape[1]):
        raise ValueError(f"init: expected an array of shape ({k}, {x.shape[1]}) (n_clusters, n_features), "
                         f"got {tuple(c.shape)}")
    check_finite(c, "init")
    return c.clone()


# ---------------------------------------------------------------- Lloyd

def weighted_sums(x, labels, w, k, x64=None):
    """Per-cluster sums of (weighted) rows in float64 and the per-cluster weights. ``x64``: the
    rows already in float64, if the caller keeps them."""
    if _numba.usable(x, labels) and x.dtype in (torch.float32, torch.float64):
        return _numba.cluster_sums(x, labels, None if w is None else w.contiguous(), k)
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
    if x64 is not None and w is None:
        sums.index_add_(0, labels, x64)
        return sums, torch.bincount(labels, minlength=k).double()
    step = f64_rows(x.shape[1])
    for s in range(0, x.shape[0], step):
        xs = x[s:s + step].double() if x64 is None else x64[s:s + step]
        if w is not None:
            xs = xs * w[s:s + step, None]
        sums.index_add_(0, labels[s:s + step], xs)
    counts = torch.bincount(labels, weights=w, minlength=k).double() if w is not None else \
        torch.bincount(labels, minlength=k).double()
    return sums, counts


def _relocate_empty(x, w, labels, c_old, sums, counts, group):
    """Re-seed empty clusters with the points farthest from their centres (as scikit-learn does),
    moving each point's weight out of its old cluster. Deterministic: farthest first, ties by
    position (rank, then row)."""
    empty = (counts == 0).nonzero().squeeze(1)
    n_empty = len(empty)
    dist_old = exact_sq_dist(x, c_old, labels)
    m = min(n_empty, x.shape[0])
    far_d, far_i = dist_old.topk(m, sorted=True)
    far_x = x[far_i].double()
    far_w = w[far_i] if w is not None else torch.ones(m, dtype=torch.float64, device=x.device)
    far_l = labels[far_i]
    if group is not None:  # pick the global farthest among every rank's local farthest
        pad = n_empty - m
        far_d = torch.cat([far_d, torch.full((pad,), -1.0, dtype=far_d.dtype, device=x.device)])
        far_x = torch.cat([far_x, far_x.new_zeros(pad, x.shape[1])])
        far_w = torch.cat([far_w, far_w.new_zeros(pad)])
        far_l = torch.cat([far_l, far_l.new_zeros(pad)])
        far_d, far_x, far_w, far_l = (_allgather_rows(t, group) for t in (far_d, far_x, far_w, far_l))
        order = torch.sort(far_d, descending=True, stable=True).indices[:n_empty]
        far_d, far_x, far_w, far_l = far_d[order], far_x[order], far_w[order], far_l[order]
    for j in range(min(n_empty, len(far_d))):
        if far_d[j] < 0:
            break
        new, old = int(empty[j]), int(far_l[j])
        sums[old] -= far_x[j] * far_w[j]
        counts[old] -= far_w[j]
        sums[new] = far_x[j] * far_w[j]
        counts[new] = far_w[j]
    return n_empty


def lloyd(x: torch.Tensor, centroids: torch.Tensor, *, max_iter: int = 300, tol: float = 0.0,
          sample_weight: torch.Tensor | None = None, prune: bool | str = True, precision: str = "auto",
          max_memory: int | None = None, group=None, progress: bool = False,
          verbose: bool = False) -> KMeansResult:
    """Lloyd iterations from given float64 ``centroids: (k, d)`` on ``x: (n, d)``.

    ``tol`` is absolute here (the squared centre shift summed over centres). Stops on unchanged
    labels or shift <= tol; then, like scikit-learn, re-assigns once so labels match the centres.
    With pruning each row keeps an upper bound on the distance to its centre and lower bounds on
    the distance to the other centres, one per group of 64 centres (Yinyang; Hamerly's single
    bound below 128 centres); a row is re-searched only when the bounds cross, which yields
    exactly Lloyd's labels while skipping most of the search. ``prune='always'`` keeps the bounds
    from the first iteration on, whatever they cost. ``prune=True`` (the default) decides: every
    full search also counts the rows whose runner-up is more than twice the last iteration's
    largest centre move farther than their winner (the rows Hamerly's bound would skip); only
    when that is over half the rows does the next full search record bounds (the memory of the
    bounds is spent only then), and pruning then continues only while a pruned search costs less
    than that full one did (otherwise every row is searched without bounds from then on). So the
    default is not slower than ``prune=False`` beyond the one iteration that measured it, and
    labels never depend on it. ``verbose``: print one line per iteration (labels changed, centre
    shift, seconds) and why the loop stopped.
    """
    t_start = time.perf_counter()
    n, d = x.shape
    k = centroids.shape[0]
    w = None if sample_weight is None else sample_weight.double()
    c = centroids.double().clone()
    # shift rows and centroids by the data mean: smaller norms give a tighter low-precision bound
    total, sq_total = _column_sums(x)
    count = torch.tensor(float(n), dtype=torch.float64, device=x.device)
    _allreduce(total, group), _allreduce(sq_total, group), _allreduce(count, group)
    center = total / count
    # shift by the mean only where it matters: it costs a pass over the rows in every search
    spread = float((sq_total / count - center * center).sum())
    if float((center * center).sum()) < 0.25 * spread:
        center = torch.zeros_like(center)
    search = choose_precision(x, c, precision, max_memory, center)
    budget = max_memory if max_memory is not None else 256 * 2**20
    # rows in float64 for the centroid update, kept if they fit in the memory budget (not needed by
    # the compiled path, which adds float32 rows into float64 sums directly, in its tile pass)
    compiled = _numba.usable(x) and x.dtype in (torch.float32, torch.float64)
    x64 = None if compiled else (x.double() if x.dtype != torch.float64 and n * d * 8 <= budget
                                 else (x if x.dtype == torch.float64 else None))
    x_sq = None  # the compiled pass computes ||x - o||^2 of a row while the row is in cache
    if n * 8 <= budget and not compiled:  # ||x - o||^2 of every row, once: every search needs it
        x_sq = torch.empty(n, dtype=torch.float64, device=x.device)
        step = f64_rows(d)
        for s0 in range(0, n, step):
            xs = x[s0:s0 + step].double() - center
            x_sq[s0:s0 + step] = (xs * xs).sum(1)
    info = {"precision": search, "undecided_rows": 0, "searched_rows": 0,
            "pruned_fraction": [], "searched_fraction": [], "fallback_to_float32": False}

    labels = None
    # Pruning bounds (distances, not squared): ``upper`` on the distance to the own centre and,
    # per group of centres, ``lower`` on the distance to every centre of the group but the own
    # (Yinyang, Ding et al. 2015; with a single group this is Hamerly's bound). Groups are fixed
    # spatially compact runs of centres, so one far-moving centre loosens only its group's bound.
    upper = lower = None
    order, group_size = None, 64

    def make_groups():  # when the bounds are first recorded (not before: its SVDs take memory)
        nonlocal order, group_size
        if k >= 128 and order is None:  # groups of 64 centres or more, at most _BOUND_BYTES per row
            while n * (k // group_size) * 4 > min(budget, n * _BOUND_BYTES) and group_size < k:
                group_size *= 2
            order = balanced_groups(c, group_size)
    # 'off': full searches; 'watch': full searches that predict what pruning would skip (prune=True);
    # 'start': a full search that records the bounds; 'bounds': pruned searches
    state = "start" if prune == "always" else ("watch" if prune else "off")
    strict = False
    n_iter = 0
    full_seconds = None  # the bound-recording search's time, the yardstick of prune=True
    max_drift = None
    info["prune"] = []

    def e_step(final: bool):
        """One search: (labels, table, exact squared distances or None, sums, counts)."""
        nonlocal upper, lower, search, state, full_seconds
        t0 = time.perf_counter()
        record = state == "start" and not final
        if record:
            make_groups()
        table = CentroidTable(c, search, center, order=order, group=group_size)
        pruned_step = state == "bounds"
        sums = counts = sq = None
        if not pruned_step:
            margin = 2 * max_drift if state == "watch" and max_drift is not None and not final else None
            # the last search (labels only): exact distances for the inertia, from the same pass
            a = assign_exact(x, table, max_memory=max_memory, exact_distances=final, group_bounds=record,
                             x_sq=x_sq, distances=record or final, sums=not final, sample_weight=w,
                             margin=margin)
            new, sums, counts = a.labels, a.sums, a.counts
            sq = a.sq_dist if final else None
            if record:
                upper, lower = a.sq_dist.sqrt(), a.group_lower
                state = "bounds"
            elif margin is not None and a.n_margin > 0.5 * n:
                state = "start"  # Hamerly's bound would skip most rows: record bounds in the next search
            searched, und = n, a.n_undecided
            info["searched_fraction"].append(1.0)
            del a
        else:
            new = labels.clone()
            floor = lower.amin(dim=1).double()
            active = (upper >= floor).nonzero().squeeze(1)
            del floor
            # tighten the upper bound with the exact distance and test again; not worth it with
            # few centres (a search costs about as much) or when most rows will be searched anyway
            if len(active) and k >= _TIGHTEN_MIN_K and len(active) < 0.5 * n:
                upper[active] = exact_sq_dist(x, c, labels[active], rows=active).sqrt()
                active = active[upper[active] >= lower[active].amin(dim=1).double()]
            searched, und = len(active), 0
            info["searched_fraction"].append(0.0)
            if len(active):
                und, work = _search_needed_groups(x, table, active, new, upper, lower, max_memory, x_sq)
                info["searched_fraction"][-1] = work / (n * table.n_groups)
        info["searched_rows"] += searched
        info["undecided_rows"] += und
        info["pruned_fraction"].append(1.0 - searched / max(1, n))
        if search != "float32" and searched and und > 0.25 * searched:
            search = "float32"  # too many rows undecided: low precision no longer pays
            info["fallback_to_float32"] = True
        seconds = time.perf_counter() - t0
        info["prune"].append(pruned_step)
        if state == "bounds" and not pruned_step:
            full_seconds = seconds
        elif prune is True and pruned_step and seconds >= full_seconds:
            state = "off"  # the bounds cost more than they save here: full searches from now on
            upper = lower = None
            info["prune_stopped_at"] = len(info["prune"])
        return new, table, sq, sums, counts

    iterator = track(range(max_iter), "k-means", progress=progress, leave=False)  # see bottlenecks.progress
    info["iteration_seconds"] = []
    for it in iterator:
        t_iter = time.perf_counter()
        new_labels, table, _, sums, counts = e_step(final=False)
        changed = n if labels is None else int((new_labels != labels).sum())
        changed = _allreduce(torch.tensor(changed, device=x.device), group)
        labels = new_labels
        del new_labels
        if sums is None:
            sums, counts = weighted_sums(x, labels, w, k, x64=x64)
        _allreduce(sums, group), _allreduce(counts, group)
        if bool((counts == 0).any()):
            info["relocated"] = info.get("relocated", 0) + _relocate_empty(x, w, labels, c, sums, counts, group)
        nonzero = counts > 0
        # the new centres in the sums' own memory (no (k, d) temporaries: with many codes they are large)
        c_new = torch.where(nonzero[:, None], sums.div_(torch.where(nonzero, counts, 1.0)[:, None]), c)
        del sums
        drift = (c_new - c).norm(dim=1)
        c = c_new
        max_drift = float(drift.max())
        n_iter = it + 1
        info["iteration_seconds"].append(round(time.perf_counter() - t_iter, 4))
        if state == "bounds" and lower is not None:  # keep the bounds valid for the moved centres
            upper += drift[labels]
            padded = torch.cat([drift, drift.new_zeros(1)])[table.order]  # padding codes sit still
            group_drift = padded.view(lower.shape[1], -1).amax(dim=1).float()
            lower.sub_(group_drift).mul_(1 - 1e-6).clamp_min_(0)  # the factor: rounding stays below
        shift = float((drift * drift).sum())
        if verbose:
            print(f"k-means iteration {n_iter}/{max_iter}: {int(changed)} labels changed, centre shift {shift:.6g}, "
                  f"{time.perf_counter() - t_start:.2f} s", flush=True)
        if int(changed) == 0:
            strict = True
            if verbose:
                print(f"k-means converged at iteration {n_iter}: strict convergence (no label changed)", flush=True)
            break
        if shift <= tol:
            if verbose:
                print(f"k-means converged at iteration {n_iter}: centre shift {shift:.6g} within tol {tol:.6g}",
                      flush=True)
            break
    sq = None
    if not strict:
        labels, _, sq, _, _ = e_step(final=True)
    upper = lower = None
    if sq is None:
        sq = exact_sq_dist(x, c, labels)
    inertia = _allreduce((sq * w).sum() if w is not None else sq.sum(), group)
    info["seconds"] = time.perf_counter() - t_start
    out_dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    return KMeansResult(c.to(out_dtype), labels, float(inertia), n_iter, info)


def _search_needed_groups(x, table, active, labels, upper, lower, max_memory, x_sq=None):
    """Re-search the ``active`` rows, each only in the groups of centres its bounds cannot rule
    out (Yinyang's group filter: group ``g`` is needed when ``lower[r, g] <= upper[r]``; the own
    group always). Rows are batched by own group and searched in the union of their needs, so
    the work stays in dense GEMMs. Updates ``labels``, ``upper`` and ``lower`` in place; returns
    the number of undecided rows and the number of (row, group) pairs searched."""
    G = table.n_groups
    batches = [(active, None)]
    if G == 1 or len(active) > 0.9 * x.shape[0]:  # nearly every row, nearly every group: one search
        return _search_batches(x, table, batches, labels, upper, lower, max_memory, x_sq)
    group_of = torch.empty(len(table.order) + 1, dtype=torch.long, device=x.device)
    group_of[table.order] = torch.arange(len(table.order), device=x.device) // table.group
    own = group_of[labels[active]]
    need = lower[active] <= upper[active, None].float()
    need[torch.arange(len(active), device=x.device), own] = True
    if G > 1:
        by_group = torch.sort(own, stable=True)
        counts = torch.bincount(by_group.values, minlength=G).tolist()
        split = []
        for rows_idx in torch.split(by_group.indices, counts):
            if len(rows_idx):
                groups = need[rows_idx].any(dim=0).nonzero().squeeze(1)
                split.append((active[rows_idx], groups if len(groups) < G else None))
        work = sum(len(r) * (G if g is None else len(g)) for r, g in split)
        if work < 0.7 * len(active) * G:  # else one dense search costs less than the gathers
            batches = split
    return _search_batches(x, table, batches, labels, upper, lower, max_memory, x_sq)


def _search_batches(x, table, batches, labels, upper, lower, max_memory, x_sq=None):
    """Search each ``(rows, groups)`` batch (``groups=None``: all) and store labels and bounds."""
    G = table.n_groups
    undecided = work = 0
    for rows, groups in batches:
        work += len(rows) * (G if groups is None else len(groups))
        sub = table if groups is None else table.subset(groups)
        every_row = len(rows) == x.shape[0]  # then no gather: rows is arange(n)
        a = assign_exact(x, sub, rows=None if every_row else rows, max_memory=max_memory,
                         exact_distances=False, group_bounds=True, x_sq=x_sq)
        labels[rows] = a.labels
        upper[rows] = a.sq_dist.sqrt()
        if groups is None:
            lower[rows] = a.group_lower
        else:  # groups left out keep their (still valid) bounds
            lower[rows[:, None], groups[None, :]] = a.group_lower
        undecided += a.n_undecided
    return undecided, work


def tolerance(x: torch.Tensor, tol: float, group=None) -> float:
    """scikit-learn's scale for ``tol``: ``tol`` times the mean per-feature variance."""
    if tol == 0:
        return 0.0
    x64_sum, sq_sum = _column_sums(x)
    n = torch.tensor(float(x.shape[0]), dtype=torch.float64, device=x.device)
    _allreduce(x64_sum, group), _allreduce(sq_sum, group), _allreduce(n, group)
    mean = x64_sum / n
    var = (sq_sum / n - mean * mean).clamp_min(0)
    return float(var.mean()) * tol


def _max_abs(x: torch.Tensor, group) -> float:
    """``max |x|`` over every rank; raises the finiteness error (one pass does both)."""
    if _numba.usable(x):
        m = _numba.abs_max(x)
    else:
        step = max(1, (1 << 22) // max(1, x.shape[1]))
        m = max((float(x[s:s + step].abs().amax()) for s in range(0, x.shape[0], step)), default=0.0)
    if not math.isfinite(m):
        check_finite(x, "x")
    t = torch.tensor(m, dtype=torch.float64, device=x.device)
    if group is not None:
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return float(t)


def kmeans(x: torch.Tensor, k: int, *, init="k-means++", n_init: int = 1, max_iter: int = 300,
           tol: float = 1e-4, seed=None, sample_weight: torch.Tensor | None = None, prune: bool | str = True,
           precision: str = "auto", max_memory: int | None = None, distributed=False,
           progress: bool = False, verbose: bool = False) -> KMeansResult:
    """Exact k-means of ``x: (n, d)`` into ``k`` clusters -> :class:`KMeansResult`.

    Labels equal a float64 Lloyd's from the same initial centres (except at exact ties) whatever
    ``precision`` the search uses. ``tol`` is relative to the mean feature variance, as in
    scikit-learn. ``n_init`` restarts keep the lowest inertia. ``init``: ``'k-means++'``,
    ``'random'``, an array ``(k, d)`` or a callable ``init(x, k, generator) -> (k, d)``. With
    ``distributed=True`` (or a process group), every rank passes its own shard and gets the same
    centres as one process on all the data; k-means++/random initialisation then all-gathers the
    shards (pass an ``init`` array to avoid that copy). ``x`` is never modified. Data of extreme
    magnitude (squares that would overflow or underflow the float32 search, e.g. ``|x| ~ 1e19``)
    are clustered as ``x / 2^e`` (exact) and the results scaled back. ``verbose``: one line per
    iteration on stdout.
    """
    if isinstance(x, torch.Tensor) and x.dim() == 3 and not distributed:  # C codebooks at once: (n, C, d)
        from .batched import kmeans as batched_kmeans
        return batched_kmeans(x, k, init=init, n_init=n_init, max_iter=max_iter, tol=tol, seed=seed,
                              sample_weight=sample_weight, progress=progress)
    check_data(x, finite=False)  # finiteness: with the magnitude, in one pass below
    check_positive_int(k, "k")
    check_positive_int(n_init, "n_init")
    check_positive_int(max_iter, "max_iter")
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if not (prune is True or prune is False or prune == "always"):
        raise ValueError(f"prune: expected True (prune while it pays), False or 'always', got {prune!r}")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol: expected a finite number >= 0, got {tol!r}")
    group = _group(distributed)
    scale = safe_scale(_max_abs(x, group))
    n_total = int(_allreduce(torch.tensor(x.shape[0], device=x.device), group))
    if k > n_total:
        raise ValueError(f"k={k} is larger than the number of samples ({n_total}); expected k <= n_samples")
    if sample_weight is not None:
        sample_weight = torch.as_tensor(sample_weight, dtype=torch.float64, device=x.device)
        if sample_weight.shape != (x.shape[0],):
            raise ValueError(f"sample_weight: expected shape ({x.shape[0]},), got {tuple(sample_weight.shape)}")
        check_finite(sample_weight, "sample_weight")
        if bool((sample_weight < 0).any()):
            raise ValueError("sample_weight: expected non-negative weights")
        if float(_allreduce(sample_weight.sum(), group)) <= 0:
            raise ValueError("sample_weight: expected at least one positive weight, got all zeros")
    array_init = not isinstance(init, str) and not callable(init)
    if array_init and n_init != 1:
        warnings.warn(f"an explicit init array was given, so n_init={n_init} is replaced by 1", RuntimeWarning,
                      stacklevel=2)
        n_init = 1
    if scale != 1.0:  # x / 2^e is exact: the same labels, in a range the float32 search can square
        x = x / scale
        if array_init:
            init = torch.as_tensor(init).to(device=x.device, dtype=torch.float64) / scale
        elif callable(init):
            user_init = init
            init = lambda xs, kk, gg: torch.as_tensor(user_init(xs * scale, kk, gg)).double() / scale  # noqa: E731
    g = make_generator(seed)
    tol_abs = tolerance(x, tol, group)
    best = None
    for _ in range(n_init):
        if not array_init and group is not None:
            xs = _allgather_rows(x, group)
            ws = None if sample_weight is None else _allgather_rows(sample_weight, group)
            c0 = init_centroids(xs, k, init, g, ws)
            del xs, ws
        else:
            c0 = init_centroids(x, k, init, g, sample_weight)
        if verbose:
            print(f"k-means: initialisation complete ({init if isinstance(init, str) else 'given'})", flush=True)
        res = lloyd(x, c0, max_iter=max_iter, tol=tol_abs, sample_weight=sample_weight, prune=prune,
                    precision=precision, max_memory=max_memory, group=group, progress=progress, verbose=verbose)
        if best is None or res.inertia < best.inertia:
            best = res
    if scale != 1.0:
        best.centroids = best.centroids * scale
        best.inertia *= scale * scale
        best.info["scaled_by"] = scale
    return best


def assign(x: torch.Tensor, centroids: torch.Tensor, *, precision: str = "auto",
           max_memory: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of each row: ``x: (n, d)``, ``centroids: (k, d)`` -> ``labels (n,)``,
    ``squared distances (n,)`` (float64), decided exactly (see :mod:`bottlenecks.cluster.exact`)."""
    check_data(x)
    check_float(centroids, "centroids")
    check_ndim(centroids, 2, "centroids", "(k, n_features)")
    check_nonempty(centroids, "centroids")
    check_finite(centroids, "centroids")
    if centroids.shape[1] != x.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but centroids have {centroids.shape[1]}; "
                         "expected the same number")
    if centroids.device != x.device:
        raise ValueError(f"x is on {x.device} but centroids are on {centroids.device}; move them to one device")
    scale = safe_scale(max(float(x.abs().max()), float(centroids.abs().max())))
    if scale != 1.0:  # as in kmeans: dividing by 2^e is exact, and the squares stay representable
        x, centroids = x / scale, centroids / scale
    c64 = centroids.double()
    center = x[: min(len(x), 4096)].double().mean(0)
    search = choose_precision(x, c64, precision, max_memory, center)
    a: Assignment = assign_exact(x, c64, precision=search, center=center, max_memory=max_memory)
    return a.labels, (a.sq_dist * scale * scale if scale != 1.0 else a.sq_dist)
