"""Global edits: remove / down-weight, renormalise, log, exact undo, save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cbm_problem import NAMES

from bottlenecks.concepts import ConceptBottleneckModel
from bottlenecks.concepts.edits import apply_edit


@pytest.fixture(scope="module")
def fitted(problem):
    (Z, C, y), _ = problem
    return ConceptBottleneckModel(NAMES, head="linear", groups={"pair": ["c2", "c3"]}).fit(Z, y, C)


def test_remove_for_one_class_and_for_all(fitted):
    m = fitted
    W0 = m.effective_weight().clone()
    m.edit("c0", classes=[3], renormalize=False)
    W = m.effective_weight()
    assert W[3, 0] == 0 and torch.equal(W[:3], W0[:3]) and torch.equal(W[3, 1:], W0[3, 1:])
    m.edit("pair", scale=0.5, renormalize=False)
    assert torch.allclose(m.effective_weight()[:, 2:], 0.5 * W0[:, 2:])
    assert [e["op"] for e in m.edit_log_] == ["remove", "scale"]
    assert m.edit_log_[0]["classes"] == ["3"] and m.edit_log_[1]["concepts"] == ["c2", "c3"]
    m.undo().undo()
    assert torch.equal(m.effective_weight(), W0) and m.edit_log_ == []


def test_apply_edit_renormalise_keeps_the_l1_mass_when_down_weighting():
    w = torch.ones(1, 4, dtype=torch.float64)
    s = apply_edit(torch.ones(1, 4, dtype=torch.float64), w, [0], [0], 0.5, renormalize=True)
    W = s * w
    assert W[0, 0] == 0.5 and torch.allclose(W.abs().sum(), torch.tensor(4.0, dtype=torch.float64))
    assert torch.allclose(W[0, 1:], torch.full((3,), 3.5 / 3, dtype=torch.float64))
    # signed weights: the L1 mass (not the sum) is kept, signs stay
    w = torch.tensor([[2.0, -1.0, 0.5, -0.5]], dtype=torch.float64)
    W = apply_edit(torch.ones_like(w), w, [0, 2], [0], 0.25, renormalize=True) * w
    assert torch.allclose(W.abs().sum(), w.abs().sum()) and torch.equal(W.sign(), w.sign())


@pytest.mark.parametrize("scale", [0.0, 0.5])
@pytest.mark.parametrize("classes", [[3], None])
def test_renormalise_keeps_each_edited_rows_l1_mass(fitted, scale, classes):
    m = fitted
    W0 = m.effective_weight().clone()
    rows = [3] if classes else [0, 1, 2, 3]
    m.edit("c1", classes=classes, scale=scale)
    W = m.effective_weight()
    assert torch.equal(W[:, 1][rows], scale * W0[:, 1][rows])
    assert torch.allclose(W.abs().sum(1), W0.abs().sum(1))
    ratio = W[rows][:, [0, 2, 3]] / W0[rows][:, [0, 2, 3]]
    assert torch.allclose(ratio, ratio[:, :1].expand(-1, 3))  # one factor per class
    assert bool((ratio > 1).all())
    untouched = [k for k in range(4) if k not in rows]
    assert torch.equal(W[untouched], W0[untouched])
    # a second edit on the edited model keeps the mass again; two undos restore bit-identically
    m.edit(["c0", "c2"], classes=classes, scale=scale)
    assert torch.allclose(m.effective_weight().abs().sum(1), W0.abs().sum(1))
    m.undo().undo()
    assert torch.equal(m.effective_weight(), W0)


def test_edit_changes_predictions_and_undo_restores_them_bit_identically(fitted, problem):
    _, (Zt, Ct, yt) = problem
    m = fitted
    w0 = m.effective_weight().clone()
    p0 = m.predict_proba(Zt)
    m.edit("c0").edit(["c1", 3], classes=[0, 1], scale=0.2)
    assert m.score(Zt, yt) < 0.8  # c0 is half of the class rule
    m.undo().undo()
    assert torch.equal(m.effective_weight(), w0) and torch.equal(m.predict_proba(Zt), p0)
    with pytest.raises(RuntimeError, match="no edit to undo"):
        m.undo()
    with pytest.raises(ValueError, match="scale"):
        m.edit("c0", scale=-1)


@pytest.mark.parametrize("head,residual", [("glm", False), ("labo", True), ("sparse", False)])
def test_save_load_round_trips_exactly(tmp_path, problem, head, residual):
    (Z, C, y), (Zt, Ct, yt) = problem
    params = {"epochs": 30} if head in ("labo", "sparse") else None
    m = ConceptBottleneckModel(NAMES, scorer="cav", head=head, residual=residual, head_params=params)
    m.fit(Z, y.astype(str), C)
    m.edit("c2", classes=["1"], scale=0.3)
    m.save(tmp_path / "cbm")
    r = ConceptBottleneckModel.load(tmp_path / "cbm")
    assert torch.equal(r.predict_proba(Zt), m.predict_proba(Zt))
    assert np.array_equal(r.predict(Zt), m.predict(Zt)) and r.predict(Zt).dtype == m.predict(Zt).dtype
    assert torch.equal(r.intervene(Zt, "c0", Ct), m.intervene(Zt, "c0", Ct))
    assert r.edit_log_ == m.edit_log_
    r.undo()
    m.undo()
    assert torch.equal(r.effective_weight(), m.effective_weight())
