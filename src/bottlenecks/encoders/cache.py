"""On-disk feature cache: ``<root>/<key>.safetensors``, where the key is a SHA-256 of everything
that decides the features (encoder name and config, data set, split, transform, a fingerprint
of the data itself, and the cache format version). A change in any of them is a new key, so a
stale file is never served; the fields are also stored in the file and checked on load.

>>> cache = FeatureCache()                      # $BOTTLENECKS_CACHE or ~/.cache/bottlenecks/features
>>> feats = cache.get_or_compute(get_encoder("pixels"), ds.images, ds.name, ds.split)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .registry import Encoder

__all__ = ["CACHE_ENV", "FORMAT_VERSION", "FeatureCache", "default_cache_dir", "fingerprint"]

CACHE_ENV = "BOTTLENECKS_CACHE"
FORMAT_VERSION = 1
_META = "bottlenecks.features"


def default_cache_dir() -> Path:
    """``$BOTTLENECKS_CACHE`` if set, else ``~/.cache/bottlenecks/features``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bottlenecks" / "features"


def fingerprint(data) -> str:
    """SHA-1 of shape, dtype and raw bytes of an array or tensor (or of a list of strings).

    The same values give the same fingerprint as a NumPy array or as a tensor on any device;
    contiguous memory is hashed in place, without a copy."""
    h = hashlib.sha1()
    if isinstance(data, (list, tuple)) and all(isinstance(s, str) for s in data):
        h.update(b"str-list\0")
        h.update(json.dumps(list(data), ensure_ascii=False).encode("utf-8"))
        return h.hexdigest()
    if isinstance(data, torch.Tensor):
        t = data.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:  # NumPy has no bfloat16: hash its bits
            dtype, arr = "bfloat16", t.view(torch.int16).numpy()
        else:
            arr = t.numpy()
            dtype = arr.dtype.str
    else:
        arr = np.ascontiguousarray(np.asarray(data))
        if arr.dtype == object:
            raise TypeError("fingerprint: expected a numeric array, a tensor or a list of str, got an object array")
        dtype = arr.dtype.str
    h.update(f"{tuple(arr.shape)}|{dtype}|".encode())
    h.update(memoryview(arr.reshape(-1).view(np.uint8)))
    return h.hexdigest()


def _canonical(obj) -> str:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"cache key fields must be JSON-able (str, numbers, bool, None, lists, dicts): {err}") from err


def _distributed() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class FeatureCache:
    """Features of (encoder, data) pairs on disk, as safetensors files written atomically."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    fingerprint = staticmethod(fingerprint)

    def fields(self, encoder: Encoder, dataset_id: str, split: str, transform=None,
               data_fingerprint: str = "") -> dict:
        """The key fields, as stored in each file's metadata."""
        for value, what in ((dataset_id, "dataset_id"), (split, "split"), (data_fingerprint, "data_fingerprint")):
            if not isinstance(value, str):
                raise TypeError(f"{what}: expected a str, got {type(value).__name__}")
        if transform is not None and not isinstance(transform, (str, dict)):
            raise TypeError(f"transform: expected a str, a dict or None, got {type(transform).__name__}")
        return {"format": FORMAT_VERSION, "encoder": encoder.name, "config": encoder.config,
                "dataset": dataset_id, "split": split, "transform": transform, "data": data_fingerprint}

    def key(self, encoder: Encoder, dataset_id: str, split: str, transform, data_fingerprint: str) -> str:
        """SHA-256 (hex) of the canonical JSON of the key fields."""
        text = _canonical(self.fields(encoder, dataset_id, split, transform, data_fingerprint))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def load(self, key: str, fields: dict | None = None) -> torch.Tensor | None:
        """The cached features for ``key``, or None when absent, unreadable or (given ``fields``)
        written for other fields."""
        from safetensors import safe_open

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                stored = (f.metadata() or {}).get(_META)
                feats = f.get_tensor("features")
        except Exception as err:  # a truncated or foreign file: recompute rather than fail
            warnings.warn(f"ignoring unreadable feature cache file {path}: {err}", RuntimeWarning, stacklevel=3)
            return None
        if fields is not None and stored != _canonical(fields):
            warnings.warn(f"ignoring feature cache file {path}: its metadata does not match the request",
                          RuntimeWarning, stacklevel=3)
            return None
        return feats

    def save(self, key: str, features: torch.Tensor, fields: dict) -> Path:
        """Write ``features`` to ``<key>.safetensors`` through a temporary file in the same folder
        and ``os.replace``, so readers see the whole old file, the whole new one, or none."""
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path(key)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{key}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file({"features": features.detach().cpu().contiguous()}, tmp,
                      metadata={_META: _canonical(fields), "format": str(FORMAT_VERSION)})
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return final

    def get_or_compute(self, encoder: Encoder, inputs, dataset_id: str, split: str, transform=None,
                       **encode_kwargs) -> torch.Tensor:
        """Cached ``encoder.encode(inputs, **encode_kwargs)``: (n, D) float32.

        ``dataset_id`` and ``split`` name the data, ``transform`` (str or JSON-able dict) describes
        any preprocessing applied to ``inputs`` before this call; the data's content is
        fingerprinted too. ``encode_kwargs`` (batch size, progress, distributed) do not change
        the features and are not part of the key. Under ``torchrun`` every rank must call this
        together: they agree on hit or miss, encode their shards, and rank 0 writes the file.
        """
        fields = self.fields(encoder, dataset_id, split, transform, self.fingerprint(inputs))
        key = hashlib.sha256(_canonical(fields).encode("utf-8")).hexdigest()
        feats = self.load(key, fields)
        sharded = _distributed() and encode_kwargs.get("distributed", None) is not False
        if sharded:  # a miss on any rank means every rank takes part in encoding
            hit = torch.tensor([1 if feats is not None else 0], dtype=torch.long)
            if torch.distributed.get_backend() == "nccl":
                hit = hit.cuda()
            torch.distributed.all_reduce(hit, op=torch.distributed.ReduceOp.MIN)
            if int(hit.item()) == 0:
                feats = None
        if feats is not None:
            return feats
        feats = encoder.encode(inputs, **encode_kwargs)
        if not sharded or torch.distributed.get_rank() == 0:
            self.save(key, feats, fields)
        if sharded:  # the file exists for every rank once any rank returns
            torch.distributed.barrier()
        return feats

    def encode_dataset(self, encoder: Encoder, dataset, transform=None, **encode_kwargs) -> torch.Tensor:
        """Features of an :class:`~bottlenecks.data.ImageDataset` (its ``images``, ``name``, ``split``)."""
        return self.get_or_compute(encoder, dataset.images, dataset.name, dataset.split, transform, **encode_kwargs)

    def clear(self) -> int:
        """Delete every cached feature file; returns how many were removed."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for p in self.root.glob("*.safetensors"):
            p.unlink()
            removed += 1
        return removed

    def __repr__(self) -> str:
        return f"FeatureCache(root={str(self.root)!r})"
