"""EnergyCBM on a tiny problem with a known answer: 4 binary concepts, class = 2 c0 + (c1 xor c2), c3 noise."""

import pytest
import torch

from bottlenecks.concepts.energy import EnergyCBM


def make(n, noise, seed):
    g = torch.Generator().manual_seed(seed)
    C = (torch.rand(n, 4, generator=g) < 0.5).float()
    y = (2 * C[:, 0] + (C[:, 1] != C[:, 2]).float()).long()
    A = torch.randn(4, 8, generator=torch.Generator().manual_seed(99))
    Z = (2 * C - 1) @ A + noise * torch.randn(n, 8, generator=g)
    return Z, C, y


FIT = dict(epochs=40, lr=3e-2, batch_size=128)


@pytest.fixture(scope="module")
def noisy():
    """Embeddings noisy enough that some concepts are misread from them."""
    Z, C, y = make(1000, 1.5, 0)
    model = EnergyCBM(8, 4, 4, hidden=32, seed=0).fit(Z, C, y, **FIT)
    return model, (Z, C, y), make(1000, 1.5, 1)


def test_concepts_and_classes_are_read_from_clean_embeddings():
    Z, C, y = make(1000, 0.3, 0)
    Zt, Ct, yt = make(1000, 0.3, 1)
    model = EnergyCBM(8, 4, 4, hidden=32, seed=0).fit(Z, C, y, **FIT)
    for stage in ("global", "embedding"):
        assert model.loss_history_[stage][-1] < 0.5 * model.loss_history_[stage][0]
    c = model.concept_proba(Zt)
    assert c.shape == (1000, 4) and bool(((c >= 0) & (c <= 1)).all())
    assert ((c > 0.5).float() == Ct).float().mean() >= 0.98
    proba = model.predict_proba(Zt)
    torch.testing.assert_close(proba.sum(1), torch.ones(1000))
    assert (model.predict(Zt) == yt).float().mean() >= 0.97


def test_interventions_with_true_concepts_raise_accuracy(noisy):
    model, _, (Zt, Ct, yt) = noisy
    plain = (model.predict(Zt) == yt).float().mean()
    concept_acc = ((model.concept_proba(Zt) > 0.5).float() == Ct).float().mean()
    assert concept_acc < 0.99  # the embeddings really are ambiguous
    half = torch.zeros_like(Ct, dtype=torch.bool)
    half[:, :2] = True
    some = (model.predict(Zt, half, Ct) == yt).float().mean()
    full = torch.ones_like(Ct, dtype=torch.bool)
    every = (model.predict(Zt, full, Ct) == yt).float().mean()
    assert every >= 0.99 and every > plain + 0.03
    assert plain < some < every
    # clamped concepts come back as given, the others are inferred
    c = model.concept_proba(Zt, half, Ct)
    assert torch.equal(c[:, :2], Ct[:, :2])
    assert not torch.equal(c[:, 2:], Ct[:, 2:])


def test_full_intervention_is_the_energy_with_true_concepts(noisy):
    model, _, (Zt, Ct, yt) = noisy
    full = torch.ones_like(Ct, dtype=torch.bool)
    with torch.no_grad():
        want = torch.softmax(-model.class_energy(Zt) - model.lambda_global * model.global_energy(Ct), dim=1)
    torch.testing.assert_close(model.predict_proba(Zt, full, Ct), want)
    # the total energy ranks classes as the prediction does
    with torch.no_grad():
        energies = torch.stack([model.total_energy(Zt, Ct, torch.full_like(yt, k)) for k in range(4)], dim=1)
    assert torch.equal(energies.argmin(1), want.argmax(1))


def test_save_and_load_give_the_same_predictions(noisy, tmp_path):
    model, _, (Zt, Ct, _) = noisy
    model.save(tmp_path / "ecbm")
    back = EnergyCBM.load(tmp_path / "ecbm")
    assert back.config() == model.config()
    mask = torch.zeros_like(Ct, dtype=torch.bool)
    mask[:, 1] = True
    assert torch.equal(back.predict_proba(Zt, mask, Ct), model.predict_proba(Zt, mask, Ct))
    assert torch.equal(back.z_mean, model.z_mean)


def test_class_concept_proba_matches_training_frequencies(noisy):
    model, (Z, C, y), _ = noisy
    freq = torch.stack([C[y == k].mean(0) for k in range(4)])
    p = model.class_concept_proba()
    assert p.shape == (4, 4)
    torch.testing.assert_close(p, freq, atol=0.03, rtol=0)


def test_gibbs_agrees_with_enumeration_and_factorised_model_is_sigmoid():
    model = EnergyCBM(3, 5, 3, global_hidden=8, seed=4)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.unary.copy_(torch.randn(3, 5, generator=g))
        model.inter_out.weight.mul_(4.0)
    exact = model.class_concept_proba(method="exact")
    gibbs = model.class_concept_proba(method="gibbs", n_chains=400, n_sweeps=40, burn_in=10, seed=1)
    torch.testing.assert_close(gibbs, exact, atol=0.02, rtol=0)
    plain = EnergyCBM(3, 5, 3, global_hidden=0, seed=4)
    with torch.no_grad():
        plain.unary.copy_(torch.randn(3, 5, generator=g))
    torch.testing.assert_close(plain.class_concept_proba(), torch.sigmoid(plain.unary.detach()))


def test_class_prediction_is_differentiable_through_inference():
    Z, C, y = make(64, 1.5, 2)
    model = EnergyCBM(8, 4, 4, hidden=16, seed=1).fit(Z, C, y, epochs=3, lr=3e-2, batch_size=32).double()
    Z = Z.double()

    def loss():
        return -model.infer(Z, differentiable=True)[1][torch.arange(64), y].mean()

    model.zero_grad()
    loss().backward()
    for name in ("concept_head.weight", "class_head.weight", "trunk.weight", "unary", "inter_in.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
    # the gradient reaching the concept energy is the true derivative of the inferred prediction
    w = model.concept_head.weight
    v = torch.randn(w.shape, generator=torch.Generator().manual_seed(0), dtype=w.dtype)
    eps = 1e-5
    with torch.no_grad():
        w += eps * v
        up = float(loss())
        w -= 2 * eps * v
        down = float(loss())
        w += eps * v
    assert (up - down) / (2 * eps) == pytest.approx(float((w.grad * v).sum()), rel=1e-4, abs=1e-8)


def test_small_work_runs_on_one_thread_and_restores_the_setting(monkeypatch):
    seen = []
    real = EnergyCBM._train_stage

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(EnergyCBM, "_train_stage", spy)
    before = torch.get_num_threads()
    Z, C, y = make(64, 1.0, 0)
    EnergyCBM(8, 4, 4, hidden=8).fit(Z, C, y, epochs=1)
    assert seen == [1, 1] and torch.get_num_threads() == before


def test_same_seed_same_model_and_other_seed_differs():
    Z, C, y = make(128, 1.0, 3)
    a = EnergyCBM(8, 4, 4, hidden=8, seed=5).fit(Z, C, y, epochs=2, batch_size=32)
    b = EnergyCBM(8, 4, 4, hidden=8, seed=5).fit(Z, C, y, epochs=2, batch_size=32)
    c = EnergyCBM(8, 4, 4, hidden=8, seed=6).fit(Z, C, y, epochs=2, batch_size=32)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert not torch.equal(a.trunk.weight, c.trunk.weight)
    assert "n_concepts=4" in repr(a)


def test_errors_name_the_mismatch():
    Z, C, y = make(16, 1.0, 0)
    model = EnergyCBM(8, 4, 4, hidden=8)
    with pytest.raises(ValueError, match="Z has 5 features but the model was built for dim_in=8"):
        model.predict(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"C: expected shape \(16, 4\)"):
        model.fit(Z, C[:, :3], y)
    with pytest.raises(ValueError, match="binary concept labels"):
        model.fit(Z, C * 0.5, y)
    with pytest.raises(ValueError, match="class ids in 0..3"):
        model.fit(Z, C, y + 4)
    with pytest.raises(ValueError, match="without concept_mask"):
        model.predict(Z, concept_values=C)
    with pytest.raises(ValueError, match=r"concept_mask: expected shape \(16, 4\)"):
        model.predict(Z, torch.ones(16, 3, dtype=torch.bool), C)
    with pytest.raises(TypeError, match="bool tensor"):
        model.predict(Z, torch.ones(16, 4), C)
    with pytest.raises(ValueError, match="2\\*\\*30"):
        EnergyCBM(2, 30, 2).class_concept_proba(method="exact")


def test_pseudo_likelihood_path_for_many_concepts():
    """Beyond exact_max concepts p(c | y) is fit by pseudo-likelihood: its conditionals are the energy's,
    and on data with class-conditional (non-deterministic) concepts it recovers their frequencies."""
    model = EnergyCBM(3, 5, 3, global_hidden=8, seed=2, exact_max=0)
    g = torch.Generator().manual_seed(1)
    C = (torch.rand(7, 5, generator=g) < 0.5).float()
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    with torch.no_grad():
        model.unary.copy_(torch.randn(3, 5, generator=g))
        got = model._pseudo_logits(C, y)
        for k in range(5):
            on, off = C.clone(), C.clone()
            on[:, k], off[:, k] = 1.0, 0.0
            want = model.global_scores(on)[torch.arange(7), y] - model.global_scores(off)[torch.arange(7), y]
            torch.testing.assert_close(got[:, k], want)
    # data: p(c_k = 1 | y) = P[y, k], independent given the class; embeddings carry the class only
    n = 1500
    P = torch.tensor([[0.9, 0.2, 0.5, 0.7, 0.1], [0.3, 0.8, 0.5, 0.2, 0.6], [0.5, 0.5, 0.9, 0.1, 0.4]])
    y = torch.randint(0, 3, (n,), generator=g)
    C = (torch.rand(n, 5, generator=g) < P[y]).float()
    Z = torch.nn.functional.one_hot(y, 3).float() + 0.1 * torch.randn(n, 3, generator=g)
    model = EnergyCBM(3, 5, 3, hidden=16, global_hidden=8, seed=0, exact_max=0).fit(Z, C, y, **FIT)
    freq = torch.stack([C[y == k].mean(0) for k in range(3)])
    torch.testing.assert_close(model.class_concept_proba(method="exact"), freq, atol=0.04, rtol=0)


def test_class_losses_residual_and_paper():
    Z, C, y = make(32, 1.0, 4)
    for kind in ("residual", "paper"):
        model = EnergyCBM(8, 4, 4, hidden=8, class_loss=kind)
        with torch.no_grad():
            model.unary.copy_(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))
            scores = -model.class_energy(Z)
            if kind == "residual":
                scores = scores + model.lambda_global * model.global_scores(C)
            got = model.losses(Z, C, y)["class"]
        torch.testing.assert_close(got, torch.nn.functional.cross_entropy(scores, y))
    with pytest.raises(ValueError, match="class_loss"):
        EnergyCBM(8, 4, 4, class_loss="joint")


def test_residual_class_energy_keeps_interventions_decisive_when_the_embedding_overfits():
    """150 samples, 56 pure-noise dimensions: a standalone class energy (the paper's) overfits and
    outvotes even the true concepts; the residual one learns nothing the concepts already explain."""

    def wide(n, seed):
        Z, C, y = make(n, 2.0, seed)
        return torch.cat([Z, torch.randn(n, 56, generator=torch.Generator().manual_seed(seed + 100))], 1), C, y

    Z, C, y = wide(150, 0)
    Zt, Ct, yt = wide(1000, 1)
    full = torch.ones_like(Ct, dtype=torch.bool)
    acc = {}
    for kind in ("residual", "paper"):
        model = EnergyCBM(64, 4, 4, hidden=64, class_loss=kind).fit(Z, C, y, epochs=100, lr=1e-2, batch_size=50)
        acc[kind] = float((model.predict(Zt, full, Ct) == yt).float().mean())
    assert acc["residual"] >= 0.99
    assert acc["paper"] < acc["residual"] - 0.1


def test_global_edit_removes_a_concept_from_the_global_energy_and_restores_exactly(noisy):
    model, (Z, C, y), (Zt, Ct, _) = noisy
    before = model.predict_proba(Zt)
    torch.testing.assert_close(model.concept_mean, C.mean(0))
    scale = torch.ones(4, 4)
    scale[:, 3] = 0.0  # concept 3 (noise) out for every class
    scale[1, 0] = 0.0  # concept 0 out for class 1 only
    model.edit_concepts(scale)
    try:
        flipped = Ct.clone()
        flipped[:, 3] = 1 - flipped[:, 3]
        with torch.no_grad():
            g, g3 = model.global_scores(Ct), model.global_scores(flipped)
            torch.testing.assert_close(g3, g)  # no class reads concept 3 any more
            flipped0 = Ct.clone()
            flipped0[:, 0] = 1 - flipped0[:, 0]
            g0 = model.global_scores(flipped0)
        torch.testing.assert_close(g0[:, 1], g[:, 1])  # class 1 ignores concept 0 ...
        assert (g0[:, [0, 2, 3]] - g[:, [0, 2, 3]]).abs().max() > 1.0  # ... the others still read it
        # an edited class reads the training mean in place of the removed concept
        with torch.no_grad():
            model.edit_concepts(torch.ones(4, 4))
            manual = Ct.clone()
            manual[:, 3] = model.concept_mean[3]
            want3 = model.global_scores(manual)
            model.edit_concepts(scale)
        torch.testing.assert_close(g[:, [0, 2, 3]], want3[:, [0, 2, 3]])
        exact = model.class_concept_proba(method="exact")
        assert torch.allclose(exact[:, 3], exact[0, 3].expand(4), atol=1e-6)  # p(c3 | y) no longer depends on y
        gibbs = model.class_concept_proba(method="gibbs", n_chains=200, n_sweeps=40, burn_in=10)
        torch.testing.assert_close(gibbs[:, 3], exact[:, 3], atol=0.03, rtol=0)
    finally:
        model.edit_concepts(torch.ones(4, 4))
    assert torch.equal(model.predict_proba(Zt), before)
    with pytest.raises(ValueError, match=r"scale: expected shape \(4, 4\)"):
        model.edit_concepts(torch.ones(3, 4))
    with pytest.raises(ValueError, match=">= 0"):
        model.edit_concepts(-torch.ones(4, 4))


def test_concept_data_keeps_concept_detectors_off_a_spurious_correlate():
    """Training: concept 3 always equals concept 1 and is far easier to see. Learned there, the detector
    of concept 1 reads concept 3; learned on a concept-annotation set where they vary independently,
    it reads concept 1 itself, which is what counts once the correlation breaks."""

    def data(n, seed, spurious):
        g = torch.Generator().manual_seed(seed)
        C = (torch.rand(n, 4, generator=g) < 0.5).float()
        if spurious:
            C[:, 3] = C[:, 1]
        signal = torch.cat([C[:, [0, 2]].repeat(1, 2) * 3, C[:, [1]].repeat(1, 4) * 1.2, C[:, [3]].repeat(1, 2) * 3], 1)
        y = (2 * C[:, 0] + C[:, 1]).long()
        return (2 * signal - signal.mean(0)) + torch.randn(n, 10, generator=g), C, y

    Z, C, y = data(600, 0, True)
    Zc, Cc, _ = data(600, 1, False)
    Zs, Cs, ys = data(1000, 2, False)
    acc = {}
    for name, extra in (("plain", {}), ("concept_data", {"concept_data": (Zc, Cc)})):
        model = EnergyCBM(10, 4, 4, hidden=32).fit(Z, C, y, epochs=30, lr=3e-2, batch_size=100, **extra)
        acc[name] = float(((model.concept_proba(Zs)[:, 1] > 0.5).float() == Cs[:, 1]).float().mean())
    assert acc["concept_data"] > acc["plain"] + 0.1
    with pytest.raises(TypeError, match="concept_data"):
        EnergyCBM(10, 4, 4).fit(Z, C, y, epochs=1, concept_data=Zc)
