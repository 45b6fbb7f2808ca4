"""Global edits of a concept head: scale (remove with scale 0, or down-weight) the weight of a
concept for some classes or all, optionally renormalising each edited class's row.

An edit never touches the fitted head: it changes a (K, C) multiplier ``edit_scale`` applied to the
head's class-concept weights, so ``undo`` restores the previous multiplier object exactly
(bit-identical) and the fitted weights stay available for comparison.

Renormalising keeps each edited class's L1 weight mass, as PCBM's "prune and normalise" edit does,
so the class does not lose evidence overall when a concept's weight goes or shrinks: the concepts
left untouched in that row are scaled by ``(|row before|_1 - |edited part after|_1) / |untouched part|_1``,
so that edited part plus rescaled rest add up to the mass before. A row whose untouched part is all
zero, or whose edited part alone already carries at least the mass before (scale > 1), is left as
the scale made it.
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
            edited = (new[k, cols] * weight[k, cols]).abs().sum()
            rest = (new[k, others] * weight[k, others]).abs().sum()
            if rest > 0 and before > edited:
                new[k, others] *= (before - edited) / rest
    return new


def describe_edit(concepts: list[str], classes: list[str] | None, scale: float, renormalize: bool) -> dict:
    """The JSON-able log entry of one edit."""
    op = "remove" if scale == 0 else "scale"
    return {"op": op, "concepts": list(concepts), "classes": "all" if classes is None else list(classes),
            "scale": float(scale), "renormalize": bool(renormalize)}
