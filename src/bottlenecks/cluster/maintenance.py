"""Codebook maintenance shared by every quantiser (the key-value bottleneck's keys, the codebook
layers' codes, the graph tokenizer's codes): running-mean (EMA) updates, re-seeding dead codes
with their statistics reset, and usage statistics.

All functions work on ``C`` codebooks of ``K`` codes at once: codes ``(C, K, d)``, inputs
``z: (n, C, d)``, chosen ids ``(n, C, k)``. They update tensors in place (names end in ``_``) and
draw randomness only from the generator they are given.
"""

from __future__ import annotations

import torch

__all__ = ["code_hits", "dead_fraction", "ema_update_", "perplexity", "reseed_", "sample_rows", "usage",
           "weighted_rows"]


def code_hits(ids: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Selections per code: ids ``(n, C, k)`` -> counts ``(C, K)`` (int64)."""
    n, C, k = ids.shape
    flat = (ids + torch.arange(C, device=ids.device).view(1, C, 1) * num_codes).reshape(-1)
    return torch.bincount(flat, minlength=C * num_codes).view(C, num_codes)


@torch.no_grad()
def ema_update_(codes: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor, z: torch.Tensor,
                ids: torch.Tensor, decay: float, eps: float = 1e-12, unit: bool = False) -> torch.Tensor:
    """One running-mean step: every code moves to ``sums / counts``, the decayed sum and count of
    the rows that chose it (a row counts once for each of its ``k`` codes); ``unit=True`` keeps
    unit codes (cosine codebooks): the direction of ``sums``.

    codes, sums: ``(C, K, d)``; counts: ``(C, K)``; z: ``(n, C, d)``; ids: ``(n, C, k)``.
    Returns the hits ``(C, K)`` of this step.
    """
    C, K, d = codes.shape
    k = ids.shape[-1]
    flat = (ids + torch.arange(C, device=ids.device).view(1, C, 1) * K).reshape(-1)
    rows = z.unsqueeze(2).expand(-1, -1, k, -1).reshape(-1, d).to(sums.dtype)
    hits = torch.bincount(flat, minlength=C * K).view(C, K)
    step_sums = torch.zeros(C * K, d, dtype=sums.dtype, device=sums.device).index_add_(0, flat, rows)
    counts.mul_(decay).add_(hits.to(counts.dtype), alpha=1 - decay)
    sums.mul_(decay).add_(step_sums.view(C, K, d), alpha=1 - decay)
    if unit:
        codes.copy_(torch.nn.functional.normalize(sums, dim=-1))
    else:
        codes.copy_(sums / counts.clamp_min(eps).unsqueeze(-1))
    return hits


@torch.no_grad()
def reseed_(codes: torch.Tensor, which: torch.Tensor, new: torch.Tensor, sums: torch.Tensor | None = None,
            counts: torch.Tensor | None = None) -> int:
    """Codes marked in ``which: (C, K)`` take the rows ``new: (C, K, d)`` at the same places; their
    running statistics restart from that row (sum = the row, count = 1). Returns how many."""
    codes[which] = new[which].to(codes.dtype)
    if sums is not None:
        sums[which] = new[which].to(sums.dtype)
    if counts is not None:
        counts[which] = 1.0
    return int(which.sum())


def sample_rows(z: torch.Tensor, num_codes: int, generator: torch.Generator) -> torch.Tensor:
    """Uniformly drawn rows of ``z: (n, C, d)``, one per code of every codebook: ``(C, K, d)``."""
    n, C, _ = z.shape
    pick = torch.randint(0, n, (C, num_codes), generator=generator).to(z.device)
    return z[pick, torch.arange(C, device=z.device)[:, None]]


def weighted_rows(z: torch.Tensor, weight: torch.Tensor, m: int, generator: torch.Generator,
                  noise: float = 1e-3) -> torch.Tensor:
    """``m`` rows of one codebook's inputs ``z: (n, d)`` drawn with probability proportional to
    ``weight: (n,)`` (e.g. the distance to the nearest code: the rows served worst), plus a little
    noise (``noise`` times the rows' std) so that re-seeded codes do not coincide: ``(m, d)``."""
    w = weight.detach().cpu().double().clamp_min(0) + 1e-12
    pick = torch.multinomial(w, m, replacement=m > len(w), generator=generator)
    rows = z[pick.to(z.device)]
    return rows + noise * rows.std() * torch.randn(rows.shape, generator=generator).to(rows)


def usage(counts: torch.Tensor) -> torch.Tensor:
    """Share of the selections that went to each code: counts ``(C, K)`` -> ``(C, K)`` float64."""
    c = counts.double()
    return c / c.sum(-1, keepdim=True).clamp_min(1)


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """``exp(entropy)`` of each codebook's usage, counts ``(C, K)`` -> ``(C,)``: codes in effective use."""
    p = usage(counts)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-300))).sum(-1))


def dead_fraction(counts: torch.Tensor) -> torch.Tensor:
    """Share of codes never selected, counts ``(C, K)`` -> ``(C,)`` float64."""
    return (counts == 0).double().mean(-1)
