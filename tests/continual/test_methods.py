"""Learners of the workbench: early stopping (fit_until_converged) and the new heads."""

import numpy as np
import pytest
import torch

from bottlenecks.continual.methods import METHODS, fit_until_converged, make_learner


def _data(n=300, dim=8, classes=3, seed=0, noise=1.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 2
    y = torch.arange(n) % classes
    return centres[y] + noise * torch.randn(n, dim, generator=g), y


def test_fit_until_converged_stops_and_keeps_the_best_epoch():
    x, y = _data()
    xv, yv = _data(90, seed=0)
    learner = make_learner("linear", 8, 3, seed=0, linear_lr=1e-2)
    res = fit_until_converged(learner, x, y, xv, yv, batch_size=32, max_epochs=50, patience=2, seed=0)
    assert res["epochs"] < 50  # stopped early
    assert res["epochs"] - res["best_epoch"] == 2  # patience epochs after the best
    assert res["val_accuracy"] == max(res["history"])
    # the restored state is the best epoch's: its validation accuracy is the best one
    from bottlenecks.continual.metrics import class_balanced_accuracy

    assert class_balanced_accuracy(yv.numpy(), learner.predict(xv).numpy()) == res["val_accuracy"]


def test_fit_until_converged_trains_to_convergence_where_a_fixed_budget_does_not():
    # the complaint: a baseline stopped after a fixed small number of passes is under-trained
    x, y = _data(600, dim=20, classes=5, noise=2.5)
    xv, yv = _data(300, dim=20, classes=5, seed=0, noise=2.5)
    one = make_learner("linear", 20, 5, seed=0, linear_lr=1e-3)
    fit_until_converged(one, x, y, xv, yv, batch_size=64, max_epochs=1, patience=1, seed=0)
    full = make_learner("linear", 20, 5, seed=0, linear_lr=1e-3)
    res = fit_until_converged(full, x, y, xv, yv, batch_size=64, max_epochs=200, patience=3, seed=0)
    acc = [float((m.predict(xv) == yv).float().mean()) for m in (one, full)]
    assert res["epochs"] > 3 and acc[1] > acc[0]


@pytest.mark.parametrize("name", METHODS)
def test_every_method_has_a_representation(name):
    x, y = _data(64)
    learner = make_learner(name, 8, 3, seed=0, num_codebooks=4, keys_per_codebook=8,
                           vq={"num_codes": 8, "k": 2, "dim": 4}, vib={"dim_z": 4, "hidden": 8})
    learner.prepare(x, {})
    learner.fit_batch(x, y)
    z = learner.represent(x)
    assert z.shape[0] == 64 and z.dim() == 2 and torch.isfinite(z).all()
    codes = learner.codes(x)
    assert (codes is None) == (name not in ("dkvb", "vq"))
    state = learner.state()
    before = learner.predict(x)
    for _ in range(5):
        learner.fit_batch(x, y)
    learner.load_state(state)
    assert torch.equal(learner.predict(x), before)


def test_bad_input():
    x, y = _data(30)
    learner = make_learner("linear", 8, 3)
    with pytest.raises(ValueError, match="held-out"):
        fit_until_converged(learner, x, y, x[:0], y[:0])
    with pytest.raises(ValueError, match="one label per row"):
        fit_until_converged(learner, x, y[:10], x, y)
    with pytest.raises(ValueError, match="unknown method 'vae'"):
        make_learner("vae", 8, 3)
    assert np.isin(["vq", "vib"], METHODS).all()


def test_min_epochs_rides_out_a_plateau():
    # a learner that sits at zero accuracy on new classes must not stop after `patience` epochs of it
    x, y = _data(120)
    learner = make_learner("linear", 8, 3, seed=0, linear_lr=1e-6)  # barely moves: validation accuracy flat
    res = fit_until_converged(learner, x, y, x, y, batch_size=64, max_epochs=20, patience=1, min_epochs=6, seed=0)
    assert res["epochs"] == 6
    res = fit_until_converged(learner, x, y, x, y, batch_size=64, max_epochs=20, patience=1, seed=0)
    assert res["epochs"] == 2


@pytest.mark.parametrize("topk", [1, 3])
def test_dkvb_trained_on_cached_key_indices_equals_trained_on_features(topk):
    # the workbench looks the keys of the training rows up once (frozen_inputs) and trains on the
    # indices: every step must equal the step on the features themselves
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 12, generator=g), torch.randint(0, 4, (300,), generator=g)
    a, b = (make_learner("dkvb", 12, 4, seed=1, num_codebooks=6, keys_per_codebook=16, dim_key=3, topk=topk)
            for _ in range(2))
    a.prepare(x)
    b.prepare(x)
    cached = b.frozen_inputs(x)
    assert cached.shape == (300, 6, topk) and not cached.is_floating_point()
    for s in range(0, 300, 64):
        la, lb = a.fit_batch(x[s:s + 64], y[s:s + 64]), b.fit_batch(cached[s:s + 64], y[s:s + 64])
        assert la == lb
    assert torch.equal(a.bottleneck.values, b.bottleneck.values)
    assert torch.equal(a.bottleneck.value_usage, b.bottleneck.value_usage)
    assert torch.equal(a.predict(x), b.predict(x))
    # learners without a frozen front end train on the features themselves
    lin = make_learner("linear", 12, 4)
    assert lin.frozen_inputs(x) is x


@pytest.mark.parametrize("topk,candidates", [(1, 16), (3, 4), (1, 1)])
def test_dkvb_evaluated_on_key_candidates_equals_evaluated_on_features(topk, candidates):
    # at evaluation the untrained keys are masked; the first trained key in each row's list of
    # nearest keys is the masked nearest key, and rows whose list holds too few are searched
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(400, 12, generator=g), torch.randint(0, 4, (400,), generator=g)
    learner = make_learner("dkvb", 12, 4, seed=3, num_codebooks=5, keys_per_codebook=32, dim_key=3, topk=topk)
    learner.prepare(x)
    prepared = learner.eval_inputs(x, candidates=candidates)
    assert len(prepared) == 400 and prepared.candidates.shape == (400, 5, max(topk, candidates))
    assert torch.equal(learner.predict(prepared), learner.predict(x))  # nothing trained: no mask
    cached = learner.frozen_inputs(x)
    for s in (0, 20, 200):  # a few keys trained, then more: the mask changes
        learner.fit_batch(cached[s:s + 20], y[s:s + 20])
        rows = torch.arange(0, 400, 3)
        assert torch.equal(learner.predict(prepared[rows]), learner.predict(x[rows]))
    # the masked lookup itself, to be sure the mask is in force (some keys are still untrained)
    assert bool((learner.bottleneck.value_usage == 0).any())
