"""Exact k-NN engines behind the KSG and mixed (Gao et al.) mutual-information estimators.

Two interchangeable ways to get the same neighbour statistics (max-norm everywhere):

- ``'tree'`` (low dimensions): a KD-tree k-NN query in the joint space, then neighbour counts in
  each marginal: sorted values + ``searchsorted`` for a 1-D marginal, KD-tree range counts
  (whole nodes counted at once) otherwise. Near ``O(n log n)`` for small ``d``.
- ``'brute'`` (high dimensions): query rows in chunks against all points in torch, bounded memory
  (about ``max_memory`` bytes), never an ``n x n`` matrix. ``O(n^2 d)`` but with no per-node
  overhead, which wins once the joint space has about 30 dimensions or more.

Both compute distances as ``max_c |a_c - b_c|`` in float64, an exactly rounded expression, so both
give identical counts (strict ``<`` is counted as ``<= nextafter(r, 0)``). The one exception: with
exact ties among joint distances at the k-th neighbour, KSG2's per-marginal radii depend on which
tied neighbours are taken, and the two searches may take different ones.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["TREE_MAX_DIM", "ksg", "mixed_ksg"]

# joint dimension up to which 'auto' uses the KD-tree path: the KD-tree wins at low dimension, brute
# force (torch.cdist with p=inf) near 30 joint dimensions (timings: benchmarks/mi.py, benchmarks/results/)
TREE_MAX_DIM = 24
_DEFAULT_MEMORY = 64 * 2**20


def _psi(v) -> np.ndarray:
    return torch.special.digamma(torch.as_tensor(np.asarray(v, dtype=np.float64))).numpy()


def choose_algorithm(algorithm: str, joint_dim: int) -> str:
    if algorithm == "auto":
        return "tree" if joint_dim <= TREE_MAX_DIM else "brute"
    return algorithm


# ---------------------------------------------------------------------------------------------
# tree path
# ---------------------------------------------------------------------------------------------

def _kth_neighbour(z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Max-norm distance to, and indices of, the k nearest other points: ``(n, d) -> (n,), (n, k)``.

    The query includes the point itself (distance 0, the smallest), so the (k+1)-th is the k-th
    other point even with duplicates."""
    if z.shape[1] <= 2:
        from scipy.spatial import cKDTree  # faster than sklearn's tree in 1-2 dims

        dist, idx = cKDTree(z, leafsize=16).query(z, k=k + 1, p=np.inf)
    else:
        from sklearn.neighbors import KDTree

        dist, idx = KDTree(z, leaf_size=10, metric="chebyshev").query(z, k=k + 1)
    # drop the point itself (or one of its duplicates: same distance 0, same statistics)
    return dist[:, k], idx[:, 1:]


def _count_sorted_1d(v: np.ndarray, r: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
    """``#{j : |v_j - q_i| <= r_i}`` for 1-D ``v: (n,)``, queries ``q: (m,)`` (default ``v``), ``r: (m,)``:
    ``searchsorted`` on sorted values, then boundaries moved until they agree with the exactly rounded
    ``|v_j - q_i|``. (``fl(a - b)`` is monotone in ``a``, so the points within ``r_i`` form one
    contiguous run of the sorted values.)"""
    s = np.sort(v)
    q = v if q is None else q
    n = len(s)
    lo = np.searchsorted(s, q - r, side="left")
    hi = np.searchsorted(s, q + r, side="right")

    def inside(j):
        return np.abs(s[np.clip(j, 0, n - 1)] - q) <= r

    for _ in range(n):  # rounding moves a boundary by a step or two at most; loop until stable
        grow_lo = (lo > 0) & inside(lo - 1)
        shrink_lo = (lo < hi) & ~inside(lo)
        grow_hi = (hi < n) & inside(hi)
        shrink_hi = (hi > lo) & ~inside(hi - 1)
        if not (grow_lo.any() or shrink_lo.any() or grow_hi.any() or shrink_hi.any()):
            break
        lo = lo - grow_lo + shrink_lo
        hi = hi + grow_hi - shrink_hi
    return hi - lo


def _count_within(v: np.ndarray, r: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
    """``#{j : ||v_j - q_i||_inf <= r_i}`` for data ``v: (n, d)``, queries ``q: (m, d)`` (default ``v``,
    each point then counts itself) and radii ``r: (m,)`` -> ``(m,)``."""
    if v.shape[1] == 1:
        return _count_sorted_1d(v[:, 0], r, None if q is None else q[:, 0])
    from sklearn.neighbors import KDTree

    q = v if q is None else q
    return KDTree(v, leaf_size=40, metric="chebyshev").query_radius(q, r, count_only=True).astype(np.int64)


def _ksg_tree(x: np.ndarray, y: np.ndarray, k: int, variant: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    eps, idx = _kth_neighbour(np.hstack([x, y]), k)
    _check_eps(eps, k)
    if variant == 1:
        below = np.nextafter(eps, -np.inf)  # strictly inside eps
        return eps, _count_within(x, below) - 1, _count_within(y, below) - 1
    eps_x = np.abs(x[idx] - x[:, None, :]).max(axis=2).max(axis=1)
    eps_y = np.abs(y[idx] - y[:, None, :]).max(axis=2).max(axis=1)
    return eps, _count_within(x, eps_x) - 1, _count_within(y, eps_y) - 1


# ---------------------------------------------------------------------------------------------
# brute-force (chunked torch) path
# ---------------------------------------------------------------------------------------------

def _chunk_rows(n: int, max_memory: int | None, n_buffers: int = 4) -> int:
    budget = _DEFAULT_MEMORY if max_memory is None else int(max_memory)
    return max(1, min(n, budget // (8 * max(n, 1) * n_buffers)))


def _cheb(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Max-norm distances ``a: (m, d)``, ``b: (n, d)`` -> ``(m, n)``. ``torch.cdist`` with ``p=inf``
    computes ``max_c |a_c - b_c|`` directly (no matrix-product expansion, which it uses only for
    ``p=2``), so it is exact, and much faster than a column-by-column loop."""
    return torch.cdist(a, b, p=math.inf)


def _ksg_brute(x: np.ndarray, y: np.ndarray, k: int, variant: int, max_memory: int | None):
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    n = tx.shape[0]
    m = _chunk_rows(n, max_memory)
    eps_all, nx_all, ny_all = [], [], []
    for s in range(0, n, m):
        e = min(n, s + m)
        rows = torch.arange(s, e)
        dx = _cheb(tx[s:e], tx)
        dy = _cheb(ty[s:e], ty)
        dz = torch.maximum(dx, dy)
        dz[rows - s, rows] = math.inf  # exclude self
        vals, idx = dz.topk(k, dim=1, largest=False)
        eps = vals[:, -1:]
        if variant == 1:
            nx = (dx < eps).sum(1) - 1  # self has dx = 0 < eps
            ny = (dy < eps).sum(1) - 1
        else:
            nx = (dx <= dx.gather(1, idx).amax(1, keepdim=True)).sum(1) - 1
            ny = (dy <= dy.gather(1, idx).amax(1, keepdim=True)).sum(1) - 1
        eps_all.append(eps[:, 0])
        nx_all.append(nx)
        ny_all.append(ny)
    eps = torch.cat(eps_all).numpy()
    _check_eps(eps, k)
    return eps, torch.cat(nx_all).numpy(), torch.cat(ny_all).numpy()


# ---------------------------------------------------------------------------------------------
# estimators
# ---------------------------------------------------------------------------------------------

def _check_eps(eps: np.ndarray, k: int) -> None:
    n_zero = int((eps == 0).sum())
    if n_zero:
        raise ValueError(f"{n_zero} sample(s) have their {k}-th joint neighbour at distance 0 (tied / discrete "
                         "values); KSG needs continuous data — use method='mixed' (Gao et al.) for discrete or "
                         "mixed data, or method='plugin' for fully discrete data")


def ksg(x: np.ndarray, y: np.ndarray, k: int, variant: int, algorithm: str = "auto",
        max_memory: int | None = None) -> float:
    """KSG estimator ``variant`` (1 or 2) in nats for float64 ``x: (n, dx)``, ``y: (n, dy)``."""
    n = x.shape[0]
    algorithm = choose_algorithm(algorithm, x.shape[1] + y.shape[1])
    if algorithm == "tree":
        _, nx, ny = _ksg_tree(x, y, k, variant)
    else:
        _, nx, ny = _ksg_brute(x, y, k, variant, max_memory)
    psi_n, psi_k = float(_psi(n)), float(_psi(k))
    if variant == 1:
        return psi_k + psi_n - float((_psi(nx + 1) + _psi(ny + 1)).mean())
    return psi_k - 1.0 / k + psi_n - float((_psi(nx) + _psi(ny)).mean())


def _kth_with_multiplicity(u: np.ndarray, mult: np.ndarray, k: int) -> np.ndarray:
    """Distance from each distinct row ``u_i`` (occurring ``mult_i`` times) to its k-th nearest other
    sample, counting repeated rows: ``(m, d), (m,) -> (m,)``. Rows with ``mult_i > k`` are at 0."""
    rho = np.zeros(len(u))
    todo = np.nonzero(mult <= k)[0]
    if len(todo) == 0:
        return rho
    kq = min(k + 1, len(u))  # k other distinct rows always hold >= k samples
    if u.shape[1] <= 2:
        from scipy.spatial import cKDTree

        dist, idx = cKDTree(u, leafsize=16).query(u[todo], k=kq, p=np.inf)
    else:
        from sklearn.neighbors import KDTree

        dist, idx = KDTree(u, leaf_size=10, metric="chebyshev").query(u[todo], k=kq)
    dist, idx = dist.reshape(len(todo), kq), idx.reshape(len(todo), kq)
    # samples within the j nearest distinct rows (itself included), minus itself
    others = np.cumsum(mult[idx], axis=1) - 1
    first = np.argmax(others >= k, axis=1)
    rho[todo] = dist[np.arange(len(todo)), first]
    return rho


def mixed_ksg(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Gao, Kannan, Oh & Viswanath (2017) estimator for discrete, continuous or mixed data, in nats.

    With ``rho_i`` the max-norm distance from sample ``i`` to its k-th nearest other sample in the
    joint space: if ``rho_i > 0``, ``k_i = k`` and ``n_x, n_y`` count samples strictly inside
    ``rho_i`` in each marginal; if ``rho_i = 0`` (sample ``i`` has ``>= k`` exact copies),
    ``k_i``, ``n_x``, ``n_y`` count exact ties in the joint space and in each marginal. Counts
    include sample ``i`` itself::

        I = psi(n) + mean_i [psi(k_i) - psi(n_x,i) - psi(n_y,i)]

    On continuous data (no ties) this is exactly KSG estimator 1; on discrete data it is close
    to the plug-in estimate with ``psi`` in place of ``log``. Repeated rows are handled once
    (statistics per distinct joint row, weighted by multiplicity), so heavily discrete data are fast.
    """
    z = np.hstack([x, y])
    n = len(z)
    u, mult = np.unique(z, axis=0, return_counts=True)
    rho = _kth_with_multiplicity(u, mult, k)
    tie = rho == 0
    r = np.where(tie, 0.0, np.nextafter(rho, -np.inf))
    dx = x.shape[1]
    nx = _count_within(x, r, u[:, :dx])
    ny = _count_within(y, r, u[:, dx:])
    kk = np.where(tie, mult, k).astype(np.float64)
    terms = _psi(kk) - _psi(nx) - _psi(ny)
    return float(_psi(n)) + float((terms * mult).sum() / n)
