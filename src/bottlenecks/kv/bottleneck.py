"""The discrete key-value bottleneck (Träuble et al., "Discrete Key-Value Bottleneck", ICML 2023).

    x (batch, dim_in)
      -> C fixed projections            z: (batch, C, dim_key)
      -> nearest frozen key per head    idx: (batch, C, topk)         (cluster.nearest, batched)
      -> the values of those keys       out: (batch, C, dim_value)    (the only trained tensor)

Keys are buffers: fitted on unlabelled data (k-means with the cluster engine, or EMA), then
frozen; never touched by gradient. Values start at zero and each input only reaches the values
of the keys it selects, so learning a new class barely disturbs the others. At evaluation,
keys never selected during value training are masked out, so every lookup lands on a trained key.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import Checkpointable, corrupt, load_state, read_tensors
from ..cluster import kmeans, nearest
from ..cluster.maintenance import code_hits, dead_fraction, ema_update_, reseed_, sample_rows
from ..cluster.small_d import rows_add_
from ..progress import track
from ..validation import as_tensor, check_choice, check_finite, check_positive_int

PROJECTIONS = ("random", "chunk", "learned")
KEY_INITS = ("kmeans", "ema", "random")


def _is_batches(data) -> bool:
    """A list whose items are batches (tensors or ``(x, y, ...)`` tuples), not rows of numbers."""
    first = data[0]
    return isinstance(first, (torch.Tensor, tuple)) or (
        isinstance(first, list) and len(first) > 0 and isinstance(first[0], torch.Tensor))


def iterate_batches(data, batch_size: int = 256, name: str = "data") -> Iterable[torch.Tensor]:
    """Yield input tensors from a tensor or NumPy array / nested list of numbers (in order,
    ``batch_size`` rows at a time), a DataLoader or any iterable of tensors / ``(x, y, ...)``
    tuples (the first element is the input)."""
    if data is None or isinstance(data, (str, bytes, dict)) or not hasattr(data, "__iter__"):
        raise TypeError(f"{name}: expected a tensor (n, dim_in), a NumPy array, a DataLoader or an iterable of "
                        f"batches, got {type(data).__name__}")
    if not isinstance(data, torch.Tensor) and (isinstance(data, np.ndarray)
                                               or (isinstance(data, list) and (not data or not _is_batches(data)))):
        data = as_tensor(data, name)
    if isinstance(data, torch.Tensor):
        for s in range(0, len(data), batch_size):
            yield data[s:s + batch_size]
        return
    for batch in data:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


class DiscreteKeyValueBottleneck(nn.Module, Checkpointable):
    """``(batch, dim_in) -> (batch, num_codebooks, dim_value)`` and the key indices
    ``(batch, num_codebooks, topk)``.

    Args:
        dim_in: size of the (frozen) encoder's embedding.
        num_codebooks: ``C``, the number of heads, each with its own projection and keys.
        keys_per_codebook: ``K``.
        dim_key: size of each head's projection (default 14; ``dim_in / C`` for ``'chunk'``).
        dim_value: size of each value; with the non-parametric ``'mean'`` decoder, the number
            of classes.
        topk: keys fetched per head; their values are summed.
        projection: ``'random'`` (one fixed Gaussian matrix per head, unit-norm columns, as the
            paper's code), ``'chunk'`` (head ``c`` takes the ``c``-th slice of the embedding, the
            paper's older variant) or ``'learned'`` (a parameter, initialised as ``'random'``; no
            gradient reaches it through the key lookup, so train it with your own objective).
        key_init: default method of :meth:`fit_keys`: ``'kmeans'`` (the cluster engine),
            ``'ema'`` (running means over epochs, with dead-key re-seeding) or ``'random'``
            (random projected samples).
        ema_decay: decay of the EMA key statistics.
        dead_key_threshold: during EMA fitting, keys whose running count falls below this are
            re-seeded from batch samples and their statistics reset.
        seed: seeds the projection and key initialisation.
        max_memory: cap in bytes on the distance buffers of one lookup (see ``cluster.nearest``).
    """

    def __init__(self, dim_in: int, num_codebooks: int = 256, keys_per_codebook: int = 4096,
                 dim_key: int | None = None, dim_value: int = 10, topk: int = 1, projection: str = "random",
                 key_init: str = "kmeans", ema_decay: float = 0.95, dead_key_threshold: float = 1e-2,
                 seed: int = 0, max_memory: int | None = None):
        super().__init__()
        check_positive_int(dim_in, "dim_in")
        check_positive_int(num_codebooks, "num_codebooks")
        check_positive_int(keys_per_codebook, "keys_per_codebook")
        check_positive_int(dim_value, "dim_value")
        check_positive_int(topk, "topk")
        check_choice(projection, "projection", PROJECTIONS)
        check_choice(key_init, "key_init", KEY_INITS)
        if topk > keys_per_codebook:
            raise ValueError(f"topk={topk} is larger than keys_per_codebook={keys_per_codebook}; "
                             "expected topk <= keys_per_codebook")
        if projection == "chunk":
            if dim_in % num_codebooks:
                raise ValueError(f"projection='chunk' splits the embedding into num_codebooks slices: "
                                 f"dim_in={dim_in} is not divisible by num_codebooks={num_codebooks}")
            if dim_key not in (None, dim_in // num_codebooks):
                raise ValueError(f"projection='chunk' fixes dim_key = dim_in / num_codebooks = "
                                 f"{dim_in // num_codebooks}, got dim_key={dim_key}")
            dim_key = dim_in // num_codebooks
        dim_key = 14 if dim_key is None else check_positive_int(dim_key, "dim_key")
        if not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay: expected a number in (0, 1), got {ema_decay}")
        self.dim_in, self.num_codebooks, self.keys_per_codebook = dim_in, num_codebooks, keys_per_codebook
        self.dim_key, self.dim_value, self.topk = dim_key, dim_value, topk
        self.projection_kind, self.key_init = projection, key_init
        self.ema_decay, self.dead_key_threshold = ema_decay, dead_key_threshold
        self.seed, self.max_memory = seed, max_memory

        C, K = num_codebooks, keys_per_codebook
        shape = (C, dim_in, dim_key)
        if projection == "learned":
            self.projection = nn.Parameter(torch.empty(shape))
        elif projection == "random":
            self.register_buffer("projection", torch.empty(shape))
        else:
            self.register_buffer("projection", None)
        self.register_buffer("keys", torch.empty(C, K, dim_key))
        self.register_buffer("key_counts", torch.zeros(C, K))  # EMA statistics while fitting
        self.register_buffer("key_sums", torch.zeros(C, K, dim_key))
        self.register_buffer("value_usage", torch.zeros(C, K, dtype=torch.long))  # selections in training
        self.register_buffer("keys_ready", torch.tensor(False))
        self.register_buffer("keys_frozen", torch.tensor(False))
        self.values = nn.Parameter(torch.zeros(C, K, dim_value))
        self.mask_untrained = True
        self.reset_parameters()

    # ------------------------------------------------------------------ state
    def reset_parameters(self) -> None:
        """Projection and keys drawn again from ``seed``; values and all statistics reset."""
        g = torch.Generator().manual_seed(self.seed)
        if self.projection is not None:
            p = torch.randn(self.projection.shape, generator=g)
            with torch.no_grad():
                self.projection.copy_(p / p.norm(dim=1, keepdim=True))  # unit-norm columns
        with torch.no_grad():
            self.keys.copy_(torch.randn(self.keys.shape, generator=g))
        self.key_counts.zero_()
        self.key_sums.zero_()
        self.keys_ready.fill_(False)
        self.keys_frozen.fill_(False)
        self.reset_values()

    def reset_values(self) -> None:
        """Values back to zero and the record of which keys were trained cleared."""
        with torch.no_grad():
            self.values.zero_()
        self.value_usage.zero_()

    def extra_repr(self) -> str:
        return (f"dim_in={self.dim_in}, num_codebooks={self.num_codebooks}, "
                f"keys_per_codebook={self.keys_per_codebook}, dim_key={self.dim_key}, "
                f"dim_value={self.dim_value}, topk={self.topk}, projection={self.projection_kind!r}, "
                f"keys_ready={bool(self.keys_ready)}, keys_frozen={bool(self.keys_frozen)}")

    def config(self) -> dict:
        return {"dim_in": self.dim_in, "num_codebooks": self.num_codebooks,
                "keys_per_codebook": self.keys_per_codebook, "dim_key": self.dim_key,
                "dim_value": self.dim_value, "topk": self.topk, "projection": self.projection_kind,
                "key_init": self.key_init, "ema_decay": self.ema_decay,
                "dead_key_threshold": self.dead_key_threshold, "seed": self.seed, "max_memory": self.max_memory}

    # ------------------------------------------------------------------ lookup
    def _check_input(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor of shape (batch, {self.dim_in}), got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.dim_in:
            raise ValueError(f"{name}: expected shape (batch, dim_in={self.dim_in}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")
        check_finite(x, name)
        if x.dtype != self.keys.dtype and x.numel():  # the cast below must not turn the data into inf or 0
            info, amax = torch.finfo(self.keys.dtype), float(x.abs().max())
            if amax > info.max / 1e6 or 0 < amax < info.tiny * 1e6:
                raise ValueError(f"{name}: {x.dtype} values of magnitude up to {amax:.3g} do not fit the bottleneck's "
                                 f"{self.keys.dtype}; rescale {name} or convert the bottleneck, e.g. "
                                 f"bottleneck.to({x.dtype})")
        return x

    def project(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """``(batch, dim_in) -> (batch, C, dim_key)``; ``name`` is the argument named in errors."""
        x = self._check_input(x, name).to(self.keys.dtype)
        if self.projection is None:  # chunk
            return x.reshape(len(x), self.num_codebooks, self.dim_key)
        # one (dim_in, C * dim_key) GEMM: much faster than a batched einsum over heads; the fixed
        # projection's flat layout is kept while it is unchanged
        if isinstance(self.projection, nn.Parameter):
            flat = self.projection.permute(1, 0, 2).reshape(self.dim_in, -1)
        else:
            cached = getattr(self, "_flat_projection", None)
            if cached is None or cached[0] is not self.projection or cached[1] != self.projection._version:
                flat = self.projection.permute(1, 0, 2).reshape(self.dim_in, -1).contiguous()
                self._flat_projection = (self.projection, self.projection._version, flat)
            flat = self._flat_projection[2]
        return (x @ flat).view(len(x), self.num_codebooks, self.dim_key)

    def lookup(self, z: torch.Tensor, masked: bool = False) -> torch.Tensor:
        """Key indices ``(batch, C, topk)`` of projected inputs ``z: (batch, C, dim_key)``."""
        mask = self.eval_mask() if masked else None
        # the keys were checked when set; only z (checked via x in project) changes per call
        _, idx = nearest(z.detach(), self.keys, k=self.topk, mask=mask, max_memory=self.max_memory, validate=False)
        return idx

    def eval_mask(self) -> torch.Tensor:
        """The keys evaluation may select, ``(C, K)`` bool: those selected in training; a head none
        of whose keys was trained keeps all of them (they are all zero anyway). The same tensor
        object while the usage is unchanged, so the search reuses its prepared table."""
        cached = getattr(self, "_eval_mask", None)
        if cached is None or cached[0] != self.value_usage._version or cached[1].device != self.value_usage.device:
            trained = self.value_usage > 0
            self._eval_mask = (self.value_usage._version, trained | ~trained.any(dim=1, keepdim=True))
        return self._eval_mask[1]

    @torch.no_grad()
    def record_usage(self, idx: torch.Tensor) -> None:
        """Count the keys ``idx: (batch, C, topk)`` selected in training (``value_usage``)."""
        heads = torch.arange(self.num_codebooks, device=idx.device).view(1, -1, 1) * self.keys_per_codebook
        self.value_usage.view(-1).index_add_(0, (idx + heads).reshape(-1),
                                             torch.ones(idx.numel(), dtype=torch.long, device=idx.device))

    def forward(self, x: torch.Tensor, *, sparse_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x: (batch, dim_in)`` -> ``(values (batch, C, dim_value), indices (batch, C, topk), loss ())``,
        the quantisers' one convention; the keys are fixed, so the codebook loss is a zero scalar.

        In training mode the selected keys are recorded (``value_usage``); in eval mode keys
        never selected in training are masked out. The gradient reaches only the fetched values
        (an embedding lookup: gather forward, ``index_add`` backward; ``sparse_grad`` returns
        a sparse gradient instead)."""
        if not bool(self.keys_ready):
            raise RuntimeError("the keys are not fitted: call fit_keys(data) on unlabelled inputs first "
                               "(or freeze_keys() to use the random keys deliberately) — values trained "
                               "on unfitted keys give near-chance accuracy")
        z = self.project(x)
        idx = self.lookup(z, masked=not self.training and self.mask_untrained)
        if self.training and torch.is_grad_enabled():
            self.record_usage(idx)
        return self.fetch(idx, sparse_grad=sparse_grad), idx, x.new_zeros(())

    def fetch(self, idx: torch.Tensor, *, sparse_grad: bool = False) -> torch.Tensor:
        """Values of key indices ``(batch, C, topk)``, summed over ``topk``: ``(batch, C, dim_value)``."""
        C, K = self.num_codebooks, self.keys_per_codebook
        flat = idx + torch.arange(C, device=idx.device).view(1, C, 1) * K
        if not (self.values.requires_grad and torch.is_grad_enabled()):
            return F.embedding(flat, self.values.view(C * K, self.dim_value)).sum(dim=2)
        return _GatherRows.apply(self.values, flat, sparse_grad)

    # ------------------------------------------------------------------ keys
    @torch.no_grad()
    def fit_keys(self, data, epochs: int = 1, method: str | None = None, *, batch_size: int = 256,
                 kmeans_iter: int = 20, progress: bool = False) -> DiscreteKeyValueBottleneck:
        """Fit the keys on unlabelled ``data`` (a tensor ``(n, dim_in)``, a DataLoader, or an
        iterable of batches; labels in ``(x, y)`` tuples are ignored). Returns ``self``.

        ``'kmeans'``: exact k-means per head on the projected data, all heads in one batched
        call of the cluster engine, ``kmeans_iter`` Lloyd iterations from random rows
        (``epochs`` is unused);
        ``'ema'``: ``epochs`` passes of running-mean updates, re-seeding dead keys from batch
        samples and resetting their statistics; ``'random'``: random projected samples.
        """
        if bool(self.keys_frozen):
            raise RuntimeError("the keys are frozen: reset_parameters() to fit new ones")
        method = method or self.key_init
        check_choice(method, "method", KEY_INITS)
        check_positive_int(epochs, "epochs")
        g = torch.Generator().manual_seed(self.seed + 1)
        bar = _progress(progress)
        if method == "ema":
            self.key_counts.zero_()
            self.key_sums.zero_()
            first = True
            for _ in bar(range(epochs), desc="EMA keys"):
                seen = False
                for xb in iterate_batches(data, batch_size):
                    z = self.project(xb.to(self.keys.device), "data")
                    if first:  # start from samples, so no key begins far from the data
                        self._seed_keys(z, torch.ones_like(self.key_counts, dtype=torch.bool), g)
                        first = False
                    self._ema_step(z, g)
                    seen = True
                if not seen:
                    raise ValueError("fit_keys: the data yielded no batch (an exhausted iterator? "
                                     "pass a tensor or a DataLoader for several epochs)")
        else:
            parts = [self.project(xb.to(self.keys.device), "data") for xb in iterate_batches(data, batch_size)]
            if not parts or sum(len(p) for p in parts) == 0:
                raise ValueError("fit_keys: data holds no samples; expected unlabelled inputs (n, dim_in), n >= "
                                 f"keys_per_codebook={self.keys_per_codebook}")
            z = torch.cat(parts)
            K = self.keys_per_codebook
            if len(z) < K:
                raise ValueError(f"fit_keys: {len(z)} samples for {K} keys per codebook; "
                                 f"expected at least keys_per_codebook={K} samples")
            # the same random rows per head as one k-means per head would start from
            rows = torch.stack([torch.randperm(len(z), generator=g)[:K] for _ in range(self.num_codebooks)])
            init = z[rows.to(z.device), torch.arange(self.num_codebooks, device=z.device)[:, None]]  # (C, K, dk)
            if method == "random":
                self.keys.copy_(init)
            else:  # every head's exact k-means in one batched call (cluster.batched)
                res = kmeans(z, K, init=init, max_iter=kmeans_iter, tol=1e-4, progress=progress)
                self.keys.copy_(res.centroids.to(self.keys.dtype))
        self.keys_ready.fill_(True)
        return self

    @torch.no_grad()
    def set_keys(self, keys: torch.Tensor) -> DiscreteKeyValueBottleneck:
        """Use given keys ``(C, K, dim_key)`` (fitted elsewhere, or by hand); marks them fitted."""
        if tuple(keys.shape) != tuple(self.keys.shape):
            raise ValueError(f"keys: expected shape {tuple(self.keys.shape)}, got {tuple(keys.shape)}")
        check_finite(keys, "keys")
        self.keys.copy_(keys)
        self.keys_ready.fill_(True)
        return self

    def _seed_keys(self, z: torch.Tensor, which: torch.Tensor, g: torch.Generator) -> None:
        """Keys marked in ``which: (C, K)`` take random samples of ``z: (batch, C, dim_key)``;
        their running statistics restart from that sample."""
        reseed_(self.keys, which, sample_rows(z, which.shape[1], g), self.key_sums, self.key_counts)

    def _ema_step(self, z: torch.Tensor, g: torch.Generator) -> None:
        _, idx = nearest(z, self.keys, k=1, max_memory=self.max_memory)
        ema_update_(self.keys, self.key_sums, self.key_counts, z, idx, self.ema_decay)
        dead = self.key_counts < self.dead_key_threshold
        if bool(dead.any()):
            self._seed_keys(z, dead, g)

    def freeze_keys(self) -> DiscreteKeyValueBottleneck:
        """Freeze the keys for value training (warns if they were never fitted)."""
        if not bool(self.keys_ready):
            warnings.warn("freezing keys that were never fitted: they are random draws, and values "
                          "trained on them usually reach only near-chance accuracy; call fit_keys first",
                          RuntimeWarning, stacklevel=2)
        self.keys_ready.fill_(True)
        self.keys_frozen.fill_(True)
        return self

    @torch.no_grad()
    def key_usage(self, data=None, batch_size: int = 1024) -> dict:
        """How the keys are used: counts ``(C, K)`` and the dead fraction per head. Without
        ``data``: the selections made in value training; with it: the lookups of ``data``."""
        if data is None:
            counts = self.value_usage.clone()
        else:
            counts = torch.zeros_like(self.value_usage)
            for xb in iterate_batches(data, batch_size):
                counts += code_hits(self.lookup(self.project(xb.to(self.keys.device))), self.keys_per_codebook)
        dead = dead_fraction(counts).float()
        return {"counts": counts, "dead_fraction": dead, "mean_dead_fraction": float(dead.mean())}

    # ------------------------------------------------------------------ files
    # save_pretrained(dir) / from_pretrained(dir) come from Checkpointable (model.safetensors +
    # config.json); the switch mask_untrained is saved with them

    def _checkpoint_extra(self) -> tuple[dict, dict]:
        return {"mask_untrained": bool(self.mask_untrained)}, {}

    def _restore_extra(self, state: dict, tensors: dict) -> None:
        self.mask_untrained = bool(state.get("mask_untrained", True))

    def save(self, path) -> Path:
        """Alias of :meth:`save_pretrained` (``path`` is the folder)."""
        return self.save_pretrained(path)

    @classmethod
    def load(cls, path, device=None) -> DiscreteKeyValueBottleneck:
        """:meth:`from_pretrained`, which also reads the earlier single-file layout (one
        ``.safetensors`` file with the config in its metadata)."""
        path = Path(path)
        if path.is_dir() or not path.exists():
            return cls.from_pretrained(path, device)
        from safetensors import SafetensorError, safe_open

        name = cls.__name__
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError) as err:
            raise corrupt(path, name, f"unreadable safetensors: {err}") from None
        if meta.get("class") != name or "config" not in meta:
            raise corrupt(path, name, f"saved class {meta.get('class')!r}" if "class" in meta
                          else "no config in its metadata")
        try:
            module = cls(**json.loads(meta["config"]))
        except (TypeError, ValueError) as err:
            raise corrupt(path, name, f"its config is rejected: {err}") from None
        load_state(module, read_tensors(path, name), path, name)
        return module.to(device) if device is not None else module


class _GatherRows(torch.autograd.Function):
    """``values: (C, K, V)``, ``flat: (batch, C, topk)`` indices into the ``C * K`` rows ->
    ``(batch, C, V)``, the rows summed over ``topk``: ``F.embedding(flat, values.view(-1, V)).sum(2)``
    with a cheaper dense backward (and a sparse one that works on the 3-D parameter). The dense
    gradient is written by the compiled row scatter (``cluster.small_d.rows_add_``) into zeros
    from NumPy on CPU (``calloc`` with transparent huge pages): at a million rows, ``torch.zeros``
    and ``index_add_`` cost several times the scatter itself."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, flat: torch.Tensor, sparse: bool) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.shape, ctx.sparse = values.shape, sparse
        rows = values.reshape(-1, values.shape[-1])
        out = rows.index_select(0, flat.reshape(-1)).view(*flat.shape, rows.shape[1])
        return out.sum(dim=2) if flat.shape[2] > 1 else out.squeeze(2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (flat,) = ctx.saved_tensors
        C, K, V = ctx.shape
        src = grad.reshape(-1, V)
        if ctx.sparse:  # one (head, key) entry per fetched row, duplicates left to coalesce()
            per = flat.shape[2]
            f = flat.reshape(-1)
            rows = src.repeat_interleave(per, 0) if per > 1 else src
            return torch.sparse_coo_tensor(torch.stack([f // K, f % K]), rows, (C, K, V),
                                           check_invariants=False), None, None
        if grad.device.type == "cpu" and grad.dtype in (torch.float32, torch.float64):
            npdt = np.float32 if grad.dtype == torch.float32 else np.float64
            out = torch.from_numpy(np.zeros((C * K, V), npdt))
        else:
            out = grad.new_zeros(C * K, V)
        return rows_add_(out, flat, src).view(C, K, V), None, None


def _progress(progress: bool | None):
    """Loops shown as ``progress`` says (:mod:`bottlenecks.progress`)."""
    return lambda it, desc: track(it, desc, progress=progress, leave=False)


__all__ = ["DiscreteKeyValueBottleneck", "iterate_batches", "PROJECTIONS", "KEY_INITS"]
