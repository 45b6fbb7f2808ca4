"""Exact nearest-centroid assignment with a fast low-precision candidate search.

Scores ``s_j = ||c_j||^2 - 2 <x, c_j>`` (squared distance minus ``||x||^2``) are computed by one
GEMM per chunk of rows, in float32 or, where this machine runs it faster, in bfloat16/float16.
Low precision is used only to *find* the winner: every score carries a proven error bound

    |s_hat - s| <= E(x) = coef(dtype, d) * (max_j ||c_j||^2 + 2 ||x|| max_j ||c_j||)

(input rounding ``(2u + u^2)``, float32 accumulation ``(d + 2) u32``, output rounding ``u``,
times a 1.25 safety factor). A row whose runner-up is further than ``2 E(x)`` above its winner is
decided; every other row is re-scored exactly in float64. The labels therefore equal a float64
Lloyd's labels except at exact ties, whatever precision did the bulk of the work.

Which precision is used is decided by a quick measured calibration, never by assumption
(other CPUs have no fast bf16), and the k-means loop falls back to float32 when too many rows
come out undecided.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .search import rows_per_chunk, top2_rows

_U32 = 2.0**-24
_UNIT = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
PRECISIONS = ("auto", "float32", "bfloat16", "float16")


def error_coef(dtype: torch.dtype, d: int) -> float:
    """Relative error bound of one score computed with inputs in ``dtype`` and fp32 accumulation."""
    u = _UNIT[dtype]
    return 1.25 * ((2 * u + u * u) + (d + 4) * _U32 + u + u * u)


@dataclass
class Assignment:
    """Result of :func:`assign_exact` (all tensors length ``n``)."""

    labels: torch.Tensor  # int64, nearest centroid (lowest index at exact ties)
    sq_dist: torch.Tensor  # float64, exact squared distance to it (an upper bound if not exact_distances)
    second_lower: torch.Tensor  # float64, a lower bound on the squared distance to the runner-up
    n_undecided: int  # rows that needed the float64 re-score


class CentroidTable:
    """Centroids prepared once per Lloyd iteration for the chosen search precision.

    The norms are folded into the GEMM as extra columns so that one ``mm`` into a reused buffer
    yields the scores: ``[x - o, 1] @ [-2 (c - o), ||c - o||^2]^T``. Low precision splits the norm
    into a hi and a lo part, so that representing it costs only ``u^2`` of accuracy.
    """

    def __init__(self, centroids64: torch.Tensor, dtype: torch.dtype, center: torch.Tensor):
        self.c64 = centroids64
        self.dtype = dtype
        # rows and centroids are shifted by one point (smaller norms, smaller bound); it must be
        # exactly representable in float32 so that both sides shift by the same vector
        self.center = center.float().double()
        cc = centroids64 - self.center
        sq = (cc * cc).sum(1)
        self.sq64 = (centroids64 * centroids64).sum(1)  # for the exact path (unshifted)
        self.c_max = float(sq.max().sqrt())
        self.sq_max = float(sq.max())
        if dtype == torch.float32:
            cols = [sq[:, None]]
        else:
            hi = sq.to(dtype)
            cols = [hi[:, None], (sq - hi.double()).to(dtype)[:, None]]
        self.mat_t = torch.cat([(-2 * cc).to(dtype)] + [col.to(dtype) for col in cols], 1).t().contiguous()
        self.extra = len(cols)
        self.coef = error_coef(dtype, centroids64.shape[1])

    def scores(self, x_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_rows: (m, d)`` -> scores ``(m, K)`` in the search dtype (a view of a reused buffer,
        valid until the next call), and ``||x - center||`` ``(m,)``."""
        m, d = x_rows.shape
        xa = _workspace("rows", m * (d + self.extra), self.dtype, x_rows.device).view(m, d + self.extra)
        if self.dtype == torch.float32:
            torch.sub(x_rows, self.center.to(x_rows.dtype), out=xa[:, :d])
            norms = xa[:, :d].norm(dim=1)
        else:
            xc = x_rows.float() - self.center.float()
            norms = xc.norm(dim=1)
            xa[:, :d] = xc
        xa[:, d:] = 1
        out = _workspace("scores", m * self.mat_t.shape[1], self.dtype, x_rows.device)
        out = out.view(m, self.mat_t.shape[1])
        torch.mm(xa, self.mat_t, out=out)
        return out, norms


_WORKSPACES: dict = {}


def _workspace(name: str, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A flat buffer reused across calls: fresh large allocations cost page faults that take
    longer than the GEMM writing into them (measured ~2x on CPU)."""
    key = (name, dtype, torch.device(device))
    buf = _WORKSPACES.get(key)
    if buf is None or buf.numel() < numel:
        buf = torch.empty(numel, dtype=dtype, device=device)
        _WORKSPACES[key] = buf
    return buf[:numel]


def release_workspaces() -> None:
    """Free the reused search buffers (they are at most ``max_memory`` each)."""
    _WORKSPACES.clear()


def f64_rows(d: int) -> int:
    """Rows per float64 temporary: ~16 MiB, below glibc's mmap threshold, so that the buffer is
    recycled instead of page-faulted in afresh each time (that cost more than the arithmetic)."""
    return max(1, 2**21 // max(1, d))


def exact_sq_dist(x: torch.Tensor, c64: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``||x_i - c_{labels_i}||^2`` in float64 by direct differences: ``(n, d) -> (n,)``."""
    out = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    step = f64_rows(x.shape[1])
    for s in range(0, x.shape[0], step):
        diff = x[s:s + step].double() - c64[labels[s:s + step]]
        out[s:s + step] = (diff * diff).sum(1)
    return out


def _exact_rows(x_rows64: torch.Tensor, table: CentroidTable):
    """Float64 scores for rows the fast search could not decide: (labels, best, second-best score)."""
    s = torch.addmm(table.sq64, x_rows64, table.c64.t(), beta=1.0, alpha=-2.0)
    v, i = s.topk(min(2, s.shape[1]), dim=1, largest=False, sorted=True)
    second = v[:, 1] if v.shape[1] > 1 else torch.full_like(v[:, 0], float("inf"))
    # lowest index among exact ties, as np.argmin does
    best = (s == v[:, :1]).to(torch.int8).argmax(dim=1)
    return best, v[:, 0], second


def assign_exact(x: torch.Tensor, centroids64, *, dtype: torch.dtype = torch.float32,
                 center: torch.Tensor | None = None, max_memory: int | None = None,
                 rows: torch.Tensor | None = None, exact_distances: bool = True) -> Assignment:
    """Nearest centroid of every row of ``x: (n, d)`` (or of ``x[rows]``), decided exactly.

    ``centroids64: (K, d)`` float64, or a :class:`CentroidTable` prepared from them.

    Peak extra memory, with ``s`` the search dtype's itemsize and ``m`` rows per chunk::

        m * K * s * (1 + 1/64)          scores of one chunk (a reused buffer) and its block minima
      + m * d * (12 + s)                the chunk's shifted rows and their float64 copy
      + K * (d + 2) * (8 + s)           the prepared centroids
      + n * 24                          the outputs (labels, distance, runner-up bound)

    ``m`` is the largest count for which the first two terms stay under ``max_memory`` (default
    256 MiB); undecided rows are re-scored in float64 in sub-chunks under the same budget. The
    ``n * K`` matrix never exists.

    With ``exact_distances=False`` the distances are upper bounds from the search (enough for
    pruning bounds) and the float64 pass over the rows is skipped.
    """
    if isinstance(centroids64, CentroidTable):
        table = centroids64
    else:
        if center is None:
            center = torch.zeros(centroids64.shape[1], dtype=torch.float64, device=centroids64.device)
        table = CentroidTable(centroids64, dtype, center)
    K, d = table.c64.shape
    index = rows
    n = len(index) if index is not None else x.shape[0]
    labels = torch.empty(n, dtype=torch.long, device=x.device)
    sq_dist = torch.empty(n, dtype=torch.float64, device=x.device)
    second = torch.empty(n, dtype=torch.float64, device=x.device)
    n_undecided = 0
    itemsize = 4 if table.dtype == torch.float32 else 2
    m = rows_per_chunk(n, K * itemsize + (K // 64) * itemsize + d * (12 + itemsize), max_memory)
    m_exact = max(1, (m * K * itemsize) // (K * 8 + d * 8))  # undecided rows per float64 pass
    for start in range(0, n, m):
        stop = min(n, start + m)
        xr = x[index[start:stop]] if index is not None else x[start:stop]
        s, norms = table.scores(xr)
        if K == 1:
            s1 = s[:, 0].float()
            i1 = torch.zeros(len(s1), dtype=torch.long, device=x.device)
            s2 = torch.full_like(s1, float("inf"))
        else:
            s1, i1, s2 = top2_rows(s)
            s1, s2 = s1.float(), s2.float()
        norms = norms.double()
        bound = table.coef * (table.sq_max + 2 * norms * table.c_max) + 1e-30
        undecided = (s2.double() - s1.double()) <= 2 * bound
        # a lower bound on the runner-up's squared distance (for pruning in later iterations)
        sec = (norms * norms + s2.double() - bound).clamp_min(0) * (1 - 1e-9)
        lab = i1.clone()
        d1 = (norms * norms + s1.double() + bound) * (1 + 1e-9)  # an upper bound on the winner's
        all_und = undecided.nonzero().squeeze(1)
        n_undecided += len(all_und)
        for j in range(0, len(all_und), m_exact):
            und = all_und[j:j + m_exact]
            x64 = xr[und].double()
            best, first_exact, sec_exact = _exact_rows(x64, table)
            lab[und] = best
            x_sq = (x64 * x64).sum(1)
            sec[und] = (x_sq + sec_exact).clamp_min(0) * (1 - 1e-9)
            d1[und] = (x_sq + first_exact).clamp_min(0) * (1 + 1e-9)
        labels[start:stop] = lab
        sq_dist[start:stop] = exact_sq_dist(xr, table.c64, lab) if exact_distances else d1
        second[start:stop] = sec
    return Assignment(labels, sq_dist, second, n_undecided)


_CALIBRATION: dict = {}


def _fast_dtypes(device: torch.device) -> list[torch.dtype]:
    return [torch.float32, torch.bfloat16, torch.float16]


def choose_precision(x: torch.Tensor, centroids64: torch.Tensor, precision: str = "auto",
                     max_memory: int | None = None) -> torch.dtype:
    """The search dtype: the one asked for, or for ``'auto'`` the fastest in a quick measurement
    of one chunk of real rows (score GEMM + top-2), cached per (device, d, K)."""
    if precision != "auto":
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[precision]
    K, d = centroids64.shape
    key = (x.device.type, d, K)
    if key in _CALIBRATION:
        return _CALIBRATION[key]
    m = min(x.shape[0], rows_per_chunk(x.shape[0], K * 8 + d * 16, max_memory), 2048)
    sample = x[:m]
    center = torch.zeros(d, dtype=torch.float64, device=x.device)
    timings = {}
    for dt in _fast_dtypes(x.device):
        try:
            table = CentroidTable(centroids64, dt, center)
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                top2_rows(table.scores(sample)[0])
                if x.device.type == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
            timings[dt] = best
        except RuntimeError:  # dtype not supported on this device
            continue
    # low precision must be clearly faster to pay for its undecided rows
    choice = torch.float32
    for dt, t in timings.items():
        if dt != torch.float32 and t < 0.75 * timings[torch.float32] and t < timings.get(choice, 1e9):
            choice = dt
    _CALIBRATION[key] = choice
    return choice
