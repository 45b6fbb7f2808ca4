"""The codebook of the graph tokenizer: cosine vector quantisation with EMA codes.

    h (n, dim) -> unit rows u -> nearest code (cluster.nearest, cosine) -> q = codes[ids]
    out = u + sg(q - u)        straight-through: value q, gradient 1 to u

Codes are unit vectors updated by an exponential moving average of the rows assigned to them
(decay 0.8, as the VQGraph code), initialised by k-means (``cluster.kmeans``) on the first
training batch; a code whose EMA count of hits falls below ``dead_threshold`` (0.1: about ten
steps without a hit, from 1) is re-seeded from a random row of the batch (seeded generator).
``counts`` keeps the usage statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..cluster import kmeans, maintenance, nearest
from ..validation import check_float, check_positive_int

__all__ = ["CosineQuantizer"]


class CosineQuantizer(nn.Module):
    """``K`` unit codes of size ``dim``; ``forward(h: (n, dim)) -> (out (n, dim), ids (n,), loss ())``.

    ``loss`` is ``commitment * |u - sg(q)|^2`` (mean over rows and features), with ``u`` the unit rows.
    """

    def __init__(self, num_codes: int, dim: int, *, decay: float = 0.8, commitment: float = 0.25,
                 dead_threshold: float = 0.1, kmeans_iters: int = 10, seed: int = 0):
        super().__init__()
        self.num_codes = check_positive_int(num_codes, "num_codes", 2)
        self.dim = check_positive_int(dim, "dim")
        if not 0 <= decay < 1:
            raise ValueError(f"decay: expected a value in [0, 1), got {decay}")
        if commitment < 0 or dead_threshold < 0:
            raise ValueError(f"commitment and dead_threshold: expected >= 0, got {commitment}, {dead_threshold}")
        self.decay, self.commitment, self.dead_threshold = float(decay), float(commitment), float(dead_threshold)
        self.kmeans_iters, self.seed = int(kmeans_iters), int(seed)
        self.register_buffer("codes", torch.zeros(num_codes, dim))
        self.register_buffer("ema_counts", torch.zeros(num_codes))
        self.register_buffer("ema_sums", torch.zeros(num_codes, dim))
        self.register_buffer("counts", torch.zeros(num_codes, dtype=torch.long))  # usage statistics
        self.register_buffer("replaced", torch.zeros((), dtype=torch.long))  # codes re-seeded so far
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self._generator = torch.Generator().manual_seed(self.seed)

    def reset_parameters(self) -> None:
        for name in ("codes", "ema_counts", "ema_sums", "counts", "replaced", "initialized"):
            getattr(self, name).zero_()
        self._generator.manual_seed(self.seed)

    def extra_repr(self) -> str:
        return (f"num_codes={self.num_codes}, dim={self.dim}, decay={self.decay}, commitment={self.commitment}, "
                f"dead_threshold={self.dead_threshold}")

    @torch.no_grad()
    def init_codes(self, h: torch.Tensor) -> None:
        """k-means (random rows as initial centres, ``kmeans_iters`` Lloyd steps, as the VQGraph code) of the
        unit rows of ``h: (n, dim)``, ``n >= num_codes``."""
        u = F.normalize(h.detach().float(), dim=-1)
        if u.shape[0] < self.num_codes:
            raise ValueError(f"init_codes: {self.num_codes} codes need at least as many rows, got {u.shape[0]}; "
                             "use a smaller codebook")
        res = kmeans(u, self.num_codes, init="random", max_iter=self.kmeans_iters, seed=self.seed)
        codes = F.normalize(res.centroids.float(), dim=-1)
        self.codes.copy_(codes)
        self.ema_sums.copy_(codes)
        self.ema_counts.fill_(1.0)
        self.initialized.fill_(True)

    def assign(self, h: torch.Tensor) -> torch.Tensor:
        """Nearest code (cosine) of every row, ``(n, dim) -> (n,)``."""
        return nearest(h.detach().float(), self.codes, 1, "cosine")[1][:, 0]

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_float(h, "h")
        if h.dim() != 2 or h.shape[1] != self.dim:
            raise ValueError(f"h: expected shape (n, {self.dim}), got {tuple(h.shape)}")
        if self.training and not bool(self.initialized):
            self.init_codes(h)
        elif not bool(self.initialized):
            raise RuntimeError("CosineQuantizer: codes are not initialised; run a training forward first")
        u = F.normalize(h, dim=-1)
        ids = self.assign(u)
        q = self.codes[ids]
        loss = self.commitment * F.mse_loss(u, q)
        with torch.no_grad():
            self.counts += torch.bincount(ids, minlength=self.num_codes)
            if self.training:
                self._ema_update(u.detach(), ids)
        return u + (q - u).detach(), ids, loss

    @torch.no_grad()
    def _ema_update(self, u: torch.Tensor, ids: torch.Tensor) -> None:
        # unit codes: the direction of each code's decayed sum of rows (cluster.maintenance)
        maintenance.ema_update_(self.codes[None], self.ema_sums[None], self.ema_counts[None], u[:, None],
                                ids[:, None, None], self.decay, unit=True)
        dead = self.ema_counts < self.dead_threshold if self.dead_threshold > 0 else None
        if dead is not None and bool(dead.any()):
            # re-seed dead codes from random rows of this batch (the VQGraph code's expire_codes_)
            idx = torch.nonzero(dead).flatten()
            pick = torch.randint(0, u.shape[0], (len(idx),), generator=self._generator).to(u.device)
            new = torch.zeros_like(self.codes)
            new[idx] = u[pick]
            self.replaced += maintenance.reseed_(self.codes, dead, new, self.ema_sums, self.ema_counts)

    def usage(self) -> torch.Tensor:
        """Share of assignments per code since the last :meth:`reset_usage`, ``(K,)``."""
        return maintenance.usage(self.counts[None])[0]

    def perplexity(self) -> float:
        """``exp(entropy)`` of :meth:`usage`: the effective number of codes in use."""
        return float(maintenance.perplexity(self.counts[None])[0])

    def reset_usage(self) -> None:
        self.counts.zero_()
