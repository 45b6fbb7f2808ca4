"""Triton top-2 nearest-code kernel against a torch reference.

Without a GPU the kernel runs on CPU tensors under Triton's interpreter. TRITON_INTERPRET=1 has to
be set before triton is first imported (triton's own tl.min, tl.zeros, ... are built in one mode
at import), so it is set here, before the import, and also in ``tests/cluster/conftest.py`` for
runs where another module of this folder imports triton first.
"""

from __future__ import annotations

import os

import pytest
import torch

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from bottlenecks.cluster import triton_top2  # noqa: E402
from bottlenecks.cluster.triton_top2 import top2_triton  # noqa: E402

if not CUDA and not (triton_top2._INTERPRETED and triton_top2._LIBRARY_INTERPRETED):
    pytest.skip("no GPU, and triton was imported before TRITON_INTERPRET=1 was set",
                allow_module_level=True)


def _make(n, K, d, dtype, seed=0, integer=False):
    g = torch.Generator().manual_seed(seed)
    if integer:  # small integers: every product and sum is exact, so ties are exact too
        x = torch.randint(-1, 2, (n, d), generator=g).float()
        codes = torch.randint(-1, 2, (K, d), generator=g).float()
    else:
        x = torch.randn(n, d, generator=g)
        codes = torch.randn(K, d, generator=g)
    x, codes = x.to(dtype), codes.to(dtype)
    sqnorm = codes.float().pow(2).sum(1)
    return x.to(DEVICE), codes.to(DEVICE), sqnorm.to(DEVICE)


def _reference(x, codes, sqnorm):
    return sqnorm - 2 * x.float() @ codes.float().T


def _check(x, codes, sqnorm, rtol=1e-4):
    s1, i1, s2 = top2_triton(x, codes, sqnorm)
    n, K = x.shape[0], codes.shape[0]
    assert s1.shape == i1.shape == s2.shape == (n,)
    assert s1.dtype == s2.dtype == torch.float32 and i1.dtype == torch.int64

    ref = _reference(x, codes, sqnorm)
    # Tolerance relative to the size of the terms that cancel in |c|^2 - 2 x.c, per row.
    xf, cf = x.float(), codes.float()
    tol = rtol * (sqnorm.abs().max() + 2 * xf.norm(dim=1) * cf.norm(dim=1).max() + 1)
    v, idx = ref.topk(min(2, K), dim=1, largest=False, sorted=True)

    assert torch.all((s1 - v[:, 0]).abs() <= tol)
    # The chosen code really scores the minimum (by the reference).
    assert torch.all(ref.gather(1, i1[:, None]).squeeze(1) - v[:, 0] <= tol)
    if K == 1:
        assert torch.all(i1 == 0)
        assert torch.all(torch.isinf(s2) & (s2 > 0))
        return
    assert torch.all((s2 - v[:, 1]).abs() <= tol)
    # Same index as the reference except where its best two (nearly) tie.
    tied = (v[:, 1] - v[:, 0]) <= tol
    assert torch.all((i1 == idx[:, 0]) | tied)
    assert tied.float().mean() < 0.5  # the comparison above is not vacuous


SHAPES = [  # (n, K, d): ragged n and K against the 64-wide tiles, K == 1, d below 16
    (37, 1, 3),
    (50, 5, 16),
    (129, 64, 33),
    (64, 130, 8),
    (200, 300, 70),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n{}-K{}-d{}".format(*s))
def test_matches_torch_topk(shape, dtype):
    _check(*_make(*shape, dtype))


def test_float16():
    _check(*_make(100, 70, 20, torch.float16))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_exact_ties_pick_lowest_index(dtype):
    # Entries in {-1, 0, 1} with d=4 give many exact ties, within and across code tiles.
    x, codes, sqnorm = _make(150, 200, 4, dtype, integer=True)
    s1, i1, s2 = top2_triton(x, codes, sqnorm)
    ref = _reference(x, codes, sqnorm)
    v = ref.topk(2, dim=1, largest=False, sorted=True).values
    first = (ref == v[:, :1]).float().argmax(dim=1)  # lowest index reaching the minimum
    assert torch.equal(s1, v[:, 0])
    assert torch.equal(s2, v[:, 1])
    assert torch.equal(i1, first)
    assert (v[:, 0] == v[:, 1]).any()  # ties did occur


def test_duplicate_code_in_later_tile():
    x, codes, sqnorm = _make(40, 150, 12, torch.float32)
    codes[140] = codes[7]  # same code twice, in different 64-wide tiles
    sqnorm[140] = sqnorm[7]
    x[:] = codes[7]  # every row is nearest to both copies
    s1, i1, s2 = top2_triton(x, codes, sqnorm)
    assert torch.all(i1 == 7)
    assert torch.equal(s1, s2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_features_split_over_tiles(monkeypatch, dtype):
    # Rows wider than MAX_BLOCK_D are summed over several feature tiles.
    monkeypatch.setattr(triton_top2, "MAX_BLOCK_D", 16)
    _check(*_make(70, 90, 70, dtype))


def test_strided_inputs():
    x, codes, sqnorm = _make(60, 80, 40, torch.float32)
    _check(x[:, ::2], codes[:, ::2], codes[:, ::2].pow(2).sum(1))
    _check(x.T.contiguous().T, codes, sqnorm)


def test_empty_rows():
    x, codes, sqnorm = _make(0, 10, 8, torch.float32)
    s1, i1, s2 = top2_triton(x, codes, sqnorm)
    assert s1.shape == i1.shape == s2.shape == (0,)


def test_mismatched_d_is_a_clear_error():
    x, _, _ = _make(10, 4, 8, torch.float32)
    _, codes, sqnorm = _make(10, 4, 9, torch.float32)
    with pytest.raises(ValueError, match=r"d=8.*d=9.*\(10, 8\).*\(4, 9\)"):
        top2_triton(x, codes, sqnorm)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda x, c, s: (x, c.double(), s), "codes dtype"),
        (lambda x, c, s: (x.double(), c.double(), s), "x dtype"),
        (lambda x, c, s: (x, c, s.half()), "codes_sqnorm must be float32"),
        (lambda x, c, s: (x, c, s[:-1]), r"codes_sqnorm \(3,\)"),
        (lambda x, c, s: (x[0], c, s), r"x \(8,\)"),
        (lambda x, c, s: (x, c[:0], s[:0]), "K=0"),
    ],
)
def test_bad_inputs(change, message):
    x, codes, sqnorm = _make(10, 4, 8, torch.float32)
    with pytest.raises(ValueError, match=message):
        top2_triton(*change(x, codes, sqnorm))


def test_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.setattr(triton_top2, "_INTERPRETED", False)
    monkeypatch.setattr(triton_top2, "_LIBRARY_INTERPRETED", False)
    x, codes, sqnorm = _make(10, 4, 8, torch.float32)
    with pytest.raises(ValueError, match="CUDA"):
        top2_triton(x.cpu(), codes.cpu(), sqnorm.cpu())


def test_interpreter_flag_set_too_late_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(triton_top2, "_INTERPRETED", True)
    monkeypatch.setattr(triton_top2, "_LIBRARY_INTERPRETED", False)
    x, codes, sqnorm = _make(10, 4, 8, torch.float32)
    with pytest.raises(RuntimeError, match="before triton is first imported"):
        top2_triton(x, codes, sqnorm)


def test_exact_assignment_through_the_triton_kernel_equals_torch_path():
    from bottlenecks.cluster.exact import CentroidTable, assign_exact

    g = torch.Generator().manual_seed(3)
    x = torch.randn(150, 12, generator=g).to(DEVICE)
    c = torch.randn(70, 12, generator=g, dtype=torch.float64).to(DEVICE)
    for precision in ("float32", "bfloat16"):
        table = CentroidTable(c, precision, x.double().mean(0))
        via_triton = assign_exact(x, table, backend="triton")
        via_torch = assign_exact(x, table, backend="torch")
        ref = torch.cdist(x.double(), c).argmin(1)
        assert torch.equal(via_triton.labels, ref) and torch.equal(via_torch.labels, ref)
        torch.testing.assert_close(via_triton.sq_dist, via_torch.sq_dist)
        runner_up = torch.cdist(x.double(), c).pow(2).topk(2, largest=False).values[:, 1]
        assert bool((via_triton.second_lower <= runner_up).all())
