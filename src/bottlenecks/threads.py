"""One helper to pin torch's intra-op thread count for a block of work.

Why pin: many small ops (a GLM path, a tiny transformer, a key fit) run several times faster on
one thread than on two busy ones, and multi-threaded reductions split sums differently for
different counts, so iterative solvers give results that depend on the count. This module is a
leaf: it imports nothing from the project."""

from __future__ import annotations

import contextlib
import numbers

import torch

__all__ = ["fixed_threads", "small_op_threads"]


@contextlib.contextmanager
def fixed_threads(n: int | None):
    """Run the block with exactly ``n`` intra-op threads (``None``: leave the setting alone);
    the previous count is restored afterwards, also on an exception."""
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"threads: expected an integer >= 1 or None, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def small_op_threads(numel: int, num_threads: int | None = None, limit: int = 1 << 20):
    """``num_threads`` threads if given; else one while the work's operands (``numel`` elements)
    are below ``limit``, and the setting left alone above it. For loops of thousands of
    microsecond ops (GLM paths, small heads, energy models), where waking a thread pool costs
    more than the work (benchmarks/results/threads.md)."""
    return fixed_threads(num_threads if num_threads is not None else (1 if numel < limit else None))
