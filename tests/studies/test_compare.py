"""The cross-bottleneck comparison: each head learns, the table's numbers are the families' own,
the same seed gives the same numbers, and bad input gets a clear error."""

import math

import numpy as np
import pytest
import torch

from bottlenecks.continual.metrics import backward_transfer, continual_metrics, forgetting, task_accuracies
from bottlenecks.info import pairwise_information_bounds
from bottlenecks.report.compare_report import table
from bottlenecks.studies.base import nan_equal
from bottlenecks.studies.compare import (
    HEADS,
    CompareConfig,
    CompareResults,
    FrozenLookupDKVB,
    _Data,
    _discrete_measures,
    _make,
    heads_for,
    information,
    run,
)


def _blobs(n, n_classes=6, dim=12, seed=0):
    centres = np.random.default_rng(123).normal(0, 3, size=(n_classes, dim))  # train and test: one distribution
    g = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    x = centres[y] + g.normal(0, 1, size=(n, dim))
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def blobs_file(tmp_path_factory):
    x, y = _blobs(480)
    xt, yt = _blobs(180, seed=1)
    path = tmp_path_factory.mktemp("emb") / "blobs.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return path


SMALL = dict(seeds=1, n_tasks=3, batch_size=32, max_epochs=4, patience=1, lr_grid=(3e-3,), dkvb_lr_grid=(0.3,),
             tune_samples=200, num_codebooks=8, keys_per_codebook=16, codes=16, codes_k=2, code_dim=8, hidden=16,
             buffer_size=50, n_info=120, param_probe_every=3)


@pytest.fixture(scope="module")
def small_run(blobs_file):
    return run(CompareConfig(dataset=str(blobs_file), **SMALL), progress=False)


@pytest.mark.parametrize("head", HEADS)
def test_each_head_lowers_its_loss_on_a_small_stream(head):
    x, y = _blobs(240)
    c = torch.from_numpy(np.concatenate([np.eye(6)[y], (y >= 3)[:, None]], 1).astype(np.int64))
    data = _Data(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(x), torch.from_numpy(y), "blobs", [],
                 c, c, [f"c{i}" for i in range(7)])
    learner = _make(head, data, CompareConfig(**SMALL), seed=0, lr=3e-3 if head != "dkvb" else 0.3)
    learner.prepare(data.x_train, {})
    first = torch.from_numpy(np.isin(y, [0, 1]))  # the stream's first task: classes 0 and 1
    xb, yb = data.x_train[first], data.y_train[first]
    kw = {"c": c[first]} if head == "cbm" else {}
    losses = [learner.fit_batch(xb, yb, **kw) for _ in range(100)]
    assert losses[-1] < 0.8 * losses[0], losses[::25]
    assert (learner.predict(xb) == yb).float().mean() > 0.9


def test_dkvb_on_its_frozen_lookups_is_the_workbench_dkvb():
    # trained on precomputed key indices and evaluated on precomputed projections, the study's DKVB
    # learner is the workbench's, bit for bit, over a class-incremental stream
    from bottlenecks.continual.methods import DKVBLearner, fit_until_converged

    x, y = _blobs(420, dim=20)
    t = torch.from_numpy
    data = _Data(t(x[:300]), t(y[:300]), t(x[300:]), t(y[300:]), "blobs", [])
    ref = DKVBLearner(20, 6, num_codebooks=6, keys_per_codebook=24, lr=0.3, seed=3)
    ref.prepare(data.x_train)
    ours = FrozenLookupDKVB(20, 6, num_codebooks=6, keys_per_codebook=24, lr=0.3, seed=3)
    shared = {}
    ours.prepare(data.x_train, shared)
    view = ours.view(data, shared)
    assert view.train.dtype == torch.long and view.held_out.shape == (300, 6, 14)
    rows, val = torch.arange(240), torch.arange(240, 300)
    for task, classes in enumerate(([0, 1], [2, 3], [4, 5])):
        idx, vidx = rows[np.isin(y[:240], classes)], val[np.isin(y[240:300], classes)]
        kw = dict(batch_size=16, max_epochs=4, patience=1, seed=task)
        a = fit_until_converged(ref, data.x_train[idx], data.y_train[idx], data.x_train[vidx], data.y_train[vidx], **kw)
        b = fit_until_converged(ours, view.train[idx], data.y_train[idx], view.held_out[vidx], data.y_train[vidx],
                                **kw)
        assert a["history"] == b["history"]
        assert torch.equal(ref.bottleneck.values, ours.bottleneck.values)
        assert torch.equal(ref.bottleneck.value_usage, ours.bottleneck.value_usage)
        assert torch.equal(ref.predict(data.x_test), ours.predict(view.test))
        assert torch.equal(ref.represent(data.x_test), ours.represent(view.test))
        assert torch.equal(ref.codes(data.x_test), ours.codes(view.test))
    assert ours.bottleneck.value_usage.sum() > 0
    usage = ref.bottleneck.key_usage(data.x_test)  # the family's own count of the test set's codes
    assert _discrete_measures("dkvb", ours, view.test)["dead_fraction"] == usage["mean_dead_fraction"]


def test_table_metrics_are_the_families_own(small_run):
    res = small_run
    for head, runs in res.runs.items():
        r = runs[0]
        R = np.array(r["R"])
        sizes = [len(t) for t in r["tasks"]]
        assert r["forgetting"] == forgetting(R)
        assert r["backward_transfer"] == backward_transfer(R)
        assert r["final_accuracy"] == continual_metrics(R, sizes)["final_accuracy"]
        assert res.summary[head]["forgetting"]["mean"] == r["forgetting"]  # one seed: the mean is the run
        assert r["i_xz_lower"] <= r["i_xz_upper"] <= math.log2(res.data["n_info"]) + 1e-9
    text = table(res)
    dkvb = res.summary["dkvb"]
    assert f"{100 * dkvb['iid_accuracy']['mean']:.1f} ± 0.0" in text
    assert "cbm" not in res.runs  # no concepts in the file: not run by default
    from bottlenecks.report.compare_report import findings

    plain = [h for h in res.summary if h != "replay"]
    best = max(plain, key=lambda h: res.summary[h]["final_accuracy"]["mean"])
    said = [f for f in findings(res) if f.startswith("Without a replay buffer")]
    assert len(said) == 1 and f"{100 * res.summary[best]['final_accuracy']['mean']:.1f}%" in said[0]
    assert res.summary["linear"]["iid_accuracy"]["mean"] > 0.6  # chance is 1/6


def test_information_is_the_pairwise_estimator_on_scaled_z():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 5, generator=g) * 3 + 1
    y = torch.arange(200) % 4
    got = information(z, y, noise_var=0.1)
    zs = (z.double() - z.double().mean(0))
    zs = zs / zs.pow(2).sum(1).mean().sqrt()
    ref = pairwise_information_bounds(zs, 0.1, y=y, units="bits")
    assert got["i_xz_lower"] == pytest.approx(ref["i_xt_lower"])
    assert got["i_xz_upper"] == pytest.approx(ref["i_xt_upper"])
    assert [got["i_zy_low"], got["i_zy_high"]] == pytest.approx(sorted([ref["i_ty_bd"], ref["i_ty_kl"]]))


def _without_times(runs):
    return {h: [{k: v for k, v in r.items() if "seconds" not in k and "ms_per" not in k} for r in rs]
            for h, rs in runs.items()}


def test_same_seed_same_numbers_and_json_round_trip(blobs_file, small_run):
    # again, with the heads in two worker processes: the same numbers
    again = run(CompareConfig(dataset=str(blobs_file), heads=("dkvb", "vib", "linear"), workers=2, **SMALL),
                progress=False)
    first = _without_times({h: small_run.runs[h] for h in again.runs})
    assert nan_equal(first, _without_times(again.runs))
    assert nan_equal(CompareResults.from_json(small_run.to_json()).runs, small_run.runs)
    other = run(CompareConfig(dataset=str(blobs_file), heads=("linear",), **{**SMALL, "seed": 1}), progress=False)
    assert other.runs["linear"][0]["R"] != small_run.runs["linear"][0]["R"]


def test_bad_input(tmp_path, blobs_file):
    with pytest.raises(ValueError, match=r"unknown head\(s\) \['vae'\].*dkvb"):
        CompareConfig(heads=("linear", "vae"))
    no_labels = tmp_path / "nolabels.npz"
    np.savez(no_labels, x=np.zeros((20, 3), np.float32))
    with pytest.raises(ValueError, match="expected arrays x_train.*found: x"):
        run(CompareConfig(dataset=str(no_labels), **SMALL), progress=False)
    with pytest.raises(ValueError, match="'cbm' needs concept labels.*has none.*concept-shapes"):
        run(CompareConfig(dataset=str(blobs_file), heads=("cbm", "linear"), **SMALL), progress=False)
    with pytest.raises(ValueError, match="not a known data set.*fashion-mnist"):
        run(CompareConfig(dataset="imagenet", **SMALL), progress=False)
    with pytest.raises(ValueError, match="unknown key"):
        CompareConfig.from_dict({"head": ["linear"]})


def test_default_heads_follow_the_data():
    x, y = _blobs(60)
    t = torch.from_numpy
    plain = _Data(t(x), t(y), t(x), t(y), "blobs", [])
    assert "cbm" not in heads_for(CompareConfig(), plain)
    c = t(np.zeros((60, 2), np.int64))
    assert "cbm" in heads_for(CompareConfig(), _Data(t(x), t(y), t(x), t(y), "blobs", [], c, c, ["a", "b"]))


def test_task_accuracies_in_R_match_the_stream_predictions(small_run):
    # R's rows are task_accuracies of the predictions after each task: the last row's class-balanced
    # mean over tasks (weighted by classes) is the final accuracy
    r = small_run.runs["linear"][0]
    R = np.array(r["R"])
    assert R.shape == (3, 3)
    assert np.allclose(np.diag(R), np.diag(R).clip(0, 1))
    assert task_accuracies is not None


def test_seeds_run_apart_and_merged_equal_one_run(blobs_file):
    from bottlenecks.studies.compare import merge_results

    base = dict(SMALL, heads=("linear",))
    both = run(CompareConfig(dataset=str(blobs_file), **{**base, "seeds": 2}), progress=False)
    lrs = both.learning_rates
    parts = [run(CompareConfig(dataset=str(blobs_file), **{**base, "seed": s, "split_seed": 0, "learning_rates": lrs}),
                 progress=False) for s in (1, 0)]
    merged = merge_results(parts)
    assert nan_equal(_without_times(merged.runs), _without_times(both.runs))
    assert merged.summary["linear"]["forgetting"] == both.summary["linear"]["forgetting"]
    with pytest.raises(ValueError, match="seed"):
        merge_results([parts[0], parts[0]])


def test_a_run_folder_gets_its_report_and_page(tmp_path, blobs_file):
    res = run(CompareConfig(dataset=str(blobs_file), heads=("linear", "dkvb"), **SMALL), out=tmp_path, progress=False)
    for name in ("report.md", "report.json", "report.html"):
        assert (tmp_path / name).stat().st_size > 0, name
    from bottlenecks.report.compare_report import write_report

    md = write_report(res, tmp_path / "more", stem="x", caveats=["one encoder only"]).read_text()
    assert md.index("## What the numbers do not show") < md.index("- one encoder only")
    page = (tmp_path / "report.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and "summary.linear.final_accuracy" in page
    assert set(res.runs) == {"linear", "dkvb"}
