"""FlashAssign in Triton: nearest-code top-2 search without the n x K score matrix.

For every row ``x[i]`` the kernel finds the smallest and second-smallest of

    score[i, j] = codes_sqnorm[j] - 2 * <x[i], codes[j]>

(the squared distance minus the constant ``|x[i]|^2``) and the index of the smallest. Each
program owns ``BLOCK_N`` rows, streams the codes through in ``BLOCK_K`` tiles and keeps a running
(min, argmin, second-min) in registers, so the only memory written is the three length-n outputs.

Runs on CUDA tensors; on CPU tensors it runs under Triton's interpreter when the environment
variable ``TRITON_INTERPRET=1`` was set before triton was imported (that is how it is tested
without a GPU).
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # the CUDA fast path is optional; callers fall back to torch
    triton = None
    tl = None
    HAS_TRITON = False

__all__ = ["HAS_TRITON", "top2_triton"]

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
#: widest feature tile held at once; wider rows are summed over several tiles of this width
MAX_BLOCK_D = 128


def _top2_kernel(
    x_ptr, c_ptr, cn_ptr, s1_ptr, i1_ptr, s2_ptr,
    n, K, d,
    stride_xn, stride_xd, stride_ck, stride_cd,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    SINGLE_D: tl.constexpr, DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < n
    # int64 offsets: n * d can pass 2**31 for big inputs
    x_rows = x_ptr + rows.to(tl.int64)[:, None] * stride_xn
    dims = tl.arange(0, BLOCK_D)

    if SINGLE_D:
        # The whole row fits one tile: load it once and keep it for every code tile.
        # Padding columns load as 0 so they add nothing to the dot products.
        x = tl.load(x_rows + dims[None, :] * stride_xd,
                    mask=row_ok[:, None] & (dims[None, :] < d), other=0.0)
        if UPCAST:
            x = x.to(tl.float32)

    s1 = tl.full((BLOCK_N,), float("inf"), tl.float32)
    i1 = tl.zeros((BLOCK_N,), tl.int32)
    s2 = tl.full((BLOCK_N,), float("inf"), tl.float32)

    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        col_ok = cols < K
        c_rows = c_ptr + cols.to(tl.int64)[:, None] * stride_ck

        if SINGLE_D:
            c = tl.load(c_rows + dims[None, :] * stride_cd,
                        mask=col_ok[:, None] & (dims[None, :] < d), other=0.0)
            if UPCAST:
                c = c.to(tl.float32)
            dot = tl.dot(x, tl.trans(c), input_precision=DOT_PRECISION, out_dtype=tl.float32)
        else:
            dot = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
            for d0 in range(0, d, BLOCK_D):
                dd = d0 + dims
                xd = tl.load(x_rows + dd[None, :] * stride_xd,
                             mask=row_ok[:, None] & (dd[None, :] < d), other=0.0)
                c = tl.load(c_rows + dd[None, :] * stride_cd,
                            mask=col_ok[:, None] & (dd[None, :] < d), other=0.0)
                if UPCAST:
                    xd = xd.to(tl.float32)
                    c = c.to(tl.float32)
                dot = tl.dot(xd, tl.trans(c), dot, input_precision=DOT_PRECISION,
                             out_dtype=tl.float32)

        cn = tl.load(cn_ptr + cols, mask=col_ok, other=0.0)
        scores = cn[None, :] - 2.0 * dot
        # Codes past K must never win nor count as runner-up.
        scores = tl.where(col_ok[None, :], scores, float("inf"))

        # Tile min, its lowest index, and the tile's runner-up (the min with that one slot
        # removed; equals the min again when the min is tied inside the tile).
        m_t = tl.min(scores, axis=1)
        a_t = tl.min(tl.where(scores == m_t[:, None], cols[None, :], K), axis=1)
        t2 = tl.min(tl.where(cols[None, :] == a_t[:, None], float("inf"), scores), axis=1)

        # Merge. Strict < keeps the earlier (lower-index) code on ties across tiles. With a new
        # winner, second place is the better of the old s1 (already <= old s2) and the tile's
        # runner-up; otherwise the tile min is just another candidate for second place.
        better = m_t < s1
        s2 = tl.where(better, tl.minimum(s1, t2), tl.minimum(s2, m_t))
        i1 = tl.where(better, a_t, i1)
        s1 = tl.where(better, m_t, s1)

    tl.store(s1_ptr + rows, s1, mask=row_ok)
    tl.store(i1_ptr + rows, i1.to(tl.int64), mask=row_ok)
    tl.store(s2_ptr + rows, s2, mask=row_ok)


# triton.jit builds either the compiler's kernel or the interpreter's from TRITON_INTERPRET as it
# runs, and triton's own library (tl.min, tl.zeros, ...) was built the same way when triton was
# first imported. Both must agree, so the flag has to be set before triton is imported.
if HAS_TRITON:
    from triton.runtime.interpreter import InterpretedFunction

    _kernel = triton.jit(_top2_kernel)
    _INTERPRETED = isinstance(_kernel, InterpretedFunction)
    _LIBRARY_INTERPRETED = isinstance(tl.standard.zeros, InterpretedFunction)


def _next_pow2(v: int) -> int:
    return 1 << max(0, int(v) - 1).bit_length()


def _launch_config(d: int, dtype: torch.dtype) -> tuple[int, int, int, int]:
    """(BLOCK_N, BLOCK_K, BLOCK_D, num_warps) for rows of width ``d``.

    tl.dot needs every tile side >= 16. 16-bit inputs go through tensor cores and afford a taller
    row tile; fp32 (IEEE, FMA units) keeps 64 x 64 so the accumulator stays in registers.
    """
    block_d = min(_next_pow2(max(d, 16)), MAX_BLOCK_D)
    if dtype == torch.float32:
        return 64, 64, block_d, 4
    return 128, 64, block_d, 8


def _validate(x: torch.Tensor, codes: torch.Tensor, codes_sqnorm: torch.Tensor) -> None:
    if x.dim() != 2 or codes.dim() != 2 or codes_sqnorm.dim() != 1:
        raise ValueError(
            "top2_triton: expected x (n, d), codes (K, d), codes_sqnorm (K,); got "
            f"x {tuple(x.shape)}, codes {tuple(codes.shape)}, "
            f"codes_sqnorm {tuple(codes_sqnorm.shape)}")
    if x.shape[1] != codes.shape[1]:
        raise ValueError(
            f"top2_triton: x has d={x.shape[1]} but codes has d={codes.shape[1]} "
            f"(x {tuple(x.shape)}, codes {tuple(codes.shape)})")
    if codes_sqnorm.shape[0] != codes.shape[0]:
        raise ValueError(
            f"top2_triton: codes_sqnorm {tuple(codes_sqnorm.shape)} does not match "
            f"K={codes.shape[0]} of codes {tuple(codes.shape)}")
    if codes.shape[0] == 0:
        raise ValueError(f"top2_triton: codes {tuple(codes.shape)} is empty (K=0)")
    if x.dtype not in _DTYPES:
        raise ValueError(f"top2_triton: x dtype must be one of {_DTYPES}, got {x.dtype}")
    if codes.dtype != x.dtype:
        raise ValueError(
            f"top2_triton: codes dtype {codes.dtype} differs from x dtype {x.dtype}")
    if codes_sqnorm.dtype != torch.float32:
        raise ValueError(
            f"top2_triton: codes_sqnorm must be float32, got {codes_sqnorm.dtype}")
    if not (x.device == codes.device == codes_sqnorm.device):
        raise ValueError(
            f"top2_triton: tensors on different devices: x {x.device}, codes {codes.device}, "
            f"codes_sqnorm {codes_sqnorm.device}")


def top2_triton(
    x: torch.Tensor, codes: torch.Tensor, codes_sqnorm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest and runner-up code of every row of ``x`` by ``codes_sqnorm - 2 x . codes``.

    Args:
        x: (n, d) float32, bfloat16 or float16.
        codes: (K, d), same dtype and device as ``x``.
        codes_sqnorm: (K,) float32, usually ``(codes.float() ** 2).sum(1)``.

    Returns:
        ``(s1, i1, s2)``: (n,) float32 smallest score, (n,) int64 its index (lowest index on
        ties), (n,) float32 second-smallest score over the other codes (+inf when K == 1).
        Dots accumulate in float32; float32 inputs use IEEE products (no TF32).
    """
    if not HAS_TRITON:
        raise RuntimeError("top2_triton: triton is not installed")
    _validate(x, codes, codes_sqnorm)
    if _INTERPRETED != _LIBRARY_INTERPRETED:
        raise RuntimeError(
            "top2_triton: TRITON_INTERPRET changed between importing triton and importing "
            f"{__name__}; set it before triton is first imported")
    if not x.is_cuda and not _INTERPRETED:
        raise ValueError(
            f"top2_triton: needs CUDA tensors (got {x.device}); to run on CPU through Triton's "
            "interpreter, set TRITON_INTERPRET=1 before triton is imported")

    n, d = x.shape
    K = codes.shape[0]
    s1 = torch.empty(n, dtype=torch.float32, device=x.device)
    i1 = torch.empty(n, dtype=torch.int64, device=x.device)
    s2 = torch.empty(n, dtype=torch.float32, device=x.device)
    if n == 0:
        return s1, i1, s2

    codes_sqnorm = codes_sqnorm.contiguous()
    block_n, block_k, block_d, num_warps = _launch_config(d, x.dtype)
    # Triton's interpreter multiplies bfloat16 tiles as their raw uint16 bits (it has no bf16
    # arithmetic; triton-lang/triton#11584), so there the tiles are upcast to fp32 first. bf16
    # products are exact in fp32, so this is the GPU's bf16 dot with an fp32 accumulator up to
    # summation order.
    upcast = _INTERPRETED and x.dtype == torch.bfloat16
    grid = (triton.cdiv(n, block_n),)
    _kernel[grid](
        x, codes, codes_sqnorm, s1, i1, s2,
        n, K, d,
        x.stride(0), x.stride(1), codes.stride(0), codes.stride(1),
        BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_D=block_d,
        SINGLE_D=d <= block_d,
        # IEEE fp32 products (no TF32) for fp32 tiles; 16-bit tiles keep the backend's default.
        DOT_PRECISION="ieee" if x.dtype == torch.float32 or upcast else None,
        UPCAST=upcast,
        num_warps=num_warps,
    )
    return s1, i1, s2
