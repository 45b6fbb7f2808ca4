"""Compiled CPU kernels (numba) for the exact assignment and the Lloyd update.

The GEMM stays in BLAS (``torch.mm`` on a tile of rows); what follows it is one compiled pass
per tile while the tile's scores are still in cache: per row the best and second-best code and
the minimum of every block of codes (Yinyang's group bounds), the code norms added on the fly, so
no score matrix is ever re-read. The Lloyd update sums float32 rows into float64 centres without
a float64 copy of the data: each thread owns a range of clusters and adds that range's rows in
row order, so the sums equal a sequential float64 sum whatever the thread count.

numba is optional (``pip install bottlenecks[fast]``); without it ``HAS_NUMBA`` is False and the
engine runs its pure-torch path, which gives the same labels (both are tested against each other).
Kernels compile on first use and are cached on disk (``cache=True``).
"""

from __future__ import annotations

import importlib.util
import math
import os
from types import SimpleNamespace

import numpy as np
import torch


def _numba_installed() -> bool:
    if os.environ.get("BOTTLENECKS_NO_NUMBA"):
        return False
    return importlib.util.find_spec("numba") is not None


# numba is imported (and the kernels compiled) on first use, not with the package: importing it
# loads SciPy and takes about a second, which `import bottlenecks.kv` should not pay
HAS_NUMBA = _numba_installed()
_KERNELS: dict = {}

#: set to False to force the pure-torch path (tests compare both)
ENABLED = HAS_NUMBA


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the compiled kernels can take these tensors: CPU, contiguous, not float16 /
    bfloat16 (numba has no half types: those take the torch path). The first call that says yes
    imports numba; if that import fails the torch path is used from then on."""
    return (ENABLED and all(t.device.type == "cpu" and t.is_contiguous()
                            and t.dtype not in (torch.float16, torch.bfloat16) for t in tensors)
            and _kernels() is not None)


def load(warm: bool = True) -> bool:
    """Import numba and build the kernels now rather than in the first fit (a benchmark loads its
    libraries before it measures); returns whether the compiled kernels are in use. ``warm``: also
    run each kernel once on a few float32 rows, so that their machine code is compiled or loaded
    from numba's cache now (about a second and ~75 MiB the first time in a process)."""
    if not (ENABLED and _kernels() is not None):
        return False
    if warm:
        from .lloyd import kmeans

        x = torch.linspace(-1, 1, 400 * 40).reshape(400, 40).float()
        for k in (8, 150):  # few codes (transposed tiles) and several groups (block minima, group bounds)
            for prune in (False, "always"):
                kmeans(x, k, init=x[:k].double(), max_iter=2, tol=0, prune=prune)
    return True


def _kernels() -> SimpleNamespace | None:
    """The compiled kernels, built on the first call (None when numba cannot be imported)."""
    if "k" not in _KERNELS:
        try:
            import numba as nb
        except ImportError:  # pragma: no cover - a broken install: the torch path gives the same labels
            _KERNELS["k"] = None
        else:
            # numba's own thread pool: its OpenMP layer would share (and fight) torch's OpenMP
            # runtime, far slower per call; NUMBA_THREADING_LAYER still wins when set
            if "NUMBA_THREADING_LAYER" not in os.environ:
                nb.config.THREADING_LAYER = "workqueue"
            _KERNELS["k"] = _build(nb)
    return _KERNELS["k"]


def kernels() -> SimpleNamespace:
    """The compiled kernels (call :func:`usable` first)."""
    return _kernels()


def _threads() -> int:
    """numba's pool follows torch's thread count (the benchmark's and the user's setting)."""
    nb = _kernels().nb
    n = max(1, min(torch.get_num_threads(), nb.config.NUMBA_NUM_THREADS))
    if nb.get_num_threads() != n:
        nb.set_num_threads(n)
    return n


def _build(nb) -> SimpleNamespace:  # noqa: C901 - one kernel per nested function
    """Compile-on-call kernels (``cache=True``: compiled once per machine, then loaded from disk)."""
    _opts = dict(cache=True, nogil=True, fastmath={"nsz", "arcp", "contract", "afn", "reassoc"})

    @nb.njit(parallel=True, **_opts)
    def _cluster_sums(x, labels, w, use_w, k, parts, sums, counts):  # pragma: no cover - compiled
        n, d = x.shape
        for t in nb.prange(parts):
            lo = t * k // parts
            hi = (t + 1) * k // parts
            for i in range(n):
                lab = labels[i]
                if lab >= lo and lab < hi:
                    wi = w[i] if use_w else 1.0
                    srow = sums[lab]
                    xrow = x[i]
                    for j in range(d):
                        srow[j] += wi * xrow[j]
                    counts[lab] += wi

    @nb.njit(parallel=True, **_opts)
    def _sq_dist(x, c64, labels, rows, use_rows, out):  # pragma: no cover - compiled
        m = out.shape[0]
        d = x.shape[1]
        for r in nb.prange(m):
            i = np.int64(r)
            if use_rows:
                i = np.int64(rows[r])
            c = c64[labels[r]]
            xi = x[i]
            acc = 0.0
            for j in range(d):
                diff = np.float64(xi[j]) - c[j]
                acc += diff * diff
            out[r] = acc

    @nb.njit(parallel=True, **_opts)
    def _sq_norms(x, center, out):  # pragma: no cover - compiled
        n, d = x.shape
        for i in nb.prange(n):
            xi = x[i]
            acc = 0.0
            for j in range(d):
                diff = np.float64(xi[j]) - center[j]
                acc += diff * diff
            out[i] = acc

    @nb.njit(parallel=True, cache=True, nogil=True)
    def _abs_max(flat, parts, out):  # pragma: no cover - compiled
        n = flat.shape[0]
        step = (n + parts - 1) // parts
        for t in nb.prange(parts):
            v = 0.0
            nan = False
            for i in range(t * step, min(n, (t + 1) * step)):
                a = abs(np.float64(flat[i]))
                nan |= np.isnan(a)
                v = max(v, a)
            out[t] = np.nan if nan else v

    @nb.njit(parallel=True, **_opts)
    def _col_sums(x, parts, out, out_sq):  # pragma: no cover - compiled
        n, d = x.shape
        step = (n + parts - 1) // parts
        for t in nb.prange(parts):
            o = out[t]
            o2 = out_sq[t]
            for i in range(t * step, min(n, (t + 1) * step)):
                xi = x[i]
                for j in range(d):
                    v = np.float64(xi[j])
                    o[j] += v
                    o2[j] += v * v


    # ---- one tile, start to finish, on one thread (exact.assign_exact runs one such call per tile
    # on each of its worker threads: no fork/join of a second pool between the GEMM and the reduction)
    # float32 scores compared as int32 keys: key(bits) = bits ^ ((bits >> 31) & 0x7fffffff) orders
    # like the floats (NaN never occurs), and integer minima vectorise where float ones do not
    @nb.njit(**_opts)
    def _row_top2(krow, block, bm):  # pragma: no cover - compiled
        # keys of the best, its column and the runner-up; bm: each block's minimum, the winner excluded
        G = bm.shape[0]
        top = np.int32(0x7FFFFFFF)
        gbest = 0
        vbest = top
        for g in range(G):
            seg = krow[g * block:(g + 1) * block]
            v = top
            for j in range(block):
                b = seg[j]
                k = b ^ ((b >> 31) & 0x7FFFFFFF)
                v = k if k < v else v
            bm[g] = v
            if v < vbest:
                vbest = v
                gbest = g
        seg = krow[gbest * block:(gbest + 1) * block]
        p = 0
        for j in range(block):  # the first position of the block's minimum (lowest index at ties)
            b = seg[j]
            if (b ^ ((b >> 31) & 0x7FFFFFFF)) == vbest:
                p = j
                break
        v2 = top
        for j in range(p):
            b = seg[j]
            k = b ^ ((b >> 31) & 0x7FFFFFFF)
            v2 = k if k < v2 else v2
        rest = seg[p + 1:]
        for j in range(rest.shape[0]):
            b = rest[j]
            k = b ^ ((b >> 31) & 0x7FFFFFFF)
            v2 = k if k < v2 else v2
        bm[gbest] = v2
        sec = top
        for g in range(G):
            sec = bm[g] if bm[g] < sec else sec
        return vbest, gbest * block + p, sec

    @nb.njit(cache=True, nogil=True)
    def _key_value(key, ti, tf):  # pragma: no cover - compiled
        ti[0] = key ^ ((key >> 31) & 0x7FFFFFFF)
        return tf[0]

    @nb.njit(cache=True, nogil=True)
    def _float_key(v, ti, tf):  # pragma: no cover - compiled
        tf[0] = v
        b = ti[0]
        return b ^ ((b >> 31) & 0x7FFFFFFF)

    @nb.njit(cache=True, nogil=True)
    def _row_bounds(v1f, v2f, q, a, b, c_max, u_out):  # pragma: no cover - compiled (no fastmath: bounds)
        norm = np.sqrt(q)
        e_in = a * norm * c_max + b * (norm + c_max) ** 2 + 1e-30
        v1 = np.float64(v1f) + q
        v2 = np.float64(v2f) + q
        u = max(v1 + u_out * abs(v1) + e_in, 0.0)
        lo = max(v2 - u_out * abs(v2) - e_in, 0.0)
        t = np.nextafter(np.float32((u + e_in) / (1 - u_out)), np.float32(np.inf))
        thresh = np.nextafter(np.float32(np.float64(t) - q), np.float32(np.inf))
        return u, lo, e_in, thresh

    @nb.njit(cache=True, nogil=True)
    def _row_glb(bm, ti, tf, q, e_in, u_out, ratio, out):  # pragma: no cover - compiled (no fastmath: bounds)
        shrink = np.float32(1 - 1e-6)
        for g in range(out.shape[0]):
            low = np.float32(np.inf)
            for h in range(g * ratio, (g + 1) * ratio):
                v = np.float64(_key_value(bm[h], ti, tf)) + q
                v = max(v - u_out * abs(v) - e_in, 0.0)
                f = np.float32(np.sqrt(v)) * shrink
                low = f if f < low else low
            out[g] = low

    @nb.njit(**_opts)
    def _row_rescore(srow, bias, thresh, order, K, xi, c64):  # pragma: no cover - compiled
        # float64 distances to the candidates (fast score <= thresh): (label, best, second)
        d = xi.shape[0]
        b1 = np.inf
        b2 = np.inf
        l1 = K
        for j in range(bias.shape[0]):
            if srow[j] + bias[j] <= thresh:
                code = order[j]
                if code < K:
                    c = c64[code]
                    acc = 0.0
                    for t in range(d):
                        diff = np.float64(xi[t]) - c[t]
                        acc += diff * diff
                    if acc < b1 or (acc == b1 and code < l1):
                        b2 = b1
                        b1 = acc
                        l1 = code
                    elif acc < b2:
                        b2 = acc
        return l1, b1, b2

    @nb.njit(**_opts)
    def _row_sq(xi, c):  # pragma: no cover - compiled
        acc = 0.0
        for t in range(xi.shape[0]):
            diff = np.float64(xi[t]) - c[t]
            acc += diff * diff
        return acc

    @nb.njit(**_opts)
    def _row_add(srow, xi, wi):  # pragma: no cover - compiled
        for t in range(xi.shape[0]):
            srow[t] += wi * xi[t]

    @nb.njit(cache=True, nogil=True)
    def _tile(scores, keys, transposed, bias, block, order, K, x, rows, use_rows, base, center, x_sq, have_xsq,
              c64, a, b, c_max, u_out, exact, want_glb, ratio, bm, ti, tf, s1, i1, s2,
              lab, dist, sec, glb, want_sums, w, use_w, psum, pcount, margin, stats):  # pragma: no cover - compiled
        # rows base .. base + m of the request (x[rows[base + r]] or x[base + r]). Row-major scores
        # (m, Kp) hold the code norms already (bias is zero) and ``keys`` is their int32 view; transposed
        # scores (Kp, m) get ``bias`` added here. Writes lab/dist/sec[r] (and glb[r]); with ``want_sums``
        # adds each (weighted) row into ``psum[label]`` / ``pcount[label]`` in row order, while the row
        # is in cache (the Lloyd update without a second pass over x); ``margin >= 0``: counts in
        # stats[0] the rows whose runner-up is provably more than ``margin`` farther than their winner
        # (distances, not squared); returns the undecided count.
        m = lab.shape[0]
        if transposed:  # few codes: rows vectorised, codes outer
            for r in range(m):
                s1[r] = np.inf
                s2[r] = np.inf
                i1[r] = 0
            for j in range(bias.shape[0]):
                bj = bias[j]
                col = scores[j]
                for r in range(m):
                    t = col[r] + bj
                    if t < s1[r]:
                        s2[r] = s1[r]
                        s1[r] = t
                        i1[r] = j
                    elif t < s2[r]:
                        s2[r] = t
        undecided = 0
        for r in range(m):
            gi = rows[base + r] if use_rows else base + r
            xi = x[gi]
            q = x_sq[gi] if have_xsq else _row_sq(xi, center)
            if transposed:
                v1f = s1[r]
                p = i1[r]
                v2f = s2[r]
                bm[0] = _float_key(v2f, ti, tf)
            else:
                k1, p, k2 = _row_top2(keys[r], block, bm)
                v1f = _key_value(k1, ti, tf)
                v2f = _key_value(k2, ti, tf)
            code = order[p]
            u, lo, e_in, thresh = _row_bounds(v1f, v2f, q, a, b, c_max, u_out)
            if code == K:  # a padding code "won" (scores out of range): re-score
                u = np.inf
            if lo <= u:
                undecided += 1
                srow = scores[:, r] if transposed else scores[r]
                l1, b1, b2 = _row_rescore(srow, bias, thresh, order, K, xi, c64)
                lab[r] = l1
                d1 = b1 * (1 + 1e-9)
                sec[r] = min(b2, u) * (1 - 1e-9)  # non-candidates are at least u away
                if want_glb:  # the fast winner may not be the winner: no group bound holds
                    glb[r, :] = 0
            else:
                lab[r] = code
                d1 = u
                sec[r] = lo
                if margin >= 0 and np.sqrt(lo) - np.sqrt(u) > margin:
                    stats[0] += 1
                if want_glb:
                    _row_glb(bm, ti, tf, q, e_in, u_out, ratio, glb[r])
            dist[r] = _row_sq(xi, c64[lab[r]]) if exact else d1
            if want_sums:
                wi = w[gi] if use_w else 1.0
                _row_add(psum[lab[r]], xi, wi)
                pcount[lab[r]] += wi
        return undecided

    return SimpleNamespace(
        nb=nb, tile=_tile, cluster_sums=_cluster_sums, sq_dist=_sq_dist, sq_norms=_sq_norms, abs_max=_abs_max,
        col_sums=_col_sums)


def cluster_sums(x: torch.Tensor, labels: torch.Tensor, w: torch.Tensor | None, k: int):
    """Per-cluster float64 sums of the (weighted) rows of ``x: (n, d)`` and per-cluster weights,
    without a float64 copy of ``x``: ``-> (k, d), (k,)``."""
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64)
    counts = torch.zeros(k, dtype=torch.float64)
    parts = min(k, _threads())
    ww = w if w is not None else torch.empty(1, dtype=torch.float64)
    _kernels().cluster_sums(x.numpy(), labels.numpy(), ww.numpy(), w is not None, k, parts, sums.numpy(),
                            counts.numpy())
    return sums, counts


def sq_dist(x: torch.Tensor, c64: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None = None):
    """``||x_i - c_{labels_i}||^2`` in float64 for every row or for ``x[rows]``: ``-> (len,)``."""
    m = len(labels)
    out = torch.empty(m, dtype=torch.float64)
    r = rows if rows is not None else torch.empty(1, dtype=torch.int64)
    _threads()
    _kernels().sq_dist(x.numpy(), c64.contiguous().numpy(), labels.contiguous().numpy(), r.contiguous().numpy(),
             rows is not None, out.numpy())
    return out


def sq_norms(x: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """``||x_i - o||^2`` in float64: ``(n, d) -> (n,)``."""
    out = torch.empty(x.shape[0], dtype=torch.float64)
    _threads()
    _kernels().sq_norms(x.numpy(), center.double().contiguous().numpy(), out.numpy())
    return out


def abs_max(x: torch.Tensor) -> float:
    """``max |x|`` in one pass; NaN if ``x`` holds a NaN, inf if it holds an infinity."""
    out = np.zeros(16)
    _threads()
    _kernels().abs_max(x.reshape(-1).numpy(), 16, out)
    return float(np.nan if np.isnan(out).any() else out.max())


def column_sums(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 column sums of ``x`` and of its squares, in one pass: ``(n, d) -> (d,), (d,)``; a fixed
    split of the rows into parts, so the result does not depend on the thread count."""
    parts = max(1, min(8, math.ceil(x.shape[0] / 4096)))
    out = torch.zeros(parts, x.shape[1], dtype=torch.float64)
    out_sq = torch.zeros(parts, x.shape[1], dtype=torch.float64)
    _threads()
    _kernels().col_sums(x.numpy(), parts, out.numpy(), out_sq.numpy())
    return out.sum(0), out_sq.sum(0)
