"""Each head on a tiny problem with a known answer; every Sparse-CBM parameter group is trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cbm_problem import NAMES, make_problem

from bottlenecks.concepts import ConceptBottleneckModel
from bottlenecks.concepts.heads import GLMHead, LaBoHead, LinearHead, ResidualHead, SparseGumbelHead


def _binary_concepts(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    C = torch.randint(0, 2, (n, 4), generator=g).double()
    y = (2 * C[:, 0] + C[:, 1]).long()  # 4 classes, a linear rule over c0, c1; c2, c3 irrelevant
    S = (2 * C - 1) + 0.1 * torch.randn(n, 4, generator=g, dtype=torch.float64)
    return S, y


def _acc(head, S, y):
    with torch.no_grad():
        return float((head(S).argmax(1) == y).double().mean())


def test_linear_and_glm_heads_learn_the_rule_and_glm_ignores_irrelevant_concepts():
    S, y = _binary_concepts()
    lin = LinearHead(4, 4).fit(S, y)
    assert _acc(lin, S, y) == 1.0
    glm = GLMHead(4, 4, n_lambdas=12).fit(S[:200], y[:200], S_val=S[200:], y_val=y[200:])
    assert _acc(glm, S, y) == 1.0
    # the sparsest lambda with the best validation accuracy uses c0 and c1 only
    assert bool((glm.weight[:, 2:] == 0).all()) and bool((glm.weight[:, :2] != 0).any())
    assert len(glm.path_) == 12 and "val_accuracy" in glm.path_[glm.chosen_]
    sparse = GLMHead(4, 4, n_lambdas=12, target_per_class=1.0).fit(S, y)
    assert float((sparse.weight != 0).sum(1).double().mean()) <= 1.0


def test_labo_head_weights_are_a_scaled_softmax_and_the_prior_initialises_them():
    S, y = _binary_concepts()
    # concepts 0, 1 "generated for" classes 3 and 1: the prior puts their mass there
    head = LaBoHead(4, 4, class_of_concept=[3, 1, 0, 2], prior_strength=2.0, epochs=0)
    w = head.weight.detach()
    assert torch.allclose(w.sum(1), torch.full((4,), 4.0, dtype=torch.float64))
    assert int(w[3].argmax()) == 0 and int(w[1].argmax()) == 1
    # LaBo's setting: each concept describes one class; the association learns which (no prior given)
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (300,), generator=g)
    owner = torch.tensor([2, 0, 3, 1])  # concept j describes class owner[j]
    S = (y[:, None] == owner[None]).double() * 2 - 1 + 0.3 * torch.randn(300, 4, generator=g, dtype=torch.float64)
    head = LaBoHead(4, 4, epochs=300).fit(S, y)
    assert bool((head.weight > 0).all())  # a softmax: positive associations only
    assert head.weight.detach().argmax(1).tolist() == owner.argsort().tolist()
    assert _acc(head, S, y) == 1.0


@pytest.mark.parametrize("layer,concept_params", [("diagonal", {"concept_scale"}), ("full", {"concept_map"})])
def test_sparse_gumbel_head_trains_every_parameter_group_and_is_deterministic_at_inference(layer, concept_params):
    S, y = _binary_concepts()
    head = SparseGumbelHead(4, 4, epochs=150, concept_layer=layer)
    before = {k: v.detach().clone() for k, v in head.named_parameters()}
    assert set(before) == concept_params | {"concept_shift", "log_temperature", "class_weight", "class_bias"}
    head.fit(S, y, seed=3)
    for name, p in head.named_parameters():
        assert not torch.equal(p.detach(), before[name]), f"{name} was not optimised"
    assert _acc(head, S, y) > 0.9
    with torch.no_grad():
        assert torch.equal(head(S), head(S))  # no Gumbel noise outside fit
        f = head.features(S)
    assert torch.allclose(f.sum(1), torch.ones(len(S), dtype=torch.float64))
    again = SparseGumbelHead(4, 4, epochs=150, concept_layer=layer).fit(S, y, seed=3)
    assert torch.equal(again.class_weight, head.class_weight)


def test_sparse_gumbel_head_initialises_from_the_callers_seed():
    S, y = _binary_concepts()
    init = {seed: SparseGumbelHead(4, 4, epochs=0).fit(S, y, seed=seed).class_weight.detach() for seed in (1, 2)}
    assert not torch.equal(init[1], init[2]) and bool((init[1] != 0).all())
    expected = torch.randn(4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.01
    assert torch.equal(init[1], expected)  # the first draws of the caller-seeded generator
    # through the model: its seed reaches the head's initialisation
    Z, C, yy = make_problem(120, 0)
    w = [ConceptBottleneckModel(NAMES, head="sparse", head_params={"epochs": 0}, seed=s).fit(Z, yy, C).head_
         .class_weight.detach() for s in (1, 2, 1)]
    assert not torch.equal(w[0], w[1]) and torch.equal(w[0], w[2])


def test_sparse_gumbel_full_concept_layer_starts_at_the_diagonal_form_and_round_trips(tmp_path):
    S, y = _binary_concepts()
    full, diag = SparseGumbelHead(4, 4, concept_layer="full"), SparseGumbelHead(4, 4)
    with torch.no_grad():
        assert torch.equal(full.features(S), diag.features(S))  # M = I, a = 1 before fitting
    full.fit(S, y, seed=0)
    M = full.concept_map.detach()
    assert bool((M - torch.diag(M.diagonal()) != 0).any())  # off-diagonal entries were learned
    with pytest.raises(ValueError, match="concept_layer"):
        SparseGumbelHead(4, 4, concept_layer="dense")
    Z, C, yy = make_problem(200, 0)
    m = ConceptBottleneckModel(NAMES, head="sparse", head_params={"epochs": 40, "concept_layer": "full"}).fit(Z, yy, C)
    m.save(tmp_path / "m")
    r = ConceptBottleneckModel.load(tmp_path / "m")
    assert r.head_.concept_layer == "full" and torch.equal(r.predict_proba(Z), m.predict_proba(Z))


def test_residual_recovers_what_the_concepts_miss():
    g = torch.Generator().manual_seed(0)
    Z = torch.randn(400, 3, generator=g, dtype=torch.float64)
    y = (Z[:, 2] > 0).long()  # the class depends on a direction no concept covers
    base = torch.zeros(400, 2, dtype=torch.float64)
    res = ResidualHead(3, 2, l2=1e-3).fit(Z, base, y)
    acc = float(((base + res(Z)).argmax(1) == y).double().mean())
    assert acc > 0.97
    w = res.linear.weight.detach()
    assert w[:, 2].abs().min() > 5 * w[:, :2].abs().max()
    assert np.isfinite(w.numpy()).all()
