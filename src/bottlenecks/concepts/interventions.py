"""Test-time interventions: replace predicted concepts with true ones, one concept (or group) at a
time, in an order chosen by a policy, and record class accuracy after each step.

Policies: ``'random'`` (a fresh random order per sample, from ``seed``) and ``'uncertain'`` (most
uncertain first: the concept whose score lies nearest the middle of its calibrated off/on values,
per sample; for groups, the group's largest uncertainty).

Each step of a curve is one batched prediction over all samples, with a per-sample (n, C) mask of
the concepts intervened so far, however many distinct orders the policy produced.
"""

from __future__ import annotations

import numpy as np
import torch

from ..validation import as_tensor, check_choice

__all__ = ["intervention_curve", "intervention_order", "masked_predictor"]

POLICIES = ("random", "uncertain")


def _units(model, groups) -> list[list[int]]:
    """The intervention units: single concepts, or the concept columns of each group."""
    if groups is None:
        return [[j] for j in range(model.n_concepts)]
    if isinstance(groups, dict):
        groups = list(groups.values())
    return [model.concept_indices(g) for g in groups]


def intervention_order(model, Z, policy: str = "random", *, groups=None, seed: int = 0) -> torch.Tensor:
    """(n, U) order of intervention units per sample (a unit is a concept, or a group of them)."""
    check_choice(policy, "policy", POLICIES)
    units = _units(model, groups)
    n = len(as_tensor(Z, "Z"))
    if policy == "random":
        g = torch.Generator().manual_seed(int(seed))
        return torch.stack([torch.randperm(len(units), generator=g) for _ in range(n)])
    u = model.concept_uncertainty(Z)  # (n, C)
    per_unit = torch.stack([u[:, cols].max(1).values for cols in units], dim=1)  # (n, U)
    return per_unit.argsort(dim=1, descending=True, stable=True)


def intervention_curve(model, Z, y, true_concepts, *, policy: str = "random", groups=None, max_steps=None,
                       seed: int = 0) -> dict:
    """Accuracy vs number of intervened units (0..U): Z (n, d), y (n,), true_concepts (n, C) in {0, 1}.

    One batched prediction per step, whatever the per-sample orders (see :func:`masked_predictor`).
    Returns ``{"policy", "n_intervened": [0, 1, ...], "accuracy": [...], "units": [[names], ...]}``.
    """
    y = np.asarray(y)
    Z = as_tensor(Z, "Z")
    C_true = as_tensor(true_concepts, "true_concepts").double()
    if C_true.shape != (len(y), model.n_concepts):
        raise ValueError(f"true_concepts: expected shape ({len(y)}, {model.n_concepts}), got {tuple(C_true.shape)}")
    units = _units(model, groups)
    order = intervention_order(model, Z, policy, groups=groups, seed=seed)
    steps = len(units) if max_steps is None else min(int(max_steps), len(units))
    predict = masked_predictor(model, Z, C_true)
    # unit_mask[u]: the concept columns of unit u, so a step's per-sample mask is one gather
    unit_mask = torch.zeros(len(units), model.n_concepts, dtype=torch.bool)
    for u, cols in enumerate(units):
        unit_mask[u, cols] = True
    mask = torch.zeros(len(y), model.n_concepts, dtype=torch.bool)
    acc = [model.score(Z, y)]
    for step in range(steps):
        mask |= unit_mask[order[:, step]]
        acc.append(float((model.classes_[predict(mask).numpy()] == y).mean()))
    return {"policy": policy, "n_intervened": list(range(steps + 1)), "accuracy": acc,
            "units": [[model.concepts[j] for j in cols] for cols in units]}


def masked_predictor(model, Z, C_true):
    """A function ``mask (n, C) bool -> (n,) predicted class indices`` with each sample's masked
    concepts set to their true values ``C_true`` (n, C): one batched call per mask.

    Concept-score heads: the scores are computed once and the masked entries replaced by the
    calibrated on/off values (``torch.where``), exactly what :meth:`intervene` does per concept set.
    Energy head: ``EnergyCBM.predict_proba`` takes the per-sample mask and values directly.
    """
    return model._backend.masked_predictor(model, model._input(Z), C_true.double())
