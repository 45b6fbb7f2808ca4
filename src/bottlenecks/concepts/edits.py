"""Global edits of a concept head: scale (remove with scale 0, or down-weight) the weight of a
concept for some classes or all, optionally renormalising each edited class's row.

An edit never touches the fitted head: it changes a (K, C) multiplier ``edit_scale`` applied to the
head's class-concept weights, so ``undo`` restores the previous multiplier object exactly
(bit-identical) and the fitted weights stay available for comparison.

Renormalising keeps each edited class's L1 weight mass: the concepts left untouched in that row are
scaled up by ``|row before|_1 / |row after|_1``, as PCBM's "prune and normalise" edit does, so the
class does not lose evidence overall when one concept's weight goes.
"""

from __future__ import annotations

import torch

__all__ = ["apply_edit", "describe_edit"]


def apply_edit(edit_scale: torch.Tensor, weight: torch.Tensor, concepts: list[int], classes: list[int],
               scale: float, renormalize: bool) -> torch.Tensor:
    """New (K, C) multiplier after scaling ``weight[classes][:, concepts]`` by ``scale``.

    edit_scale: (K, C) current multiplier; weight: (K, C) the head's fitted weights.
    """
    new = edit_scale.clone()
    rows = torch.as_tensor(classes, dtype=torch.long)
    cols = torch.as_tensor(concepts, dtype=torch.long)
    new[rows[:, None], cols[None, :]] *= scale
    if renormalize:
        others = torch.ones(weight.shape[1], dtype=torch.bool)
        others[cols] = False
        for k in classes:
            before = (edit_scale[k] * weight[k]).abs().sum()
            after = (new[k] * weight[k]).abs().sum()
            rest = (new[k, others] * weight[k, others]).abs().sum()
            if after > 0 and rest > 0:
                new[k, others] *= before / after
    return new


def describe_edit(concepts: list[str], classes: list[str] | None, scale: float, renormalize: bool) -> dict:
    """The JSON-able log entry of one edit."""
    op = "remove" if scale == 0 else "scale"
    return {"op": op, "concepts": list(concepts), "classes": "all" if classes is None else list(classes),
            "scale": float(scale), "renormalize": bool(renormalize)}
