"""Saving a module the project's way: ``path.safetensors`` (its tensors) + ``path.json`` (what
rebuilds it). Loading stays with each class, which knows how to rebuild itself from the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn


def save_module(module: nn.Module, path, meta: dict, indent: int | None = 2,
                extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``module.state_dict()`` (plus the ``extra`` tensors, e.g. a generator's state) to
    ``path.safetensors`` as contiguous CPU copies and ``meta`` to ``path.json``; the parent folder
    is created. ``path``'s own suffix, if any, is replaced."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = dict(module.state_dict(), **(extra or {}))
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path.with_suffix(".safetensors")))
    path.with_suffix(".json").write_text(json.dumps(meta, indent=indent))
