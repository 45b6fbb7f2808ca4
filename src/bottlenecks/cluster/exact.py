"""Exact nearest-centroid assignment with a fast low-precision candidate search.

One GEMM per chunk of rows gives approximate squared distances directly, because the norms are
folded in as extra columns::

    [x - o, ||x - o||^2, 1] @ [-2 (c - o), 1, ||c - o||^2]^T  =  ||x - c||^2      (o: data mean)

The GEMM runs in float32 or, where this machine runs it faster, in bfloat16 / float16 — either
plainly (``'bfloat16'``) or as three bf16 products of hi/lo splits (``'bfloat16x3'``, error
``~u^2``). Low precision is only used to *find* the winner: every score carries a proven bound

    |s_hat_j - ||x - c_j||^2| <= u_out |s_hat_j| + E_in(x),
    E_in(x) = a ||x - o|| max_j ||c_j - o|| + b (||x - o|| + max_j ||c_j - o||)^2

(``u_out``: rounding of the output; ``a``: rounding of the inputs, zero for the hi/lo split;
``b``: split remainders and float32 accumulation, ``(d + ...) u32``; all with a 1.25 safety
factor). A row is decided when its runner-up's lower bound exceeds its winner's upper bound.
The few undecided rows are settled in float64 among their candidates (every code whose lower
bound is under the winner's upper bound). Labels thus equal a float64 Lloyd's except at exact
ties, whatever precision did the bulk of the work.

The precision is picked by a quick measured calibration on the caller's data, never by
assumption (other CPUs have no fast bf16).
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from . import _numba
from .search import rows_per_chunk, top2_blocks

# triton is imported only when its kernel runs (CUDA, or the interpreter in tests): importing it
# costs time and fixes its interpreter mode for the whole process
HAS_TRITON = importlib.util.find_spec("triton") is not None

_U32 = 2.0**-24
_UNIT = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
#: search name -> (GEMM dtype, number of hi/lo products)
SEARCHES = {"float32": (torch.float32, 1), "bfloat16x3": (torch.bfloat16, 3),
            "bfloat16": (torch.bfloat16, 1), "float16": (torch.float16, 1)}
PRECISIONS = ("auto", *SEARCHES)
_MAX_CANDIDATES = 256  # per undecided row, on average; beyond that, re-score the whole row
_CHUNK_BYTES = 32 * 2**20  # scores per chunk: measured fastest on CPU (the reduction re-reads them from cache)
_TILE_BYTES = 2**20  # compiled path: one tile of scores stays in a core's L2 for its reduction
_TILE_ROW_BYTES = 2 * 2**20  # ... and its rows in cache for the float64 re-scoring
_FEW_CODES = 48  # below this many codes the scores are computed transposed, (K, rows): skinny GEMMs run faster


@dataclass
class Assignment:
    """Result of :func:`assign_exact` (all tensors length ``n``)."""

    labels: torch.Tensor  # int64, nearest centroid (lowest index at exact ties)
    sq_dist: torch.Tensor  # float64, exact squared distance to it (an upper bound if not exact_distances)
    second_lower: torch.Tensor  # float64, a lower bound on the squared distance to the runner-up
    n_undecided: int  # rows the fast search could not decide alone
    group_lower: torch.Tensor | None = None  # (n, G) float32 lower bounds on the distance (not
    # squared) to each group of codes, the winner excluded; zeros for undecided rows
    sums: torch.Tensor | None = None  # (K, d) float64 sums of the (weighted) rows per label, if asked
    counts: torch.Tensor | None = None  # (K,) float64 (weighted) rows per label, with ``sums``
    n_margin: int = -1  # rows decided with their runner-up more than ``margin`` farther (if asked)


def balanced_groups(centroids: torch.Tensor, size: int) -> torch.Tensor:
    """An order of the ``K`` centroids in which consecutive runs of ``size`` are spatially
    compact groups (recursive splits along each part's principal direction, at multiples of
    ``size``). Used for Yinyang-style group bounds; deterministic."""
    K = centroids.shape[0]
    parts, done = [torch.arange(K, device=centroids.device)], []
    while parts:
        idx = parts.pop()
        if len(idx) <= size:
            done.append(idx)
            continue
        pts = centroids[idx].double()
        pts = pts - pts.mean(0)
        direction = torch.linalg.svd(pts, full_matrices=False).Vh[0]
        order = (pts @ direction).argsort(stable=True)
        cut = (-(-len(idx) // size) // 2) * size
        parts += [idx[order[cut:]], idx[order[:cut]]]
    return torch.cat(done)


def _hi_lo(t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``t ~ hi + lo`` with both in ``dtype``; the remainder is ``<= u^2 |t|``."""
    hi = t.to(dtype)
    return hi, (t - hi.to(t.dtype)).to(dtype)


class CentroidTable:
    """Centroids prepared once per Lloyd iteration for one search precision."""

    def __init__(self, centroids64: torch.Tensor, precision: str, center: torch.Tensor,
                 order: torch.Tensor | None = None, group: int = 64):
        """``order`` permutes the codes so that runs of ``group`` form the groups of the bounds
        (columns are padded to a multiple of ``group`` with codes that never win)."""
        if precision not in SEARCHES:
            raise ValueError(f"precision: expected one of {tuple(SEARCHES)}, got {precision!r}")
        dtype, terms = SEARCHES[precision]
        K, d = centroids64.shape
        if order is None:
            order = torch.arange(K, device=centroids64.device)
        if K < 2 * group:
            group = K
        pad = -K % group
        # column j of the scores is code order[j]; padding columns say K (they never win)
        self.order = torch.cat([order, order.new_full((pad,), K)])
        self.group = group
        self.precision, self.dtype, self.terms = precision, dtype, terms
        self.c64 = centroids64
        self.sq64 = (centroids64 * centroids64).sum(1)  # for the float64 re-score (unshifted)
        # shift by a point exactly representable in float32, so both sides shift by the same vector
        self.center = center.float().double()
        self.centered = bool(self.center.abs().max() > 0) if d else False
        u = _UNIT[dtype]
        if dtype == torch.float32:
            # float32: scores ||c||^2 - 2 <x, c> straight from addmm on the rows as they are (no
            # copy); ||x||^2 is added to the few values that need it (winner, runner-up, block minima)
            # (a column of ones in the rows carries the bias: addmm's broadcast bias costs an extra
            # pass over the scores, the column a pass over the rows only). Built in place: one
            # float64 (K, d) temporary, not one per step (K * d is large with many codes)
            cc = torch.index_select(centroids64, 0, order).sub_(self.center)
            csq = torch.einsum("ij,ij->i", cc, cc)
            self.c_max = float(csq.max().sqrt())
            mat = torch.empty(d + 1, K + pad, dtype=torch.float32, device=cc.device)
            mat[:d, :K] = cc.mul_(-2).t()
            mat[d, :K] = csq
            mat[:d, K:] = 0  # padding codes: zero vector with a huge norm, so their scores never win
            mat[d, K:] = 1e30
            del cc
            self.mat_t = mat  # (d + 1, Kp)
            self.adds_xsq = False
            a, b = 4 * u + 2 * u * u, (2 * d + 12) * _U32
            self.u_out = 1.25 * 1.01 * u
            self.a, self.b = 1.25 * a, 1.25 * b
            return
        cc = centroids64 - self.center
        csq = (cc * cc).sum(1, keepdim=True)
        self.c_max = float(csq.max().sqrt())
        # padding codes: zero vector with a huge norm, so their scores never win
        cc = torch.cat([cc[order], cc.new_zeros(pad, d)])
        csq = torch.cat([csq[order], csq.new_full((pad, 1), 1e30)])
        ones = torch.ones(K + pad, 1, dtype=torch.float64, device=cc.device)
        # a padding norm that is finite in the search dtype with a zero low part: 1e30 overflows
        # float16, and inf - inf in the hi/lo split would make NaN scores that win every amin
        pad_sq = (csq.new_full((pad, 1), torch.finfo(dtype).max / 4), csq.new_zeros(pad, 1))
        sq_hi, sq_lo = _hi_lo(csq[:K], dtype)
        sq_hi, sq_lo = torch.cat([sq_hi, pad_sq[0].to(dtype)]), torch.cat([sq_lo, pad_sq[1].to(dtype)])
        if terms == 1:
            cols = [-2 * cc, ones, ones, sq_hi, sq_lo]
            a, b = 4 * u + 2 * u * u, u * u + (2 * d + 12) * _U32
        else:
            c_hi, c_lo = _hi_lo(cc, dtype)
            cols = [-2 * c_hi, -2 * c_hi, -2 * c_lo, ones, ones, sq_hi, sq_lo]
            a, b = 0.0, 8 * u * u + (4 * d + 12) * _U32
        self.mat_t = torch.cat([col.to(dtype) for col in cols], 1).t().contiguous()  # (width, K)
        self.adds_xsq = True  # the GEMM yields squared distances directly
        self.u_out = 1.25 * 1.01 * u
        self.a, self.b = 1.25 * a, 1.25 * b

    @property
    def n_groups(self) -> int:
        return self.mat_t.shape[1] // self.group

    def subset(self, groups: torch.Tensor) -> CentroidTable:
        """The same table restricted to some groups of codes (a copy of their columns): the
        search of rows that provably need no other group (Yinyang's group filter)."""
        sub = copy.copy(self)
        width = self.mat_t.shape[0]
        sub.mat_t = self.mat_t.view(width, self.n_groups, self.group)[:, groups].reshape(width, -1)
        sub.order = self.order.view(self.n_groups, self.group)[groups].reshape(-1)
        return sub

    def bound_in(self, norms: torch.Tensor) -> torch.Tensor:
        """``E_in`` for rows with ``||x - o|| = norms`` (float64)."""
        return self.a * norms * self.c_max + self.b * (norms + self.c_max) ** 2 + 1e-30

    def scores(self, x_rows: torch.Tensor, x_sq: torch.Tensor | None = None):
        """``x_rows: (m, d)`` -> approximate scores ``(m, K)`` in the search dtype (a view of a
        reused buffer, valid until the next call) and ``||x - o||^2`` ``(m,)`` float64. The scores
        are squared distances when ``adds_xsq``, else squared distances minus ``||x - o||^2``.
        ``x_sq``: the rows' ``||x - o||^2`` if known (saves a pass)."""
        m, d = x_rows.shape
        if self.dtype == torch.float32:
            xa = _workspace("rows", m * (d + 1), self.dtype, x_rows.device).view(m, d + 1)
            if self.centered:
                torch.sub(x_rows, self.center.to(x_rows.dtype), out=xa[:, :d])
            else:
                xa[:, :d] = x_rows
            xa[:, d] = 1
            if x_sq is None:
                x_sq = xa[:, :d].pow(2).sum(1).double()
            out = _workspace("scores", m * self.mat_t.shape[1], self.dtype, x_rows.device)
            out = out.view(m, self.mat_t.shape[1])
            torch.mm(xa, self.mat_t, out=out)
            return out, x_sq
        width = self.mat_t.shape[0]
        xa = _workspace("rows", m * width, self.dtype, x_rows.device).view(m, width)
        xc = x_rows.float() - self.center.float()
        xsq = (xc * xc).sum(1, keepdim=True)
        if self.dtype == torch.float32:
            xa[:, :d] = xc
            xa[:, d:d + 1] = xsq
            xa[:, d + 1:] = 1
        elif self.terms == 1:
            xa[:, :d] = xc
            xa[:, d:d + 2] = torch.cat(_hi_lo(xsq, self.dtype), 1)
            xa[:, d + 2:] = 1
        else:
            hi, lo = _hi_lo(xc, self.dtype)
            xa[:, :d], xa[:, d:2 * d], xa[:, 2 * d:3 * d] = hi, lo, hi
            xa[:, 3 * d:3 * d + 2] = torch.cat(_hi_lo(xsq, self.dtype), 1)
            xa[:, 3 * d + 2:] = 1
        out = _workspace("scores", m * self.mat_t.shape[1], self.dtype, x_rows.device)
        out = out.view(m, self.mat_t.shape[1])
        torch.mm(xa, self.mat_t, out=out)
        return out, xsq.squeeze(1).double()


_WORKSPACES: dict = {}


def _workspace(name: str, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A flat buffer reused across calls: fresh large allocations cost page faults that take
    longer than the GEMM writing into them (``benchmarks/kmeans.py``)."""
    key = (name, dtype, torch.device(device))
    buf = _WORKSPACES.get(key)
    if buf is None or buf.numel() < numel:
        buf = torch.empty(numel, dtype=dtype, device=device)
        _WORKSPACES[key] = buf
    return buf[:numel]


def release_workspaces() -> None:
    """Free the reused search buffers (each at most ``max_memory``)."""
    _WORKSPACES.clear()


def f64_rows(d: int) -> int:
    """Rows per float64 temporary: ~4 MiB, below glibc's mmap threshold, so that the buffer is
    recycled instead of page-faulted in afresh each time (that cost more than the arithmetic)."""
    return max(1, 2**19 // max(1, d))


def exact_sq_dist(x: torch.Tensor, c64: torch.Tensor, labels: torch.Tensor,
                  rows: torch.Tensor | None = None) -> torch.Tensor:
    """``||x_i - c_{labels_i}||^2`` in float64 by direct differences, for every row of ``x`` or
    for ``x[rows]`` (``labels`` then matches ``rows``): ``-> (len,)``. Rows are gathered in
    bounded sub-chunks, never copied whole."""
    if _numba.usable(x, c64) and x.dtype in (torch.float32, torch.float64):
        return _numba.sq_dist(x, c64, labels, rows)
    n = x.shape[0] if rows is None else len(rows)
    out = torch.empty(n, dtype=torch.float64, device=x.device)
    step = f64_rows(x.shape[1])
    for s in range(0, n, step):
        xs = x[s:s + step] if rows is None else x[rows[s:s + step]]
        diff = xs.double() - c64[labels[s:s + step]]
        out[s:s + step] = (diff * diff).sum(1)
    return out


def _rescore_rows(x64: torch.Tensor, table: CentroidTable):
    """Float64 scores of whole rows: (labels, best squared distance, runner-up squared distance)."""
    s = torch.addmm(table.sq64, x64, table.c64.t(), beta=1.0, alpha=-2.0)
    v, _ = s.topk(min(2, s.shape[1]), dim=1, largest=False, sorted=True)
    second = v[:, 1] if v.shape[1] > 1 else torch.full_like(v[:, 0], float("inf"))
    best = (s == v[:, :1]).to(torch.int8).argmax(dim=1)  # lowest index among exact ties
    x_sq = (x64 * x64).sum(1)
    return best, (x_sq + v[:, 0]).clamp_min(0), (x_sq + second).clamp_min(0)


def _rescore_candidates(x64, table, cand_rows, cand_cols, n_rows):
    """Float64 direct distances for (row, code) candidate pairs -> per row (label, best, second)."""
    d2 = torch.empty(len(cand_rows), dtype=torch.float64, device=x64.device)
    step = f64_rows(x64.shape[1])
    for s in range(0, len(cand_rows), step):
        diff = x64[cand_rows[s:s + step]] - table.c64[cand_cols[s:s + step]]
        d2[s:s + step] = (diff * diff).sum(1)
    inf = torch.full((n_rows,), float("inf"), dtype=torch.float64, device=x64.device)
    best = inf.scatter_reduce(0, cand_rows, d2, "amin")
    is_best = d2 == best[cand_rows]
    K = table.c64.shape[0]
    label = torch.full((n_rows,), K, dtype=torch.long, device=x64.device)
    label = label.scatter_reduce(0, cand_rows[is_best], cand_cols[is_best], "amin")  # lowest index
    others = torch.where(cand_cols == label[cand_rows], torch.full_like(d2, float("inf")), d2)
    second = inf.clone().scatter_reduce(0, cand_rows, others, "amin")
    return label, best, second


def assign_exact(x: torch.Tensor, centroids64, *, precision: str = "float32",
                 center: torch.Tensor | None = None, max_memory: int | None = None,
                 rows: torch.Tensor | None = None, exact_distances: bool = True,
                 group_bounds: bool = False, backend: str = "auto",
                 x_sq: torch.Tensor | None = None, distances: bool = True, sums: bool = False,
                 sample_weight: torch.Tensor | None = None, margin: float | None = None) -> Assignment:
    """Nearest centroid of every row of ``x: (n, d)`` (or of ``x[rows]``), decided exactly.

    ``centroids64: (K, d)`` float64, or a :class:`CentroidTable` prepared from them.

    Peak extra memory, with ``s`` the search dtype's itemsize, ``w`` the GEMM width (``d + 2``
    for float32, ``d + 4`` for bfloat16/float16, ``3 d + 4`` for bfloat16x3) and ``m`` rows per
    chunk::

        m * K * s * (1 + 1/64)          scores of one chunk (a reused buffer) and its block minima
      + m * (w * s + 12 d)              the chunk's GEMM rows and float32 copies
      + K * w * s + K * d * 16          the prepared centroids
      + n * 24                          the outputs (labels, distance, runner-up bound)

    ``m`` is the largest count for which the first two terms stay under ``max_memory`` (and under
    32 MiB, which measured fastest: the reduction then re-reads the scores from cache); undecided
    rows are re-scored in float64 in sub-chunks of ~16 MiB. The ``n * K`` matrix never exists.
    With the compiled kernels (float32 search on CPU, numba installed) the first two terms are
    instead, for each of the ``t = torch.get_num_threads()`` worker threads, ``m * K * 4 +
    m * (d + 1) * 4`` (the row copy with its column of ones; with fewer than 48 codes ``m * d * 4``,
    and only when rows are centred, gathered or cast), with ``m`` such that the scores stay under
    ``min(max_memory / t, 1 MiB)`` (a tile that stays in the core's L2 for the compiled pass) and the
    row copy under ``min(max_memory / t, 2 MiB)``, plus for a subset of rows (``rows``) on row-major
    tiles a gather buffer of ``m * d`` of the input's itemsize; each thread keeps these buffers for
    its life (reused by the next call); undecided rows are re-scored in place, without copies.

    With ``exact_distances=False`` the distances are upper bounds from the search (enough for
    pruning bounds) and the float64 pass over the rows is skipped. ``group_bounds=True`` also
    returns a lower bound per group of the table's codes (``n * G * 4`` more bytes).

    ``backend``: ``'torch'`` (GEMM + reduction), ``'triton'`` (the fused FlashAssign kernel: no
    score buffer at all; float32/bfloat16 searches without group bounds; undecided rows are then
    re-scored whole in float64) or ``'auto'`` (Triton on CUDA when it applies). ``x_sq``:
    ``||x - o||^2`` of every row of ``x`` (float64, ``o`` the table's centre) if already known.

    ``distances=False``: the caller needs the labels only; the compiled path then returns no
    distances (``sq_dist`` and ``second_lower`` are None: ``n * 16`` bytes less). ``sums=True``
    (compiled path, every row, float32 search): also the Lloyd update's per-label float64 sums of
    the (``sample_weight``-weighted) rows and their weights, added while each tile's rows are in
    cache. The rows are split into a fixed number ``P`` of runs (from ``n``, ``K`` and ``d`` alone,
    at most 16); each run is summed in row order into its own ``(K, d)`` float64 block (``P * K *
    d * 8`` bytes, at most ``max(4 MiB, n * 8)``), and the blocks are added in run order, so the
    sums do not depend on the thread count. Where that does not apply ``sums`` and ``counts`` are
    None and the caller sums itself. ``margin``: also count the rows whose runner-up is provably
    more than ``margin`` farther than their winner (distances, not squared): Hamerly's bound would
    skip them if no centre moved more than ``margin / 2`` (``Assignment.n_margin``).
    """
    if isinstance(centroids64, CentroidTable):
        table = centroids64
    else:
        if center is None:
            center = torch.zeros(centroids64.shape[1], dtype=torch.float64, device=centroids64.device)
        table = CentroidTable(centroids64, precision, center)
    K, d = table.c64.shape
    triton_ok = HAS_TRITON and not group_bounds and table.precision in ("float32", "bfloat16")
    if backend == "auto":
        backend = "triton" if triton_ok and x.is_cuda else "torch"
    elif backend == "triton" and not triton_ok:
        raise ValueError("backend='triton' needs triton installed, precision 'float32' or 'bfloat16' and "
                         f"group_bounds=False; got precision={table.precision!r}, group_bounds={group_bounds}")
    n = len(rows) if rows is not None else x.shape[0]
    labels = torch.empty(n, dtype=torch.long, device=x.device)
    n_undecided = 0
    G = table.mat_t.shape[1] // table.group
    glb = torch.empty(n, G, dtype=torch.float32, device=x.device) if group_bounds else None
    s = table.mat_t.element_size()
    fused = backend == "torch" and table.dtype == torch.float32 and _numba.usable(x, table.mat_t)
    if fused:  # tiles through BLAS + one compiled pass each, on worker threads
        keep = distances or exact_distances
        sq_dist = torch.empty(n, dtype=torch.float64) if keep else None
        second = torch.empty(n, dtype=torch.float64) if keep else None
        parts = sum_parts(n, K, d) if sums and rows is None else 0
        psum = torch.zeros(parts, K, d, dtype=torch.float64) if parts else None
        pcount = torch.zeros(parts, K, dtype=torch.float64) if parts else None
        w = None if sample_weight is None else sample_weight.double().contiguous()
        stats = np.zeros(1, np.int64)
        n_undecided = _assign_compiled(x, table, rows, x_sq, exact_distances, glb, max_memory, labels, sq_dist,
                                       second, psum, pcount, w, -1.0 if margin is None else float(margin), stats)
        a = Assignment(labels, sq_dist, second, n_undecided, glb, n_margin=-1 if margin is None else int(stats[0]))
        if parts:  # the runs' blocks added in run order: the same sums whatever the thread count
            a.sums, a.counts = psum[0], pcount[0]
            for t in range(1, parts):
                a.sums += psum[t]
                a.counts += pcount[t]
        return a
    sq_dist = torch.empty(n, dtype=torch.float64, device=x.device)
    second = torch.empty(n, dtype=torch.float64, device=x.device)
    n_margin = -1 if margin is None else 0
    cap = _CHUNK_BYTES if max_memory is None else min(max_memory, _CHUNK_BYTES)
    m = rows_per_chunk(n, K * s + (K // 64) * s + table.mat_t.shape[0] * s + 12 * d, cap)
    for start in range(0, n, m):
        stop = min(n, start + m)
        sel = rows[start:stop] if rows is not None else slice(start, stop)
        xr = x[sel]
        shift = None  # what the scores lack of a squared distance, per row
        if backend == "triton":
            s1, i1, s2, norms = _triton_top2(xr, table)
            scores = None
        else:
            scores, xsq = table.scores(xr, None if x_sq is None else x_sq[sel])
            norms = xsq.sqrt()
            s1, i1, s2, block_min = top2_blocks(scores, 64 if table.group % 64 == 0 else table.group)
            i1 = table.order[i1]
            s1, s2 = s1.double(), s2.double()
            if not table.adds_xsq:
                shift = xsq
                s1, s2 = s1 + xsq, s2 + xsq
        e_in = table.bound_in(norms)
        if glb is not None:
            lower = block_min.double() if shift is None else block_min.double() + shift[:, None]
            lower = (lower - table.u_out * lower.abs() - e_in[:, None]).clamp_min(0)
            lower = lower.sqrt().float() * (1 - 1e-6)
            if lower.shape[1] != G:  # groups of several 64-blocks
                lower = lower.view(len(lower), G, -1).amin(dim=2)
            glb[start:stop] = lower
        up1 = (s1 + table.u_out * s1.abs() + e_in).clamp_min(0)  # winner's distance is at most this
        up1 = up1.masked_fill(i1 == K, float("inf"))  # a padding code "won" (scores out of range): re-score
        lo2 = (s2 - table.u_out * s2.abs() - e_in).clamp_min(0)  # every other code's at least this
        lab, d1, sec = i1, up1, lo2
        und = (lo2 <= up1).nonzero().squeeze(1)
        if len(und):
            n_undecided += len(und)
            lab, d1, sec = lab.clone(), d1.clone(), sec.clone()
            # candidates: codes whose lower bound is under the winner's upper bound
            thresh = ((up1[und] + e_in[und]) / (1 - table.u_out)).float()
            thresh = torch.nextafter(thresh, torch.full_like(thresh, float("inf")))
            if shift is not None:  # compare in the scores' own terms
                thresh = torch.nextafter((thresh.double() - shift[und]).float(), torch.full_like(thresh, float("inf")))
            mask = scores[und].float() <= thresh[:, None] if scores is not None else None
            n_cand = int(mask.sum()) if mask is not None else -1
            x64 = xr[und].double()
            if 0 <= n_cand <= _MAX_CANDIDATES * len(und):
                r, c = mask.nonzero(as_tuple=True)
                c = table.order[c]
                real = c < K  # padding columns are never candidates
                best_lab, best, runner = _rescore_candidates(x64, table, r[real], c[real], len(und))
                runner = torch.minimum(runner, up1[und])  # non-candidates are at least up1 away
            else:
                best_lab, best, runner = _rescore_rows(x64, table)
            # float64 rounding (expanded form): keep the bounds on the safe side
            lab[und], d1[und], sec[und] = best_lab, best * (1 + 1e-9), runner * (1 - 1e-9)
            if glb is not None:  # the fast winner may not be the winner: no group bound holds
                glb[start + und] = 0
        labels[start:stop] = lab
        sq_dist[start:stop] = exact_sq_dist(xr, table.c64, lab) if exact_distances else d1
        second[start:stop] = sec
        if margin is not None:
            n_margin += int((sec.sqrt() - d1.sqrt() > margin).sum())
    return Assignment(labels, sq_dist, second, n_undecided, glb, n_margin=n_margin)


_POOL: dict = {}
_LOCAL = threading.local()  # each worker thread's own tile buffers, kept for the thread's life


def _thread_buffer(name: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
    """A flat buffer of this thread's, reused across calls: freeing and re-allocating megabytes per
    call left them cached in every thread's malloc arena (extra peak memory), and fresh pages cost
    page faults."""
    bufs = getattr(_LOCAL, "bufs", None)
    if bufs is None:
        bufs = _LOCAL.bufs = {}
    buf = bufs.get((name, dtype))
    if buf is None or buf.numel() < numel:
        bufs.pop((name, dtype), None)  # free before allocating the larger one
        buf = torch.empty(numel, dtype=dtype)
        bufs[(name, dtype)] = buf
    return buf[:numel]


def sum_parts(n: int, K: int, d: int) -> int:
    """Runs of rows for the fused Lloyd sums (see :func:`assign_exact`): 16, halved while the
    ``(K, d)`` float64 blocks exceed ``max(4 MiB, n * 8)`` bytes; 0 where even 4 runs exceed it (many
    codes: the update is a small part of the iteration there, and the caller sums separately)."""
    budget = max(4 * 2**20, n * 8)
    parts = min(16, max(1, n // 1024))
    while parts > 4 and parts * K * d * 8 > budget:
        parts //= 2
    return parts if parts * K * d * 8 <= budget else 0


def _tile_pool(threads: int) -> ThreadPoolExecutor:
    """``threads`` worker threads, each with torch (OpenMP, MKL) set to one thread: every worker
    runs its tiles' GEMM and compiled pass back to back on its own core. One pool in the whole
    process would otherwise hand the GEMM to torch's OpenMP team and the reduction to numba's
    team, and the two teams' spinning threads fight for the cores at every tile."""
    pool = _POOL.get(threads)
    if pool is None:
        caller = torch.get_num_threads()
        ready = threading.Barrier(threads)

        def single_threaded():
            torch.get_num_threads()  # torch's per-thread set-up first, or it would undo the next line
            torch.set_num_threads(1)
            ready.wait()

        pool = ThreadPoolExecutor(threads, thread_name_prefix="bottlenecks-assign", initializer=single_threaded)
        for f in [pool.submit(int) for _ in range(threads)]:  # start every worker now
            f.result()
        torch.set_num_threads(caller)  # the caller's own setting (and that of threads made later)
        _POOL[threads] = pool
    return pool


def _assign_compiled(x, table, rows, x_sq, exact_distances, glb, max_memory, labels, sq_dist, second,
                     psum=None, pcount=None, w=None, margin=-1.0, stats=None) -> int:
    """The compiled CPU path of :func:`assign_exact`: rows in tiles (``scores: (m, Kp)`` under 1 MiB,
    a core's L2), each tile one ``torch.mm`` and one compiled pass (winner, runner-up, block minima,
    certificate, float64 re-scoring of its undecided rows while their scores are still in cache, and
    with ``psum`` the rows added into their run's float64 sums). Work is shared out to
    ``torch.get_num_threads()`` worker threads tile by tile, or run by run with ``psum`` (a run's rows
    are summed in order by one thread); ``sq_dist``/``second`` None: not kept. Returns the undecided
    count."""
    K, d = table.c64.shape
    Kp = table.mat_t.shape[1]
    n = len(labels)
    transposed = Kp < _FEW_CODES
    blk = 64 if table.group % 64 == 0 else table.group
    nblk = 1 if transposed else Kp // blk
    G = Kp // table.group
    threads = max(1, torch.get_num_threads())
    per_thread = None if max_memory is None else max(1, max_memory // threads)
    m = rows_per_chunk(n, Kp * 4, _TILE_BYTES if per_thread is None else min(per_thread, _TILE_BYTES))
    # row-major tiles: the rows get a column of ones, so the GEMM adds the code norms (the last row
    # of mat_t) and the compiled pass only compares; few codes: transposed tiles, norms added there
    copy_rows = not transposed or table.centered or rows is not None or x.dtype != torch.float32
    width = d if transposed else d + 1
    row_cap = _TILE_ROW_BYTES if per_thread is None else min(per_thread, _TILE_ROW_BYTES)
    m = min(m, rows_per_chunk(n, 4 * width, row_cap))
    # units of work: tiles, or with sums the fixed runs of rows (each cut into tiles)
    parts = 0 if psum is None else psum.shape[0]
    bounds = [p * n // parts for p in range(parts + 1)] if parts else list(range(0, n, m)) + [n]
    units = len(bounds) - 1
    threads = min(threads, units)
    wmat = table.mat_t[:d] if transposed else table.mat_t
    bias = table.mat_t[d].numpy() if transposed else np.zeros(Kp, np.float32)
    order, c64 = table.order.numpy(), table.c64.contiguous().numpy()
    center = table.center.contiguous().numpy()
    center32 = table.center.float()
    xn = x.numpy()
    rows_np = rows.contiguous().numpy() if rows is not None else np.empty(0, np.int64)
    xsq_np = x_sq.contiguous().numpy() if x_sq is not None else np.empty(0)
    lab_np = labels.numpy()
    keep = sq_dist is not None
    dist_np, sec_np = (sq_dist.numpy(), second.numpy()) if keep else (None, None)
    glb_np = glb.numpy() if glb is not None else np.empty((1, 1), np.float32)
    psum_np = psum.numpy() if parts else np.empty((1, 1, 1))
    pcount_np = pcount.numpy() if parts else np.empty((1, 1))
    w_np = w.numpy() if w is not None else np.empty(1)
    ratio = nblk // G if glb is not None else 1
    kernel = _numba.kernels().tile
    counter = itertools.count()
    stats = np.zeros(1, np.int64) if stats is None else stats
    lock = threading.Lock()

    def work() -> int:
        own = np.zeros(1, np.int64)  # this thread's margin count
        scores = _thread_buffer("scores", m * Kp, torch.float32)
        xa = _thread_buffer("rows", m * width, torch.float32).view(m, width) if copy_rows else None
        direct = transposed and x.dtype == torch.float32  # the row copy is contiguous: gather straight into it
        gathered = _thread_buffer("gather", m * d, x.dtype).view(m, d) if rows is not None and not direct else None
        if not transposed:
            xa[:, d] = 1
        bm, ti = np.empty(nblk, np.int32), np.empty(1, np.int32)
        tf = ti.view(np.float32)
        s1, s2, i1 = np.empty(m, np.float32), np.empty(m, np.float32), np.empty(m, np.int64)
        if not keep:  # distances not wanted: a scratch of one tile
            scratch_d, scratch_s = np.empty(m), np.empty(m)
        undecided = 0
        while (u := next(counter)) < units:
            for start in range(bounds[u], bounds[u + 1], m):
                stop = min(bounds[u + 1], start + m)
                mm = stop - start
                if copy_rows:
                    src = xa[:mm, :d]
                    if rows is not None and direct:
                        torch.index_select(x, 0, rows[start:stop], out=src)
                        if table.centered:
                            src.sub_(center32)
                    else:
                        if rows is not None:
                            torch.index_select(x, 0, rows[start:stop], out=gathered[:mm])
                        part = gathered[:mm] if rows is not None else x[start:stop]
                        if table.centered:
                            torch.sub(part, center32, out=src)
                        else:
                            src.copy_(part)
                    src = xa[:mm]
                else:
                    src = x[start:stop]
                if transposed:
                    sc = torch.mm(wmat.t(), src.t(), out=scores[:Kp * mm].view(Kp, mm))
                else:
                    sc = torch.mm(src, wmat, out=scores[:mm * Kp].view(mm, Kp))
                scn = sc.numpy()
                undecided += kernel(scn, scn.view(np.int32), transposed, bias, blk, order, K, xn, rows_np,
                                    rows is not None, start, center, xsq_np, x_sq is not None, c64, table.a, table.b,
                                    table.c_max, table.u_out, exact_distances, glb is not None, ratio, bm, ti, tf,
                                    s1, i1, s2, lab_np[start:stop],
                                    dist_np[start:stop] if keep else scratch_d[:mm],
                                    sec_np[start:stop] if keep else scratch_s[:mm],
                                    glb_np[start:stop] if glb is not None else glb_np,
                                    parts > 0, w_np, w is not None, psum_np[u if parts else 0],
                                    pcount_np[u if parts else 0], margin, own)
        with lock:
            stats[0] += own[0]
        return undecided

    if threads == 1:
        return work()
    pool = _tile_pool(threads)
    return sum(f.result() for f in [pool.submit(work) for _ in range(threads)])


def _triton_top2(xr: torch.Tensor, table: CentroidTable):
    """The fused kernel's (winner, index, runner-up) as approximate squared distances, and
    ``||x - o||``. Its scores ``||c||^2 - 2 <x, c>`` stay in float32 registers, so the table's
    bound for the same precision holds (no low-precision output rounding is even incurred)."""
    if getattr(table, "_triton_codes", None) is None:  # centred codes in the search dtype, once
        cc = table.c64 - table.center
        table._triton_codes = cc.to(table.dtype).contiguous()
        table._triton_sq = (cc * cc).sum(1).float()
    from .triton_top2 import top2_triton

    xc = xr.float() - table.center.float()
    xsq = (xc * xc).sum(1).double()
    s1, i1, s2 = top2_triton(xc.to(table.dtype).contiguous(), table._triton_codes, table._triton_sq)
    return xsq + s1.double(), i1, xsq + s2.double(), xsq.sqrt()


_CALIBRATED: dict = {}


def choose_precision(x: torch.Tensor, centroids64: torch.Tensor, precision: str = "auto",
                     max_memory: int | None = None, center: torch.Tensor | None = None,
                     sample_rows: int = 2048) -> str:
    """The search precision: the one asked for, or for ``'auto'`` the fastest of all on a
    sample of the caller's rows and centroids — the whole exact assignment timed, undecided rows
    included, so the data decide (bf16 pays only where its bound separates winners). The choice
    is remembered per (device, d, K) for the rest of the process."""
    if precision != "auto":
        if precision not in SEARCHES:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
        return precision
    n, d = x.shape
    K = centroids64.shape[0]
    if n * K * d < 2**26:  # too small to be worth measuring
        return "float32"
    if _numba.usable(x):  # the compiled reduction takes float32 scores only, and beats every
        return "float32"  # low-precision search with the torch reduction: no calibration to pay
    key = (x.device.type, d, K)
    if key in _CALIBRATED:  # measured before for this shape (the k-means loop still falls back
        return _CALIBRATED[key]  # to float32 if too many rows stay undecided on these data)
    idx = torch.linspace(0, n - 1, min(n, sample_rows), device=x.device).long()
    sample = x[idx]
    if center is None:
        center = sample.double().mean(0)
    timings = {}
    for name in SEARCHES:
        try:
            table = CentroidTable(centroids64, name, center)
            best = float("inf")
            for _ in range(2):
                t0 = time.perf_counter()
                assign_exact(sample, table, max_memory=max_memory, exact_distances=False)
                if x.device.type == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
            timings[name] = best
        except RuntimeError:  # this dtype's GEMM is not supported on this device
            continue
    _CALIBRATED[key] = min(timings, key=timings.get)
    return _CALIBRATED[key]
