"""Nearest-code search in bounded memory (FlashAssign-style on plain torch ops).

The distance matrix between n points and K codes is never built whole: rows are processed in
chunks sized from a memory cap, each chunk's scores come from one GEMM with the code norms folded
in (``addmm``), and are reduced at once to the top-k. Every codebook in the project is searched here.
"""

from __future__ import annotations

import math

import torch

from ..validation import check_finite, check_float, check_ndim, check_nonempty, check_positive_int, check_same_device
from . import small_d

#: default cap on the working buffers of one search, in bytes
DEFAULT_MAX_MEMORY = 256 * 2**20
METRICS = ("l2", "cosine", "dot")
_BLOCK = 64  # width of the blocks in the two-level row reductions below


def rows_per_chunk(n: int, bytes_per_row: int, max_memory: int | None) -> int:
    """How many rows fit under ``max_memory`` when each row costs ``bytes_per_row``."""
    cap = DEFAULT_MAX_MEMORY if max_memory is None else int(max_memory)
    if cap <= 0:
        raise ValueError(f"max_memory: expected a positive number of bytes, got {max_memory}")
    return max(1, min(n, cap // max(1, bytes_per_row)))


def argmin_rows(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise (min, argmin) of ``scores: (n, K)``.

    ``torch.min(dim=1)`` tracks indices element by element and runs several times slower than ``amin`` on
    CPU; a two-level reduction (``amin`` over blocks of 64, then argmin inside the winning block)
    gives the same answer at ``amin`` speed.
    """
    n, K = scores.shape
    nb = K // _BLOCK
    if nb < 2:
        return scores.min(dim=1)
    main = scores[:, : nb * _BLOCK].view(n, nb, _BLOCK) if scores.is_contiguous() else \
        scores[:, : nb * _BLOCK].reshape(n, nb, _BLOCK)
    block_val, block_idx = main.amin(dim=2).min(dim=1)
    inner = main[torch.arange(n, device=scores.device), block_idx]  # (n, block)
    val, pos = inner.min(dim=1)
    idx = block_idx * _BLOCK + pos
    if nb * _BLOCK < K:  # ragged tail
        tv, ti = scores[:, nb * _BLOCK:].min(dim=1)
        better = tv < val
        val = torch.where(better, tv, val)
        idx = torch.where(better, ti + nb * _BLOCK, idx)
    return val, idx


def topk_rows(scores: torch.Tensor, k: int, group: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise ``k`` smallest values and their indices of ``scores: (n, K)``, sorted ascending.

    ``topk`` over all K columns costs as much as the GEMM that made them on CPU. Exact shortcut:
    split the columns into ``B = K // group`` blocks (block ``b`` = columns ``b, b + B, b + 2B, ...``,
    so that the block minima are one vectorised ``amin`` over a leading axis); the k smallest
    entries of a row lie in the k blocks with the smallest minima (a block outside them has k
    blocks below its minimum, hence k smaller entries). Then a ``topk`` over the B block minima and
    one over the ``k * group`` gathered candidates. Exact ties may come back in another order
    than ``torch.topk``'s.
    """
    n, K = scores.shape
    B = K // group
    if k > 16 or B < 8 * k:  # too few blocks for the prefilter to pay
        return scores.topk(k, dim=1, largest=False, sorted=True)
    block_min = scores[:, : B * group].unflatten(1, (group, B)).amin(dim=1)  # (n, B)
    if B * group < K:  # the ragged tail is one more (narrower) block
        block_min = torch.cat([block_min, scores[:, B * group:].amin(dim=1, keepdim=True)], 1)
    best = block_min.topk(k, dim=1, largest=False, sorted=False).indices  # (n, k)
    tail = best == B
    cols = best.unsqueeze(2) + B * torch.arange(group, device=scores.device)  # (n, k, group)
    if bool(tail.any()):  # the tail block's columns are B*group, B*group + 1, ...
        tail_cols = B * group + torch.arange(group, device=scores.device)
        cols = torch.where(tail.unsqueeze(2), tail_cols, cols)
    cols = cols.flatten(1)
    inside = cols < K
    cand = scores.gather(1, cols.clamp(max=K - 1))
    if not bool(inside.all()):
        cand.masked_fill_(~inside, float("inf"))
    v, j = cand.topk(k, dim=1, largest=False, sorted=True)
    return v, cols.gather(1, j)


def top2_blocks(scores: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Winner, its index, runner-up and per-block minima of ``scores: (n, G * block)``.

    Returns ``(s1 (n,), i1 (n,), s2 (n,), block_min (n, G))`` where ``block_min[:, g]`` is the
    smallest score in block ``g`` *other than the winner* (so ``s2 = block_min.min(1)``). One
    ``amin`` pass over the scores (``torch.min(dim)`` tracks indices and is slower on CPU),
    then work on ``(n, G)`` and on the winning block only. ``scores`` is unchanged on return.
    """
    n, K = scores.shape
    G = K // block
    if G * block != K:
        raise ValueError(f"scores have {K} columns, expected a multiple of block={block}")
    rows = torch.arange(n, device=scores.device)
    if G == 1:  # narrow rows: mask the winner in place for a second amin, then put it back
        v1, pos = scores.min(dim=1)
        scores[rows, pos] = float("inf")
        s2 = scores.amin(dim=1)
        scores[rows, pos] = v1
        return v1.float(), pos, s2.float(), s2.float()[:, None]
    view = scores.view(n, G, block) if scores.is_contiguous() else scores.reshape(n, G, block)
    block_min = view.amin(dim=2)
    best_block = block_min.argmin(dim=1)
    inner = view[rows, best_block].float()  # (n, block), a copy
    v1, pos = inner.min(dim=1)
    inner[rows, pos] = float("inf")
    runner_in_block = inner.amin(dim=1)
    block_min = block_min.to(inner.dtype)
    block_min[rows, best_block] = runner_in_block
    return v1, best_block * block + pos, block_min.amin(dim=1), block_min


def top2_rows(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row-wise smallest value, its index, and the second-smallest value of ``scores: (n, K)``."""
    n, K = scores.shape
    if K == 1:
        return scores[:, 0].clone(), torch.zeros(n, dtype=torch.long, device=scores.device), \
            torch.full((n,), float("inf"), dtype=scores.dtype, device=scores.device)
    block = _BLOCK if K % _BLOCK == 0 and K >= 2 * _BLOCK else K
    s1, i1, s2, _ = top2_blocks(scores, block)
    return s1.to(scores.dtype), i1, s2.to(scores.dtype)


def _check_pair(x: torch.Tensor, codes: torch.Tensor, k: int) -> bool:
    """Validate ``nearest``'s inputs; return True when batched over codebooks."""
    check_float(x, "x")
    check_float(codes, "codes")
    check_same_device(x, codes)
    check_ndim(codes, (2, 3), "codes", "(K, d) or (C, K, d)")
    batched = codes.dim() == 3
    if batched:
        check_ndim(x, 3, "x", "(n, C, d) to match codes of shape (C, K, d)")
        if x.shape[1:] != (codes.shape[0], codes.shape[2]):
            raise ValueError(f"x has shape {tuple(x.shape)} but codes has shape {tuple(codes.shape)}; "
                             f"expected x: (n, {codes.shape[0]}, {codes.shape[2]})")
    else:
        check_ndim(x, 2, "x", "(n, d) to match codes of shape (K, d)")
        if x.shape[1] != codes.shape[1]:
            raise ValueError(f"x has {x.shape[1]} features but codes have {codes.shape[1]}; "
                             "expected the same dimension d")
    check_nonempty(codes, "codes") if not batched else None
    if codes.shape[-2] == 0:
        raise ValueError(f"codes: expected at least one code, got shape {tuple(codes.shape)}")
    check_positive_int(k, "k")
    if k > codes.shape[-2]:
        raise ValueError(f"k={k} is larger than the number of codes ({codes.shape[-2]}); expected k <= K")
    check_finite(codes, "codes")
    check_finite(x, "x")
    return batched


_CHUNK_BYTES = 32 * 2**20  # scores per chunk: the reduction re-reads them from cache
_BUFFERS: dict = {}


def _buffer(numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A reused flat scores buffer: fresh large allocations page-fault on every call. One per
    inference mode: a buffer made under ``torch.inference_mode`` is an inference tensor, which
    ``out=`` may not write outside it."""
    key = (dtype, torch.device(device), torch.is_inference_mode_enabled())
    buf = _BUFFERS.get(key)
    if buf is None or buf.numel() < numel:
        buf = torch.empty(numel, dtype=dtype, device=device)
        _BUFFERS[key] = buf
    return buf[:numel]


_PREPARED: dict = {}


def unit_rows(t: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit norm (zero rows stay zero). The eps is the dtype's smallest normal
    number: ``normalize``'s default 1e-12 leaves every row of data at scale ~1e-13 short of unit."""
    eps = torch.finfo(t.dtype).tiny if t.dtype in (torch.float32, torch.float64) else 1e-12
    return torch.nn.functional.normalize(t, dim=-1, eps=eps)


def safe_scale(amax: float, dtype: torch.dtype = torch.float32) -> float:
    """A power of two ``s`` such that data whose largest magnitude is ``amax`` can be searched as
    ``x / s`` in ``dtype`` without squares overflowing or underflowing (1.0 when no scaling is
    needed). Dividing by a power of two is exact, so labels are unchanged."""
    info = torch.finfo(dtype)
    high = 2.0 ** (math.frexp(info.max)[1] // 2 - 24)
    low = 2.0 ** (-(-math.frexp(info.tiny)[1] // 2) + 24)
    if amax == 0 or low <= amax <= high:
        return 1.0
    return 2.0 ** math.frexp(amax)[1]


def _safe_range(x: torch.Tensor, codes: torch.Tensor, metric: str):
    """``(x, codes, factors)``: both divided by one power of two ``s`` when their magnitudes would
    make the scores overflow or underflow (e.g. ``|x| ~ 1e19`` in float32, whose squares are inf);
    exact, so the order of the codes is unchanged. Distances are multiplied back by each of
    ``factors`` (``(s, s)`` for 'l2' and 'dot': ``s^2`` itself may not be representable)."""
    dtype = torch.promote_types(x.dtype, codes.dtype)
    amax = max(float(x.abs().amax()) if x.numel() else 0.0, float(codes.abs().amax()))
    s = safe_scale(amax, dtype)
    if s == 1.0:
        return x, codes, ()
    return x / s, codes / s, (() if metric == "cosine" else (s, s))


def _prepared(key: torch.Tensor, codes, alpha: float, metric: str, mask: torch.Tensor | None,
              dtype: torch.dtype) -> torch.Tensor:
    """``[alpha c, bias]^T`` per codebook, ``(C, d + 1, K)``, from ``codes()`` (a callable giving the
    ``(C, K, d)`` codes in the search dtype, normalised for cosine). Remembered for the last
    caller tensor ``key`` seen, so frozen codebooks are prepared once: the cache holds the very
    tensors (so their memory cannot be reused by others) and their in-place versions."""
    entry = _PREPARED.get("entry")
    if (entry is not None and entry["codes"] is key and entry["version"] == key._version
            and entry["metric"] == metric and entry["dtype"] == dtype and entry["mask"] is mask
            and entry["mask_version"] == (None if mask is None else mask._version)):
        return entry["table"]
    codes = codes()
    C, K = codes.shape[0], codes.shape[1]
    bias = (codes * codes).sum(-1) if metric == "l2" else codes.new_zeros(C, K)
    if mask is not None:
        bias = bias.masked_fill(~mask.expand(C, K).to(codes.device), float("inf"))
    table = torch.cat([alpha * codes, bias.unsqueeze(2)], 2).transpose(1, 2).contiguous()
    _PREPARED["entry"] = {"codes": key, "version": key._version, "metric": metric, "dtype": dtype, "mask": mask,
                          "mask_version": None if mask is None else mask._version, "table": table}
    return table


@torch.no_grad()
def nearest(x: torch.Tensor, codes: torch.Tensor, k: int = 1, metric: str = "l2", *,
            mask: torch.Tensor | None = None, max_memory: int | None = None,
            validate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest codes of every row of ``x``.

    Shapes:
        single codebook: ``x: (n, d)``, ``codes: (K, d)`` -> ``(n, k)``, ``(n, k)``
        many codebooks:  ``x: (n, C, d)``, ``codes: (C, K, d)`` -> ``(n, C, k)``, ``(n, C, k)``
        (row ``x[:, c]`` is searched in codebook ``codes[c]`` only).

    Returns ``(distances, indices)`` sorted nearest first. Distances: squared Euclidean for
    ``'l2'``, ``1 - cosine similarity`` for ``'cosine'``, minus the dot product for ``'dot'``.
    Computed in the inputs' dtype, without gradient (gather the codes by index to get one).
    ``mask`` (``(K,)`` or ``(C, K)`` bool) marks the codes that may be returned; the others are
    never chosen (a row whose codebook allows fewer than ``k`` codes gets ``inf`` distances).

    Memory: rows are processed in chunks of ``m`` so that the working scores,
    ``C * m * K * itemsize`` bytes (a buffer reused across calls), stay under ``max_memory``
    (default 256 MiB) and under 32 MiB, which keeps the reduction in cache; beyond that only
    the outputs ``n * C * k * 16`` bytes and the code norms ``C * K`` are kept.
    ``validate=False`` skips the input checks (for callers that validated their codes once).
    """
    from ..validation import check_choice

    if validate:
        check_choice(metric, "metric", METRICS)
        batched = _check_pair(x, codes, k)
    else:
        batched = codes.dim() == 3
    if x.shape[-1] <= small_d.MAX_DIM and k <= small_d.MAX_K and x.device.type == "cpu" \
            and small_d.c_kernel() is not None:  # small d: the exact direct kernel (cluster.small_d)
        out = small_d.nearest(x, codes, k, metric, mask=mask)
        if out is not None:
            return out
    x, codes, rescale = _safe_range(x, codes, metric)
    key = codes  # the caller's tensor identifies the prepared table in the cache
    if not batched:
        x, codes = x.unsqueeze(1), codes.unsqueeze(0)
    n, C, d = x.shape
    K = codes.shape[1]
    dtype = torch.promote_types(x.dtype, codes.dtype)
    x = x.to(dtype)
    if metric == "cosine":
        x = unit_rows(x)

    def search_codes() -> torch.Tensor:
        c = codes.to(dtype)
        return unit_rows(c) if metric == "cosine" else c
    # scores = [x, 1] @ [alpha c, bias]: the norms (l2) and the mask ride in the bias row, so one
    # bmm yields them (a broadcast bias would cost one more pass over the scores)
    if mask is not None:
        mask = mask.to(torch.bool)
        if mask.shape not in ((K,), (C, K)):
            raise ValueError(f"mask: expected shape ({K},) or ({C}, {K}), got {tuple(mask.shape)}")
    alpha = -2.0 if metric == "l2" else -1.0
    codes_aug = _prepared(key, search_codes, alpha, metric, mask, dtype)  # (C, d+1, K)

    out_d = torch.empty(n, C, k, dtype=dtype, device=x.device)
    out_i = torch.empty(n, C, k, dtype=torch.long, device=x.device)
    cap = _CHUNK_BYTES if max_memory is None else min(max_memory, _CHUNK_BYTES)
    m = rows_per_chunk(n, C * K * x.element_size(), cap)
    for start in range(0, n, m):
        xb = x[start:start + m].transpose(0, 1)  # (C, m, d)
        xa = torch.cat([xb, xb.new_ones(C, xb.shape[1], 1)], 2)
        scores = _buffer(C * xb.shape[1] * K, dtype, x.device).view(C, xb.shape[1], K)
        torch.bmm(xa, codes_aug, out=scores)
        if k == 1:
            v, i = argmin_rows(scores.view(-1, K))
            v, i = v.view(C, -1, 1), i.view(C, -1, 1)
        else:
            v, i = topk_rows(scores.view(-1, K), k)
            v, i = v.view(C, -1, k), i.view(C, -1, k)
        if metric == "l2":
            v = (v + (xb * xb).sum(-1, keepdim=True)).clamp_min_(0)
        elif metric == "cosine":
            v = v + 1
        out_d[start:start + m] = v.transpose(0, 1)
        out_i[start:start + m] = i.transpose(0, 1)
    for f in rescale:
        out_d.mul_(f)
    if not batched:
        out_d, out_i = out_d.squeeze(1), out_i.squeeze(1)
    return out_d, out_i
