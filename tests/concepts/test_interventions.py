"""Interventions: calibrated values, all-true equals the concept-to-class model, policies, curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cbm_problem import NAMES, make_problem

from bottlenecks.concepts import ConceptBottleneckModel, intervention_curve, intervention_order
from bottlenecks.concepts.interventions import masked_predictor


@pytest.fixture(scope="module")
def noisy():
    """Concepts hard to read (noise 2.5), so interventions have something to fix."""
    return make_problem(400, 0, noise=2.5), make_problem(300, 1, noise=2.5)


def test_on_off_values_are_training_percentiles(noisy):
    (Z, C, y), _ = noisy
    m = ConceptBottleneckModel(NAMES, head="linear", percentiles=(10, 90)).fit(Z, y, C)
    S = m.concept_scores(Z)
    assert torch.allclose(m.off_, torch.quantile(S, 0.1, dim=0))
    assert torch.allclose(m.on_, torch.quantile(S, 0.9, dim=0))
    Si = m.intervened_scores(Z[:5], ["c1", "c3"], [[1, 0]] * 5)
    assert torch.equal(Si[:, 1], m.on_[1].expand(5)) and torch.equal(Si[:, 3], m.off_[3].expand(5))
    assert torch.equal(Si[:, [0, 2]], S[:5][:, [0, 2]])


@pytest.mark.parametrize("head", ["glm", "linear", "sparse"])
def test_all_true_concepts_equal_the_head_on_true_concepts(noisy, head):
    (Z, C, y), (Zt, Ct, yt) = noisy
    m = ConceptBottleneckModel(NAMES, head=head, head_params={"epochs": 100} if head == "sparse" else None)
    m.fit(Z, y, C)
    p = m.intervene(Zt, NAMES, Ct)
    with torch.no_grad():
        true_scores = torch.where(torch.as_tensor(Ct) == 1, m.on_, m.off_)
        expected = torch.softmax(m.head_(m._standardise(true_scores)), dim=1)
    assert torch.allclose(p, expected, atol=1e-12)
    # the embedding no longer matters: any other Z gives the same answer
    assert torch.allclose(m.intervene(np.zeros_like(Zt), NAMES, Ct), p, atol=1e-12)
    if head != "sparse":
        assert (p.argmax(1).numpy() == yt).mean() == 1.0


def test_curves_rise_to_perfect_and_uncertain_first_beats_random(noisy):
    (Z, C, y), (Zt, Ct, yt) = noisy
    m = ConceptBottleneckModel(NAMES, head="glm").fit(Z, y, C)
    rnd = intervention_curve(m, Zt, yt, Ct, policy="random", seed=0)
    unc = intervention_curve(m, Zt, yt, Ct, policy="uncertain")
    assert rnd["n_intervened"] == [0, 1, 2, 3, 4]
    assert rnd["accuracy"][0] == unc["accuracy"][0] == m.score(Zt, yt) < 0.95
    assert rnd["accuracy"][-1] == unc["accuracy"][-1] == 1.0
    assert unc["accuracy"][1] > rnd["accuracy"][1]
    assert intervention_curve(m, Zt, yt, Ct, policy="random", seed=0) == rnd
    groups = intervention_curve(m, Zt, yt, Ct, groups={"class": ["c0", "c1"], "rest": ["c2", "c3"]}, max_steps=1)
    assert groups["n_intervened"] == [0, 1] and groups["units"] == [["c0", "c1"], ["c2", "c3"]]


def test_uncertain_order_puts_the_most_ambiguous_concept_first(noisy):
    (Z, C, y), (Zt, _, _) = noisy
    m = ConceptBottleneckModel(NAMES, head="linear").fit(Z, y, C)
    order = intervention_order(m, Zt[:50], "uncertain")
    u = m.concept_uncertainty(Zt[:50])
    assert torch.equal(order[:, 0], u.argmax(1))
    r = intervention_order(m, Zt[:50], "random", seed=1)
    assert torch.equal(r.sort(1).values, torch.arange(4).expand(50, 4))
    with pytest.raises(ValueError, match="policy"):
        intervention_order(m, Zt, "greedy")


def _curve_one_call_per_pattern(model, Z, y, C, order, units):
    """The former path, as a reference: one ``intervene`` call per distinct mask pattern per step."""
    C = torch.as_tensor(C).double()
    mask = torch.zeros(len(y), model.n_concepts, dtype=torch.bool)
    acc = [model.score(Z, y)]
    for step in range(order.shape[1]):
        for i, u in enumerate(order[:, step].tolist()):
            mask[i, units[u]] = True
        pred = np.empty(len(y), dtype=model.classes_.dtype)
        patterns, inverse = torch.unique(mask, dim=0, return_inverse=True)
        for p, pattern in enumerate(patterns):
            rows = (inverse == p).nonzero().flatten()
            cols = pattern.nonzero().flatten().tolist()
            proba = model.intervene(Z[rows], cols, C[rows][:, cols]) if cols else model.predict_proba(Z[rows])
            pred[rows.numpy()] = model.classes_[proba.argmax(1).numpy()]
        acc.append(float((pred == y).mean()))
    return acc


@pytest.mark.parametrize("head,residual,groups", [("glm", False, None), ("linear", True, None),
                                                  ("linear", False, {"a": ["c0", "c3"], "b": ["c1"], "c": ["c2"]}),
                                                  ("energy", False, None)])
def test_batched_curve_equals_one_intervene_call_per_mask_pattern(noisy, head, residual, groups):
    (Z, C, y), (Zt, Ct, yt) = noisy
    params = {"epochs": 40, "hidden": 16, "num_threads": 1} if head == "energy" else None
    m = ConceptBottleneckModel(NAMES, head=head, residual=residual, head_params=params).fit(Z, y.astype(str), C)
    Zt, Ct, yt = torch.as_tensor(Zt[:120]), Ct[:120], yt[:120].astype(str)
    units = [[j] for j in range(4)] if groups is None else [m.concept_indices(g) for g in groups.values()]
    for policy in ("random", "uncertain"):
        curve = intervention_curve(m, Zt, yt, Ct, policy=policy, groups=groups, seed=2)
        order = intervention_order(m, Zt, policy, groups=groups, seed=2)
        assert curve["accuracy"] == _curve_one_call_per_pattern(m, Zt, yt, Ct, order, units)
    # the per-sample masks are really per sample: with all concepts known, each sample is decided by its concepts
    predict = masked_predictor(m, Zt, torch.as_tensor(Ct).double())
    half = torch.zeros(len(yt), 4, dtype=torch.bool)
    half[::2] = True
    mixed = m.classes_[predict(half).numpy()]
    assert np.array_equal(mixed[1::2], m.predict(Zt[1::2]))
    assert np.array_equal(mixed[::2], m.classes_[m.intervene(Zt[::2], NAMES, Ct[::2]).argmax(1).numpy()])


def test_curve_makes_one_batched_head_call_per_step(noisy):
    (Z, C, y), (Zt, Ct, yt) = noisy
    m = ConceptBottleneckModel(NAMES, head="linear").fit(Z, y, C)
    calls, forward = [], m._logits_from_scores

    def counting(S, Z):
        calls.append(len(S))
        return forward(S, Z)

    m._logits_from_scores = counting  # instance attribute: shadows the method for this model only
    curve = intervention_curve(m, Zt, yt, Ct, policy="random", seed=0)
    assert calls == [len(yt)] * 5  # the un-intervened score, then one call over all samples per step
    assert curve["accuracy"][-1] == 1.0
