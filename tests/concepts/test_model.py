"""ConceptBottleneckModel: concept sources, training modes, explain, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cbm_problem import NAMES, make_problem

from bottlenecks.concepts import CAVScorer, ConceptBottleneckModel


def _concept_acc(model, Z, C):
    return float((model.predict_concepts(Z).numpy() == C).mean())


@pytest.mark.parametrize("scorer", ["labels", "cav"])
@pytest.mark.parametrize("training", ["independent", "sequential"])
def test_label_and_cav_sources_recover_concepts_and_classes(problem, scorer, training):
    (Z, C, y), (Zt, Ct, yt) = problem
    m = ConceptBottleneckModel(NAMES, scorer=scorer, head="glm", training=training).fit(Z, y, C)
    assert _concept_acc(m, Zt, Ct) > 0.97
    assert m.score(Zt, yt) > 0.95
    assert m.predict_proba(Zt).shape == (len(yt), 4)
    assert torch.allclose(m.predict_proba(Zt).sum(1), torch.ones(len(yt), dtype=torch.float64))
    assert (m.on_ > m.off_).all()


def test_cav_margins_are_signed_distances_and_sets_api():
    (Z, C, y), _ = make_problem(200, 4), None
    m = ConceptBottleneckModel(NAMES, scorer="cav", head="linear").fit(Z, y, C)
    assert torch.allclose(m.scorer_.weight_.norm(dim=1), torch.ones(4, dtype=torch.float64))
    pos = [Z[C[:, j] == 1] for j in range(4)]
    neg = [Z[C[:, j] == 0] for j in range(4)]
    cav = CAVScorer().fit_sets(pos, neg)
    s = cav.scores(Z)
    assert ((s > 0).numpy() == (C == 1)).mean() > 0.97


def test_joint_training_and_concept_data_from_another_set(problem):
    (Z, C, y), (Zt, Ct, yt) = problem
    joint = ConceptBottleneckModel(NAMES, head="linear", training="joint", joint_epochs=50).fit(Z, y, C)
    assert joint.score(Zt, yt) > 0.95 and _concept_acc(joint, Zt, Ct) > 0.95
    # the scorer learned on separate concept-annotated data, the head on (Z, y) without concept labels
    Zc, Cc, _ = make_problem(300, 9)
    m = ConceptBottleneckModel(NAMES, head="glm").fit(Z, y, concept_data=(Zc, Cc))
    assert m.score(Zt, yt) > 0.95
    with pytest.raises(ValueError, match="joint"):
        ConceptBottleneckModel(NAMES, head="glm", training="joint").fit(Z, y, C)


def test_text_source_uses_cosine_to_given_concept_embeddings(problem):
    (Z, C, y), (Zt, Ct, yt) = problem
    A = np.random.default_rng(123).normal(size=(4, 8)) * 2.0  # the problem's concept directions
    m = ConceptBottleneckModel(NAMES, scorer="text", concept_embeddings=A, head="linear").fit(Z, y)
    Zn = Zt / np.linalg.norm(Zt, axis=1, keepdims=True)
    An = A / np.linalg.norm(A, axis=1, keepdims=True)
    assert np.allclose(m.concept_scores(Zt).numpy(), Zn @ An.T)
    assert m.score(Zt, yt) > 0.9


def test_pcbm_h_residual_fixes_a_missing_concept(problem):
    (Z, C, y), (Zt, Ct, yt) = problem
    # drop c1 from the concept set: the class needs it, the residual can read it from Z
    keep = [0, 2, 3]
    names = [NAMES[j] for j in keep]
    plain = ConceptBottleneckModel(names, head="linear").fit(Z, y, C[:, keep])
    hybrid = ConceptBottleneckModel(names, head="linear", residual=True).fit(Z, y, C[:, keep])
    assert plain.score(Zt, yt) < 0.75 < 0.95 < hybrid.score(Zt, yt)


def test_explain_lists_top_contributions_that_add_up(problem):
    (Z, C, y), (Zt, Ct, yt) = problem
    m = ConceptBottleneckModel(NAMES, head="linear").fit(Z, y, C)
    e = m.explain(Zt, 3, top=4)
    assert e["class"] == m.predict(Zt[3:4])[0]
    contribs = [c["contribution"] for c in e["concepts"]]
    assert sorted(map(abs, contribs), reverse=True) == list(map(abs, contribs))
    logit = m.decision_function(Zt[3:4])[0, m.class_indices([e["class"]])[0]]
    assert float(logit) == pytest.approx(sum(contribs) + e["bias"], abs=1e-9)
    assert {c["concept"] for c in e["concepts"]} == set(NAMES)
    assert m.explain(Zt[3])["class"] == e["class"]


def test_clear_errors(problem):
    (Z, C, y), (Zt, _, _) = problem
    with pytest.raises(ValueError, match="empty concept set"):
        ConceptBottleneckModel([])
    with pytest.raises(ValueError, match="duplicates"):
        ConceptBottleneckModel(["a", "a"])
    with pytest.raises(ValueError, match="expected shape"):
        ConceptBottleneckModel(NAMES).fit(Z, y, C[:, :3])
    with pytest.raises(ValueError, match="dimension 5 but Z has dimension 8"):
        ConceptBottleneckModel(NAMES, scorer="text", concept_embeddings=np.ones((4, 5))).fit(Z, y)
    m = ConceptBottleneckModel(NAMES, head="linear")
    with pytest.raises(RuntimeError, match="not fitted"):
        m.predict(Zt)
    m.fit(Z, y, C)
    with pytest.raises(ValueError, match="dimension 8"):
        m.predict(Zt[:, :5])
    with pytest.raises(KeyError, match="unknown concept 'c9'"):
        m.intervene(Zt, "c9", np.ones((len(Zt), 1)))
    with pytest.raises(KeyError, match="unknown class"):
        m.edit("c0", classes=["nope"])
    with pytest.raises(ValueError, match="needs concept labels"):
        ConceptBottleneckModel(NAMES).fit(Z, y)
    with pytest.raises(ValueError, match="head"):
        ConceptBottleneckModel(NAMES, head="tree")


def test_energy_head_delegates_to_energy_cbm(problem, tmp_path):
    (Z, C, y), (Zt, Ct, yt) = problem
    m = ConceptBottleneckModel(NAMES, head="energy", head_params={"epochs": 60, "hidden": 16}).fit(Z, y, C)
    assert _concept_acc(m, Zt, Ct) > 0.9
    assert m.score(Zt, yt) > 0.85
    p = m.intervene(Zt, NAMES, Ct)  # every concept clamped to its true value
    assert (p.argmax(1).numpy() == yt).mean() >= m.score(Zt, yt)
    pcy = m.class_concept_proba()
    assert pcy.shape == (4, 4)
    assert float(pcy[3, 0]) > 0.8 > 0.2 > float(pcy[0, 0])  # class 3 = c0 and c1; class 0 = neither
    before = m.predict_proba(Zt)
    m.edit("c0", classes=[3])  # global edit: class 3 no longer reads concept c0 in the global energy
    edited = m.predict_proba(Zt)
    assert not torch.equal(edited, before)
    assert float(m.energy_.concept_scale[3, 0]) == 0.0 and float(m.energy_.concept_scale.sum()) == 15.0
    assert m.edit_log_[-1]["concepts"] == ["c0"]
    m.save(tmp_path / "ecbm")
    r = ConceptBottleneckModel.load(tmp_path / "ecbm")
    assert torch.equal(r.predict_proba(Zt), edited)
    assert torch.equal(r.intervene(Zt, ["c0"], Ct), m.intervene(Zt, ["c0"], Ct))
    m.undo()
    assert torch.equal(m.predict_proba(Zt), before)  # undo is exact


def test_energy_head_takes_fit_options_and_a_concept_annotation_set(problem):
    (Z, C, y), (Zt, Ct, yt) = problem
    params = {"epochs": 30, "hidden": 16, "weight_decay": 1e-4}
    m = ConceptBottleneckModel(NAMES, head="energy", head_params=params).fit(Z[:100], y[:100], C[:100],
                                                                              concept_data=(Z[100:], C[100:]))
    assert _concept_acc(m, Zt, Ct) > 0.8
    with pytest.raises(ValueError, match="concept_data"):
        ConceptBottleneckModel(NAMES, head="energy", head_params=params).fit(Z, y, C, concept_data=(Z[:, :3], C))


def test_text_scorer_embeds_names_with_any_encode_text_and_submodular_selection_feeds_the_model(problem):
    from bottlenecks.concepts.selection import submodular_select
    from bottlenecks.concepts.sources import text_scorer

    (Z, C, y), (Zt, Ct, yt) = problem
    A = np.random.default_rng(123).normal(size=(4, 8)) * 2.0
    table = {f"a photo of {n}": A[j] for j, n in enumerate(NAMES)}

    def encode_text(texts):  # a stand-in text tower that shares Z's space
        return np.stack([table[t] for t in texts])

    scorer = text_scorer(NAMES, encode_text, template="a photo of {}")
    m = ConceptBottleneckModel(NAMES, scorer=scorer, head="linear").fit(Z, y)
    ref = ConceptBottleneckModel(NAMES, scorer="text", concept_embeddings=A, head="linear").fit(Z, y)
    assert torch.allclose(m.concept_scores(Zt), ref.concept_scores(Zt), atol=1e-6)
    # LaBo's selection keeps one concept per class "owner"; the model is then built on the kept names
    keep = submodular_select(torch.as_tensor(A), [0, 1, 0, 1], 1)
    names = [NAMES[j] for j in sorted(keep)]
    assert len(names) == 2
    sub = ConceptBottleneckModel(names, head="linear").fit(Z, y, C[:, sorted(keep)])
    assert sub.concept_scores(Zt).shape == (len(Zt), 2)


def test_fit_and_scoring_run_on_pinned_threads_and_restore_the_callers(problem, monkeypatch):
    (Z, C, y), (Zt, Ct, yt) = problem
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), real(n))[1])
    before = torch.get_num_threads()
    m = ConceptBottleneckModel(NAMES, scorer="cav", head="glm").fit(Z, y, C)
    assert seen and seen[0] == 1 and torch.get_num_threads() == before
    seen.clear()
    m.predict(Zt)
    assert seen[0] == 1 and torch.get_num_threads() == before
    seen.clear()
    two = ConceptBottleneckModel(NAMES, scorer="cav", head="glm", num_threads=2).fit(Z, y, C)
    assert seen[0] == 2 and torch.get_num_threads() == before
    assert np.array_equal(two.predict(Zt), m.predict(Zt))
    with pytest.raises(ValueError, match="num_threads"):
        ConceptBottleneckModel(NAMES, num_threads=0)


@pytest.mark.parametrize("head", ["linear", "energy"])
def test_every_head_returns_the_same_types(problem, head):
    """One convention whatever the backend: labels as NumPy (like ``classes_``, which may hold
    strings), scores and probabilities as float64 tensors, concept decisions as bool tensors."""
    (Z, C, y), (Zt, Ct, _) = problem
    params = {"epochs": 20, "hidden": 8} if head == "energy" else None
    m = ConceptBottleneckModel(NAMES, head=head, head_params=params).fit(Z, y, C)
    n, K = len(Zt), len(m.classes_)
    pred = m.predict(Zt)
    assert isinstance(pred, np.ndarray) and pred.dtype == m.classes_.dtype and pred.shape == (n,)
    for out in (m.predict_proba(Zt), m.intervene(Zt, ["c0"], Ct[:, [0]])):
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.shape == (n, K)
        assert torch.allclose(out.sum(1), torch.ones(n, dtype=torch.float64))
    assert m.decision_function(Zt).dtype == torch.float64
    assert m.concept_scores(Zt).dtype == torch.float64 and m.concept_scores(Zt).shape == (n, len(NAMES))
    assert m.predict_concepts(Zt).dtype == torch.bool
    # predictions are the argmax of the probabilities, with and without an intervention
    assert np.array_equal(pred, m.classes_[m.predict_proba(Zt).argmax(1).numpy()])
