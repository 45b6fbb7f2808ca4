"""The :class:`Encoder` base (batched, frozen, progress bar, sharded under ``torchrun``) and the
name -> factory registry behind :func:`get_encoder`.

A family that needs a model name is registered with ``parametrized=True`` and looked up as
``"<family>:<model>"``: ``get_encoder("timm:resnet18")`` calls the ``timm`` factory with
``"resnet18"`` as its first argument.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..progress import track
from ..validation import as_tensor, check_finite, check_float, check_nonempty, check_positive_int

__all__ = ["Encoder", "available_encoders", "get_encoder", "register_encoder", "shard_bounds"]


def shard_bounds(n: int, world: int, rank: int) -> tuple[int, int]:
    """Contiguous shard [start, stop) of ``n`` rows for ``rank``: the first ``n % world`` ranks
    get one row more (the same split as ``torch.tensor_split``)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _world() -> tuple[int, int]:
    """(rank, world_size) of the default process group, (0, 1) when there is none."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _collective_device() -> torch.device:
    """NCCL moves CUDA tensors only; every other backend (gloo, mpi) takes CPU tensors."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_gather_rows(local: torch.Tensor, world: int) -> torch.Tensor:
    """Concatenate every rank's (n_r, D) block in rank order; blocks may differ in n_r (even 0).

    all_gather needs equal shapes, so each block is zero-padded to the largest n_r and trimmed
    after the gather."""
    dist = torch.distributed
    device = _collective_device()
    rows = local.shape[0]
    meta = torch.tensor([rows, local.shape[1] if rows else -1], dtype=torch.long, device=device)
    metas = [torch.empty_like(meta) for _ in range(world)]
    dist.all_gather(metas, meta)
    sizes = [int(m[0]) for m in metas]
    dims = {int(m[1]) for m in metas if int(m[0]) > 0}
    if len(dims) != 1:
        raise RuntimeError(f"ranks produced features of different widths {sorted(dims)}; expected one width")
    d = dims.pop()
    padded = torch.zeros(max(sizes), d, dtype=torch.float32, device=device)
    if rows:
        padded[:rows] = local.to(device)
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:s] for g, s in zip(gathered, sizes, strict=True)]).cpu()


class Encoder:
    """A frozen map from inputs to feature rows.

    ``name`` and ``config`` (JSON-able; everything that changes the output, nothing that does
    not, such as the device or batch size) identify the features for the cache. Subclasses
    implement :meth:`_encode_batch` and, when their inputs are not images, :meth:`_prepare`.
    """

    name: str = "encoder"
    modality: str = "image"  # "image": array (n, ...) of floats; "text": list of str

    def __init__(self, name: str | None = None, config: dict | None = None, device=None):
        if name is not None:
            self.name = name
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name: expected a non-empty str, got {self.name!r}")
        self.config = dict(config or {})
        try:
            json.dumps(self.config, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise TypeError(f"config of encoder {self.name!r} must be JSON-able (str, numbers, bool, None, "
                            f"lists, dicts with str keys), got {self.config!r}: {err}") from err
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    # -- for subclasses ----------------------------------------------------------------------
    def _prepare(self, inputs):
        """Validate and convert the whole input once; the result must support len() and slicing."""
        x = check_float(as_tensor(inputs, "inputs"), "inputs")
        if x.dim() < 2:
            raise ValueError(f"inputs: expected images of shape (n, H, W) or (n, C, H, W), got shape "
                             f"{tuple(x.shape)}; wrap a single image as x[None]")
        check_nonempty(x, "inputs")
        return check_finite(x, "inputs")

    def _encode_batch(self, batch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def modules(self) -> list[torch.nn.Module]:
        """The torch modules this encoder runs; put in eval mode before every encode."""
        return []

    # -- public ------------------------------------------------------------------------------
    def to(self, device) -> Encoder:
        self.device = torch.device(device)
        for m in self.modules():
            m.to(self.device)
        return self

    def encode(self, inputs, batch_size: int = 256, progress: bool | None = None,
               distributed: bool | None = None) -> torch.Tensor:
        """inputs: (n, ...) images or a list of n strings -> (n, D) float32 features on the CPU.

        Runs in eval mode under ``torch.no_grad`` in batches of ``batch_size``, showing its
        progress as ``progress`` says (:mod:`bottlenecks.progress`: None, a bar on a terminal;
        True, also plain lines in a log; False, nothing). Under
        ``torchrun`` (an initialised process group with more than one process; ``distributed=None``
        detects it, ``False`` turns it off) each rank encodes a contiguous shard and every rank
        returns all n rows, in order.
        """
        batch_size = check_positive_int(batch_size, "batch_size")
        data = self._prepare(inputs)
        n = len(data)
        rank, world = _world()
        if distributed and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise RuntimeError("distributed=True needs an initialised process group: call "
                               "torch.distributed.init_process_group first (torchrun sets up its environment)")
        sharded = world > 1 and distributed is not False
        start, stop = shard_bounds(n, world, rank) if sharded else (0, n)
        local = self._encode_range(data, start, stop, batch_size, progress if rank == 0 else False)
        return _all_gather_rows(local, world) if sharded else local

    def _encode_range(self, data, start: int, stop: int, batch_size: int, progress) -> torch.Tensor:
        for m in self.modules():
            m.eval()
        result = torch.empty(0, 0)  # filled batch by batch once the first one gives the width
        with torch.no_grad():
            for i in track(range(start, stop, batch_size), f"encode {self.name} (batches of {batch_size})",
                           progress=progress, leave=False):
                batch = data[i:min(i + batch_size, stop)]
                out = self._encode_batch(batch)
                if not isinstance(out, torch.Tensor) or out.shape[0] != len(batch):
                    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    raise RuntimeError(f"encoder {self.name!r} returned {got} for a batch of {len(batch)} "
                                       "inputs; expected a tensor with one row per input")
                out = out.detach().reshape(len(batch), -1)
                if i == start:
                    result = torch.empty(stop - start, out.shape[1], dtype=torch.float32)
                elif out.shape[1] != result.shape[1]:
                    raise RuntimeError(f"encoder {self.name!r} returned {out.shape[1]} features for inputs "
                                       f"{i}..{i + len(batch) - 1} but {result.shape[1]} before; expected one width")
                result[i - start:i - start + len(batch)] = out
        return result

    def __call__(self, inputs, **kwargs) -> torch.Tensor:
        return self.encode(inputs, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, config={self.config!r}, device={str(self.device)!r})"


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., Encoder] | Encoder
    parametrized: bool
    usage: str


_REGISTRY: dict[str, _Entry] = {}


def register_encoder(name: str, factory, *, parametrized: bool = False, usage: str | None = None,
                     overwrite: bool = False) -> None:
    """Make ``get_encoder(name, **config)`` call ``factory(**config)`` (or return ``factory``
    itself when it is an :class:`Encoder` instance). With ``parametrized=True`` the encoder is
    looked up as ``"name:<model>"`` and the factory gets ``"<model>"`` as its first argument."""
    if not isinstance(name, str) or not name.strip() or ":" in name:
        raise ValueError(f"name: expected a non-empty str without ':', got {name!r}")
    if not (isinstance(factory, Encoder) or callable(factory)):
        raise TypeError(f"factory: expected a callable returning an Encoder or an Encoder, "
                        f"got {type(factory).__name__}")
    if isinstance(factory, Encoder) and parametrized:
        raise ValueError("an Encoder instance cannot be parametrized; register a factory instead")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"an encoder named {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = _Entry(factory, parametrized, usage or (f"{name}:<model>" if parametrized else name))


def available_encoders() -> list[str]:
    """Registered names, sorted; parametrized ones are used as ``"name:<model>"``."""
    return sorted(_REGISTRY)


def _known() -> str:
    return ", ".join(_REGISTRY[k].usage for k in sorted(_REGISTRY))


def get_encoder(name: str, *, device=None, **config) -> Encoder:
    """Build the encoder registered as ``name`` (``"family:<model>"`` for parametrized families)
    with ``config``; ``device`` is where it runs and is not part of its config."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected an encoder name (str), got {type(name).__name__}")
    family, sep, model = name.partition(":")
    entry = _REGISTRY.get(family)
    if entry is None:
        raise ValueError(f"unknown encoder {name!r}; known encoders: {_known()}")
    if entry.parametrized and not model:
        raise ValueError(f"encoder {family!r} needs a model name: {entry.usage!r}")
    if not entry.parametrized and sep:
        raise ValueError(f"encoder {family!r} takes no model name, got {name!r}; use {entry.usage!r}")
    if isinstance(entry.factory, Encoder):
        if config:
            raise ValueError(f"encoder {name!r} was registered as a built instance and takes no config, "
                             f"got {sorted(config)}")
        enc = entry.factory
        return enc.to(device) if device is not None else enc
    kwargs = dict(copy.deepcopy(config))
    if device is not None:
        kwargs["device"] = device
    enc = entry.factory(model, **kwargs) if entry.parametrized else entry.factory(**kwargs)
    if not isinstance(enc, Encoder):
        raise TypeError(f"the factory registered as {family!r} returned {type(enc).__name__}, expected an Encoder")
    return enc


def _check_sequence_of_str(inputs, name: str = "inputs") -> list[str]:
    if isinstance(inputs, str):
        raise TypeError(f"{name}: expected a list of strings, got a single str; wrap it as [{name}]")
    if not isinstance(inputs, Sequence) and not hasattr(inputs, "tolist"):
        raise TypeError(f"{name}: expected a list of strings, got {type(inputs).__name__}")
    items = list(inputs.tolist() if hasattr(inputs, "tolist") else inputs)
    bad = [type(s).__name__ for s in items if not isinstance(s, str)]
    if bad:
        raise TypeError(f"{name}: expected a list of strings, found {bad[0]} items")
    if not items:
        raise ValueError(f"{name}: expected at least 1 string, got an empty list")
    return items
