"""Codebook bottlenecks (Tamkin, Taufeeque & Goodman, "Codebook Features", 2023).

    x (..., dim)
      -> split into C groups                     z: (n, C, d)          d = dim / C
      -> top-k most similar codes per group      ids: (n, C, k)        (cluster.nearest, batched)
      -> mean (or sum) of those codes, rescaled  q: (n, C, d)
      -> straight-through                        out = z + (q - z).detach()   value q, gradient 1 to z

The downstream gradient passes straight through to the input; the codes learn from a
reconstruction loss ``|q - sg(z)|^2`` (the third output, as every quantiser returns
``(values, indices, loss)``), or from EMA updates. With
``code_gradient=True`` the chosen codes also receive the downstream gradient (``out = q + z - sg(z)``),
as the public code's ``aeloss`` does. An optional commitment loss ``|sg(q) - z|^2`` pulls the input
towards its codes.

Output scale: with ``metric='cosine'`` the public implementation averages unit-norm codes and
never rescales them, so the layer's output has norm <= 1 whatever the size of the activation it
replaces (we measure ``norm_ratio`` = mean |out| / mean |x|). ``scale='running'`` (default) keeps
one scalar per codebook, a running average (momentum 0.9, training batches) of mean |x| / mean |codes
output|, so outputs follow the activations' size as it changes in training while every token of a
codebook shares the same scale (the output stays a function of the code ids alone).
``'learned'`` makes that scalar a parameter trained by the reconstruction loss, initialised
to the matched value (it follows fast-growing activations slowly: Adam moves it by ~lr a step);
``'match'`` rescales every output to its own input's norm (exact, but one continuous number per
token leaks through the bottleneck); ``'code'`` searches by cosine but outputs each chosen code
with its own learned norm (codes are raw vectors, initialised at the rows' mean norm and trained by
the reconstruction loss: the public code's ``inner_product`` snapping, which ranks by
``x . c / |c|`` and outputs raw codes); ``'none'`` outputs unit codes unscaled.

Codes never chosen die: the layer counts hits per code over a window of training steps and
re-seeds codes with no hit from the batch rows farthest from their codes (``replace_dead``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import Checkpointable, corrupt, load_state, read_legacy_pair
from ..cluster import kmeans, maintenance, nearest
from ..validation import check_choice, check_finite, check_float, check_positive_int, check_squarable

METRICS = ("cosine", "dot", "l2")
SCALES = ("running", "learned", "match", "code", "none")
AGGREGATES = ("mean", "sum")
_GENERATOR_KEY = "_generator_state"  # the generator state in the earlier path.safetensors layout

__all__ = ["AGGREGATES", "METRICS", "SCALES", "CodebookLayer", "GroupCodebookLayer"]


class _Codebooks(nn.Module, Checkpointable):
    """``C`` codebooks of ``K`` codes, each searching its own slice of the feature axis.

    Shapes: ``x: (..., dim) -> (..., dim)`` and ids ``(..., C, k)``; ``dim = C * d``.
    """

    def __init__(self, dim: int, num_codes: int, k: int = 1, metric: str = "cosine", *, num_codebooks: int = 1,
                 aggregate: str = "mean", scale: str = "running", reconstruction: float = 1.0,
                 commitment: float = 0.0, code_gradient: bool = False, ema: bool = False, ema_decay: float = 0.99,
                 replace_dead: bool = True,
                 replace_every: int = 50, kmeans_init: bool = True, kmeans_iter: int = 10, seed: int = 0,
                 max_memory: int | None = None):
        super().__init__()
        check_positive_int(dim, "dim")
        check_positive_int(num_codes, "num_codes")
        check_positive_int(k, "k")
        check_positive_int(num_codebooks, "num_codebooks")
        check_choice(metric, "metric", METRICS)
        check_choice(aggregate, "aggregate", AGGREGATES)
        check_choice(scale, "scale", SCALES)
        check_positive_int(replace_every, "replace_every")
        check_positive_int(kmeans_iter, "kmeans_iter")
        if k > num_codes:
            raise ValueError(f"k={k} is larger than num_codes={num_codes}; expected k <= num_codes")
        if dim % num_codebooks:
            raise ValueError(f"dim={dim} is not divisible by num_codebooks={num_codebooks}; "
                             "expected one equal slice of the features per codebook")
        if not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay: expected a number in (0, 1), got {ema_decay}")
        if reconstruction < 0 or commitment < 0:
            raise ValueError(f"reconstruction and commitment: expected weights >= 0, got {reconstruction} and "
                             f"{commitment}")
        self.dim, self.num_codes, self.k, self.metric = dim, num_codes, k, metric
        self.num_codebooks, self.group_dim = num_codebooks, dim // num_codebooks
        self.aggregate, self.scale_mode = aggregate, scale
        self.reconstruction, self.commitment = float(reconstruction), float(commitment)
        self.code_gradient = bool(code_gradient)
        self.ema, self.ema_decay = bool(ema), float(ema_decay)
        self.replace_dead, self.replace_every = bool(replace_dead), replace_every
        self.kmeans_init, self.kmeans_iter = bool(kmeans_init), kmeans_iter
        self.seed, self.max_memory = seed, max_memory

        C, K, d = num_codebooks, num_codes, self.group_dim
        # trained by the reconstruction loss, or by EMA (then no gradient reaches them)
        self.codes = nn.Parameter(torch.empty(C, K, d), requires_grad=not self.ema)
        if scale == "learned":
            self.scale = nn.Parameter(torch.ones(C))
        elif scale == "running":  # updated from batch statistics, never by gradient
            self.register_buffer("scale", torch.ones(C))
        else:
            self.scale = None
        self.register_buffer("ema_counts", torch.zeros(C, K))  # EMA state: hits and sums per code
        self.register_buffer("ema_sums", torch.zeros(C, K, d))
        self.register_buffer("window_hits", torch.zeros(C, K))  # hits since the last dead-code check
        self.register_buffer("counts", torch.zeros(C, K, dtype=torch.long))  # running usage statistics
        self.register_buffer("norm_sums", torch.zeros(2, dtype=torch.float64))  # sum |out|, sum |x|
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("replaced", torch.zeros((), dtype=torch.long))  # codes re-seeded so far
        self.track_stats = True
        self.last_ids: torch.Tensor | None = None
        self.steering: list[dict] = []  # active steering entries, applied in order (codebook.steer)
        self.reset_parameters()

    # ------------------------------------------------------------------ state
    def reset_parameters(self) -> None:
        """Codes drawn again from ``seed`` (unit Gaussian rows); statistics and scale reset. The
        codes are re-initialised from the first training batch when ``kmeans_init`` is set."""
        g = torch.Generator().manual_seed(self.seed)
        self._generator = torch.Generator().manual_seed(self.seed + 1)
        with torch.no_grad():
            self.codes.copy_(torch.randn(self.codes.shape, generator=g))
            if self.scale is not None:
                self.scale.fill_(1.0)
        for name in ("ema_counts", "ema_sums", "window_hits", "steps", "replaced"):
            getattr(self, name).zero_()
        self.initialized.fill_(False)
        self.reset_stats()

    def reset_stats(self) -> None:
        """Clear the running usage statistics (``counts``, ``norm_ratio``)."""
        self.counts.zero_()
        self.norm_sums.zero_()

    def config(self) -> dict:
        return {"dim": self.dim, "num_codes": self.num_codes, "k": self.k, "metric": self.metric,
                "num_codebooks": self.num_codebooks, "aggregate": self.aggregate, "scale": self.scale_mode,
                "reconstruction": self.reconstruction, "commitment": self.commitment,
                "code_gradient": self.code_gradient, "ema": self.ema,
                "ema_decay": self.ema_decay, "replace_dead": self.replace_dead, "replace_every": self.replace_every,
                "kmeans_init": self.kmeans_init, "kmeans_iter": self.kmeans_iter, "seed": self.seed,
                "max_memory": self.max_memory}

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_codes={self.num_codes}, k={self.k}, metric={self.metric!r}, "
                f"num_codebooks={self.num_codebooks}, aggregate={self.aggregate!r}, scale={self.scale_mode!r}, "
                f"ema={self.ema}, replace_dead={self.replace_dead}")

    # save_pretrained(dir) / from_pretrained(dir) come from Checkpointable (model.safetensors +
    # config.json); the state of the generator that re-seeds dead codes is saved with the tensors
    def _checkpoint_extra(self) -> tuple[dict, dict]:
        return {"track_stats": bool(self.track_stats)}, {"generator": self._generator.get_state()}

    def _restore_extra(self, state: dict, tensors: dict) -> None:
        self.track_stats = bool(state.get("track_stats", True))
        if "generator" in tensors:
            self._generator.set_state(tensors["generator"])

    @classmethod
    def _from_config(cls, config: dict) -> _Codebooks:
        groups = config.pop("num_codebooks")
        if issubclass(cls, GroupCodebookLayer):
            return cls(config.pop("dim"), groups, config.pop("num_codes"), **config)
        return cls(**config)

    def save(self, path) -> Path:
        """Alias of :meth:`save_pretrained` (``path`` is the folder)."""
        return self.save_pretrained(path)

    @classmethod
    def load(cls, path, device=None) -> _Codebooks:
        """:meth:`from_pretrained`, which also reads the earlier ``path.safetensors`` + ``path.json``
        layout. ``CodebookLayer.load`` refuses a saved ``GroupCodebookLayer`` and vice versa."""
        path = Path(path)
        if path.is_dir():
            return cls.from_pretrained(path, device)
        classes = cls._loadable()
        meta, state = read_legacy_pair(path, tuple(classes))
        name = meta.pop("class")
        try:
            layer = classes[name]._from_config(meta)
        except (TypeError, ValueError, KeyError) as err:
            raise corrupt(path.with_suffix(".json"), name, f"its config is rejected: {err}") from None
        generator = state.pop(_GENERATOR_KEY, None)
        load_state(layer, state, path.with_suffix(".safetensors"), name)
        layer._restore_extra({}, {} if generator is None else {"generator": generator})
        return layer.to(device) if device is not None else layer

    # ------------------------------------------------------------------ statistics
    def usage(self) -> torch.Tensor:
        """Fraction of the selections that went to each code since the last ``reset_stats``: ``(C, K)``."""
        return maintenance.usage(self.counts)

    def perplexity(self) -> torch.Tensor:
        """``exp(entropy)`` of each codebook's usage, ``(C,)``: the effective number of codes in use."""
        return maintenance.perplexity(self.counts)

    def dead_fraction(self) -> torch.Tensor:
        """Fraction of codes never selected since the last ``reset_stats``, per codebook ``(C,)``."""
        return maintenance.dead_fraction(self.counts)

    def norm_ratio(self) -> float:
        """Mean output norm over mean input norm since the last ``reset_stats`` (nan before any call)."""
        out, inp = self.norm_sums.tolist()
        return out / inp if inp > 0 else float("nan")

    # ------------------------------------------------------------------ codes
    def _unit(self, v: torch.Tensor) -> torch.Tensor:
        # eps: the dtype's smallest normal, so that tiny (but representable) rows still get unit norm
        return F.normalize(v, dim=-1, eps=torch.finfo(v.dtype).tiny) if self.metric == "cosine" else v

    def _output_codes(self, v: torch.Tensor) -> torch.Tensor:
        """What a chosen code contributes to the output: unit-normalised for ``'cosine'``, except
        with ``scale='code'``, where each code keeps its own (learned) norm."""
        return v if self.scale_mode == "code" else self._unit(v)

    def _code_space(self, z: torch.Tensor) -> torch.Tensor:
        """Rows in the space the codes live in (re-seeding, EMA): raw for ``scale='code'``."""
        return z if self.scale_mode == "code" else self._unit(z)

    @torch.no_grad()
    def init_codes(self, x: torch.Tensor) -> None:
        """Codes from k-means (k-means++, or random rows above 256 codes; ``kmeans_iter`` Lloyd steps) over activations
        ``x: (n, dim)`` (or ``(n, C, d)``), every codebook in one batched call.

        With fewer rows than codes, the codes are random rows (with replacement) plus small noise.
        ``metric='cosine'`` clusters the unit-normalised rows. The scale (``'running'`` or
        ``'learned'``) is then set so that outputs match the inputs' mean norm.
        """
        z = self._groups(x).detach().float()
        z = self._unit(z) if self.metric == "cosine" else z
        n, K, C = z.shape[0], self.num_codes, self.num_codebooks
        cents: list = [None] * C
        if self.kmeans_init:
            # activations repeat (e.g. every BOS token): each codebook clusters its distinct rows
            # only (weight 1 on a row's first occurrence, 0 on its repeats), all codebooks in one
            # batched k-means; codebooks with fewer distinct rows than codes fall back below
            weight = torch.zeros(n, C, dtype=torch.float64, device=z.device)
            for c in range(C):
                _, inverse = torch.unique(z[:, c], dim=0, return_inverse=True)
                first = torch.full((int(inverse.max()) + 1,), n, dtype=torch.long, device=z.device)
                first.scatter_reduce_(0, inverse, torch.arange(n, device=z.device), "amin")
                weight[first, c] = 1.0
            fit = ((weight > 0).sum(0) >= K).nonzero().squeeze(1)
            if len(fit):
                # k-means++ costs K sequential passes: for large codebooks start from random rows
                init = "k-means++" if K <= 256 else "random"
                try:
                    res = kmeans(z[:, fit], K, init=init, max_iter=self.kmeans_iter, seed=self.seed,
                                 sample_weight=weight[:, fit])
                    for i, c in enumerate(fit.tolist()):
                        cents[c] = res.centroids[i]
                except RuntimeError as err:  # pragma: no cover - depends on the cluster engine
                    warnings.warn(f"k-means initialisation failed ({err}); codes are random rows instead",
                                  RuntimeWarning, stacklevel=2)
        for c in range(C):
            zc = z[:, c]
            cent = cents[c]
            if cent is None:
                idx = torch.randint(0, n, (K,), generator=self._generator)
                cent = zc[idx] + 1e-3 * zc.std() * torch.randn(K, zc.shape[1], generator=self._generator)
            if self.scale_mode == "code" and self.metric == "cosine":
                cent = self._centre_norms(F.normalize(cent, dim=-1), self._groups(x)[:, c].detach().float())
            self.codes[c].copy_(cent.to(self.codes))
        if self.scale is not None:
            self.scale.fill_(1.0)
            zr = self._groups(x).detach()
            q = self._lookup(zr, self._search(zr))
            ratio = zr.norm(dim=-1).mean(0) / q.norm(dim=-1).mean(0).clamp_min(1e-12)
            self.scale.copy_(ratio.to(self.scale))
        self.ema_sums.copy_(self.codes.detach())
        self.ema_counts.fill_(1.0)
        self.initialized.fill_(True)

    def _centre_norms(self, cent: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Unit centres ``(K, d)`` scaled to the mean norm of the rows ``(n, d)`` nearest to each (by
        cosine); centres with no row get the mean norm of all rows."""
        _, ids = nearest(rows, cent, 1, "cosine", validate=False)
        norms = rows.norm(dim=-1)
        sums = torch.zeros(len(cent)).index_add_(0, ids[:, 0].cpu(), norms.cpu())
        hits = torch.bincount(ids[:, 0].cpu(), minlength=len(cent)).float()
        mean = torch.where(hits > 0, sums / hits.clamp_min(1), norms.mean().cpu())
        return cent * mean.to(cent).unsqueeze(1)

    def _groups(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., dim) -> (n, C, d)``; an ``(n, C, d)`` input is returned as is."""
        if x.dim() == 3 and x.shape[1:] == (self.num_codebooks, self.group_dim):
            return x
        return x.reshape(-1, self.num_codebooks, self.group_dim)

    def _search(self, z: torch.Tensor) -> torch.Tensor:
        _, ids = nearest(z.detach(), self.codes.detach(), self.k, self.metric,
                         max_memory=self.max_memory, validate=False)
        return ids  # (n, C, k)

    def code_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """The (unit-normalised for ``'cosine'``) codes of ``ids: (..., C, k)`` -> ``(..., C, k, d)``,
        differentiable w.r.t. the codes."""
        C, K = self.num_codebooks, self.num_codes
        offset = torch.arange(C, device=ids.device).view(*([1] * (ids.dim() - 2)), C, 1) * K
        flat = self.codes.reshape(C * K, self.group_dim)
        return self._output_codes(F.embedding(ids + offset, flat))

    def _lookup(self, z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Aggregated, rescaled codes ``(n, C, d)`` for inputs ``z: (n, C, d)`` and ``ids: (n, C, k)``."""
        v = self.code_vectors(ids)
        q = v.mean(2) if self.aggregate == "mean" else v.sum(2)
        if self.scale_mode == "learned":
            q = q * self.scale.view(1, -1, 1).to(q.dtype)
        elif self.scale_mode == "running":  # a copy: the buffer is updated in place after the forward
            q = q * self.scale.detach().clone().view(1, -1, 1).to(q.dtype)
        elif self.scale_mode == "match":
            q = q * (z.detach().norm(dim=-1, keepdim=True) / q.detach().norm(dim=-1, keepdim=True).clamp_min(1e-12))
        return q

    # ------------------------------------------------------------------ forward
    def _check(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor of shape (..., {self.dim}), got {type(x).__name__}")
        check_float(x, "x")
        if x.dim() == 0 or x.shape[-1] != self.dim:
            raise ValueError(f"x: expected shape (..., dim={self.dim}), got {tuple(x.shape)}")
        check_squarable(x, "x")  # the search and the k-means init square the activations

    def _codes_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(..., dim) -> (..., dim), ids (..., C, k), loss ()``."""
        self._check(x)
        lead = x.shape[:-1]
        # in the codes' precision (e.g. float32 codes inside a bfloat16 model); the output goes back in x's
        z = self._groups(x).to(self.codes.dtype)
        if self.training and not bool(self.initialized):
            check_finite(z.detach(), "x")
            self.init_codes(z)
        ids = self._search(z)
        q = self._lookup(z, ids)
        for entry in self.steering:
            q = self._steer(q, lead, entry)
        loss = q.new_zeros(())  # the codebook loss: only a training forward that tracks gradients has one
        if self.training and torch.is_grad_enabled():
            if self.reconstruction > 0:
                loss = loss + self.reconstruction * F.mse_loss(q, z.detach())
            if self.commitment > 0:
                loss = loss + self.commitment * F.mse_loss(z, q.detach())
        # straight-through: the value of q, the downstream gradient passed unchanged to z; with
        # code_gradient the chosen codes receive that gradient too (the public code's 'aeloss')
        if not torch.is_grad_enabled():
            out = q.detach()
        elif self.code_gradient and not self.ema:
            out = q + (z - z.detach())
        else:
            out = z + (q - z).detach()
        self._after_forward(z, ids, q)
        self.last_ids = ids.reshape(*lead, self.num_codebooks, self.k)
        return out.reshape(*lead, self.dim).to(x.dtype), self.last_ids, loss

    @torch.no_grad()
    def _after_forward(self, z: torch.Tensor, ids: torch.Tensor, q: torch.Tensor) -> None:
        hits = maintenance.code_hits(ids, self.num_codes)
        if self.track_stats:
            self.counts += hits.to(self.counts.device)
            self.norm_sums += torch.stack([q.norm(dim=-1).sum(), z.norm(dim=-1).sum()]).double()
        if not self.training:
            return
        self.steps += 1
        self.window_hits += hits.to(self.window_hits.dtype)
        if self.scale_mode == "running":  # ratio of mean norms, unscaled output: q / scale
            unscaled = q.detach().float().norm(dim=-1).mean(0) / self.scale.float().clamp_min(1e-12)
            ratio = z.detach().float().norm(dim=-1).mean(0) / unscaled.clamp_min(1e-12)
            self.scale.mul_(0.9).add_(0.1 * ratio.to(self.scale))
        if self.ema:
            maintenance.ema_update_(self.codes, self.ema_sums, self.ema_counts, self._code_space(z.detach().float()),
                                    ids, self.ema_decay, eps=1e-6)
        if self.replace_dead and int(self.steps) % self.replace_every == 0:
            self._replace_dead(z.detach())
        if int(self.steps) % self.replace_every == 0:
            self.window_hits.zero_()

    def _replace_dead(self, z: torch.Tensor) -> None:
        """Re-seed the codes with no hit in the last window from batch rows, picked with probability
        growing with their distance to their nearest code (rows the codebook serves worst)."""
        dead = self.window_hits == 0  # (C, K)
        if not bool(dead.any()):
            return
        zu = self._unit(z.float())
        for c in torch.nonzero(dead.any(1)).flatten().tolist():
            idx_dead = torch.nonzero(dead[c]).flatten()
            dist, _ = nearest(zu[:, c], self._unit(self.codes[c].detach().float()), 1,
                              "l2" if self.metric != "dot" else "dot", validate=False)
            w = dist[:, 0].clamp_min(0) if self.metric != "dot" else torch.ones(len(zu))
            new = maintenance.weighted_rows(self._code_space(z.float())[:, c], w, len(idx_dead), self._generator)
            rows = torch.zeros_like(self.codes[c])
            rows[idx_dead] = new.to(rows)
            self.replaced += maintenance.reseed_(self.codes[c], dead[c], rows, self.ema_sums[c], self.ema_counts[c])

    # ------------------------------------------------------------------ steering
    def _steer(self, q: torch.Tensor, lead: torch.Size, s: dict) -> torch.Tensor:
        """Activate one entry's steering codes in ``q: (n, C, d)`` at its sequence positions."""
        v = s["vectors"].to(q)  # (C, d), zero rows for codebooks not steered
        on = s["groups"].to(q.device)  # (C,) bool
        mask = _position_mask(lead, s["positions"], q.device).reshape(-1, 1, 1) & on.view(1, -1, 1)
        if s["mode"] == "add":
            steered = q + s["strength"] * v
        else:  # replace: interpolate from the chosen codes to the steering codes
            steered = (1 - s["strength"]) * q + s["strength"] * v
        return torch.where(mask, steered, q)

    def steering_vectors(self, code_ids: dict[int, Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``{codebook: [code ids]}`` -> the output each codebook gives when exactly those codes
        are chosen ``(C, d)`` (mean or sum of the codes, scaled as in forward), and the mask of
        steered codebooks ``(C,)``."""
        C, d = self.num_codebooks, self.group_dim
        vec = torch.zeros(C, d)
        on = torch.zeros(C, dtype=torch.bool)
        with torch.no_grad():
            for c, ids in code_ids.items():
                ids = torch.as_tensor(list(ids), dtype=torch.long, device=self.codes.device)
                v = self._output_codes(self.codes[c, ids].float())
                v = v.mean(0) if self.aggregate == "mean" else v.sum(0)
                if self.scale_mode in ("learned", "running"):
                    v = v * self.scale[c].float()
                elif self.scale_mode == "match":  # no input to match: use the mean output norm seen
                    v = F.normalize(v, dim=-1) * self._typical_norm()
                vec[c], on[c] = v.cpu(), True
        return vec, on

    def _typical_norm(self) -> float:
        out_sum = float(self.norm_sums[0])
        rows = int(self.counts.sum()) // self.k  # (token, codebook) pairs seen
        return out_sum / rows if rows > 0 else 1.0

    def set_steering(self, code_ids, strength: float = 1.0, mode: str = "add", positions=None) -> dict:
        """Activate ``code_ids`` in every forward until :meth:`clear_steering` (see ``codebook.steer``);
        entries stack (e.g. different codes at different positions). Returns the entry."""
        check_choice(mode, "mode", ("add", "replace"))
        groups = self._normalize_ids(code_ids)
        vec, on = self.steering_vectors(groups)
        entry = {"vectors": vec, "groups": on, "strength": float(strength), "mode": mode,
                 "positions": positions, "code_ids": groups}
        self.steering.append(entry)
        return entry

    def clear_steering(self, entry: dict | None = None) -> None:
        """Remove one steering entry (by identity), or all of them."""
        self.steering = [] if entry is None else [e for e in self.steering if e is not entry]

    def _normalize_ids(self, code_ids) -> dict[int, list[int]]:
        """int / list of ints (codebook 0, or every codebook of a one-codebook layer) or
        ``{codebook: ids}`` -> ``{codebook: [ids]}``, checked."""
        if isinstance(code_ids, dict):
            groups = {int(c): [int(i) for i in (ids if isinstance(ids, (list, tuple, range, torch.Tensor)) else [ids])]
                      for c, ids in code_ids.items()}
        else:
            if self.num_codebooks != 1:
                raise ValueError(f"this layer has {self.num_codebooks} codebooks: give the steering codes as "
                                 "{codebook index: [code ids]}")
            ids = code_ids.tolist() if isinstance(code_ids, torch.Tensor) else code_ids
            groups = {0: [int(i) for i in (ids if isinstance(ids, (list, tuple, range)) else [ids])]}
        for c, ids in groups.items():
            if not 0 <= c < self.num_codebooks:
                raise ValueError(f"codebook index {c} out of range: expected 0 <= index < {self.num_codebooks}")
            if not ids:
                raise ValueError(f"codebook {c}: expected at least one code id to steer with")
            bad = [i for i in ids if not 0 <= i < self.num_codes]
            if bad:
                raise ValueError(f"code ids {bad} out of range: expected 0 <= id < num_codes={self.num_codes}")
        return groups


def _position_mask(lead: torch.Size, positions, device) -> torch.Tensor:
    """Boolean ``lead`` mask of the steered tokens. ``lead`` is ``(batch, seq)`` (or any shape; the
    last axis is the sequence); positions: ``None`` (all), ``'last'``, an int, a slice or ints."""
    if positions is None or len(lead) == 0:
        return torch.ones(lead, dtype=torch.bool, device=device)
    T = lead[-1]
    m = torch.zeros(T, dtype=torch.bool, device=device)
    if positions == "last":
        m[-1] = True
    elif isinstance(positions, slice):
        m[positions] = True
    else:
        idx = [positions] if isinstance(positions, int) else list(positions)
        idx = [i for i in idx if -T <= i < T]  # positions beyond this call's sequence are not steered
        if idx:
            m[torch.as_tensor(idx, dtype=torch.long, device=device)] = True
    return m.expand(lead)


class CodebookLayer(_Codebooks):
    """One codebook: ``x: (..., dim) -> (out (..., dim), ids (..., k))``.

    Args:
        dim: feature size of the activation.
        num_codes: ``K``, codes in the codebook.
        k: codes chosen per token (their mean, or sum, is the output).
        metric: similarity of the top-k search: ``'cosine'`` (codes are unit-normalised),
            ``'dot'`` or ``'l2'``.
        aggregate: ``'mean'`` (as the public code) or ``'sum'`` of the chosen codes.
        scale: ``'running'``, ``'learned'``, ``'match'``, ``'code'`` or ``'none'`` (see the module
            docstring).
        reconstruction: weight of the codebook loss ``|q - sg(x)|^2`` (the third output).
        commitment: weight of the commitment loss ``|sg(q) - x|^2`` (0 = off, the paper's default).
        code_gradient: the chosen codes also receive the downstream gradient (the public code's
            ``aeloss``); off by default (no gain on TokFSM at 400 and 600 CPU steps, seed 0).
        ema: update the codes as running means of their inputs instead of by gradient.
        replace_dead, replace_every: re-seed codes not chosen in ``replace_every`` training steps.
        kmeans_init, kmeans_iter: codes from k-means over the first training batch (or call
            :meth:`init_codes` on activations you choose).
        seed: seeds initial codes, dead-code replacement and k-means.
        max_memory: cap in bytes on the search buffers (see ``cluster.nearest``).
    """

    def __init__(self, dim: int, num_codes: int, k: int = 1, metric: str = "cosine", **kwargs):
        if "num_codebooks" in kwargs:
            raise TypeError("CodebookLayer has one codebook; use GroupCodebookLayer for several")
        super().__init__(dim, num_codes, k, metric, num_codebooks=1, **kwargs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x: (..., dim)`` -> ``(out (..., dim), ids (..., k), loss ())``; add ``loss`` to the training loss."""
        out, ids, loss = self._codes_forward(x)
        return out, ids.squeeze(-2), loss


class GroupCodebookLayer(_Codebooks):
    """``num_codebooks`` codebooks, one per slice of the features (e.g. one per attention head):
    ``x: (..., dim) -> (out (..., dim), ids (..., num_codebooks, k), loss ())``. Other arguments as
    :class:`CodebookLayer`; ``dim`` must be divisible by ``num_codebooks``. ``num_groups`` is the
    earlier name of ``num_codebooks`` and still accepted."""

    def __init__(self, dim: int, num_codebooks: int | None = None, num_codes: int | None = None, k: int = 1,
                 metric: str = "cosine", *, num_groups: int | None = None, **kwargs):
        if num_groups is not None:
            if num_codebooks is not None and num_codebooks != num_groups:
                raise ValueError(f"num_groups={num_groups} and num_codebooks={num_codebooks}: give one "
                                 "(num_groups is the earlier name of num_codebooks)")
            num_codebooks = num_groups
        if num_codebooks is None or num_codes is None:
            raise TypeError("GroupCodebookLayer: expected num_codebooks and num_codes, e.g. "
                            "GroupCodebookLayer(dim=64, num_codebooks=4, num_codes=512)")
        check_positive_int(num_codebooks, "num_codebooks")
        super().__init__(dim, num_codes, k, metric, num_codebooks=num_codebooks, **kwargs)

    @property
    def num_groups(self) -> int:
        """The earlier name of ``num_codebooks``."""
        return self.num_codebooks

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x: (..., dim)`` -> ``(out (..., dim), ids (..., num_codebooks, k), loss ())``."""
        return self._codes_forward(x)
