import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from bottlenecks.continual.methods import make_learner
from bottlenecks.studies.continual import ContinualConfig, ContinualResults, load_data, run, run_experiment


def digits():
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    cut = 1400
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


SMALL = {"num_codebooks": 8, "keys_per_codebook": 32, "dim_key": 8, "head_lr": 1e-2}  # typed config fields


@pytest.mark.slow
def test_every_method_runs_end_to_end_and_reports_its_metrics():
    cfg = ContinualConfig(n_tasks=5, epochs=2, batch_size=64, methods=("dkvb", "linear", "mlp", "replay"),
                          eval_every=10, **SMALL)
    res = run_experiment(*digits(), cfg, progress=False)
    assert set(res["methods"]) == {"dkvb", "linear", "mlp", "replay", "dkvb-joint", "linear-joint",
                                   "mlp-joint", "replay-joint"}
    for name, r in res["methods"].items():
        run = r["runs"][0]
        assert 0.0 <= run["final_accuracy"] <= 1.0
        assert run["curve"]["steps"], name
        if not name.endswith("joint"):
            R = np.array(run["R"])
            assert R.shape == (5, 5) and not np.isnan(R).any()
            assert run["task_boundaries"][-1] > run["task_boundaries"][0]
    joint = res["methods"]["linear-joint"]["runs"][0]["final_accuracy"]
    assert joint > 0.8  # i.i.d. training on digits pixels is easy
    # naive fine-tuning forgets: its final accuracy falls far below its joint twin
    assert res["methods"]["linear"]["runs"][0]["final_accuracy"] < joint - 0.3
    # the bottleneck keeps most of what it learned
    dkvb = res["methods"]["dkvb"]["runs"][0]
    assert dkvb["final_accuracy"] > res["methods"]["linear"]["runs"][0]["final_accuracy"]


def test_same_seed_same_results():
    cfg = ContinualConfig(n_tasks=5, epochs=1, batch_size=64, methods=("dkvb", "linear"), joint=False,
                          **SMALL)
    a = run_experiment(*digits(), cfg, progress=False)
    b = run_experiment(*digits(), cfg, progress=False)
    for m in ("dkvb", "linear"):
        assert a["methods"][m]["runs"][0]["R"] == b["methods"][m]["runs"][0]["R"]


def test_bad_configuration_errors():
    with pytest.raises(ValueError, match="unknown method"):
        ContinualConfig(methods=("ewc",))
    with pytest.raises(ValueError, match="n_tasks"):
        run_experiment(*digits(), ContinualConfig(dataset="mine.npz", n_tasks=11, methods=("linear",)),
                       progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        make_learner("ewc", 4, 2)


def test_a_typo_in_a_size_is_an_error_not_the_default_bottleneck():
    with pytest.raises(ValueError, match=r"'num_codebok' \(did you mean 'num_codebooks'\?\)"):
        ContinualConfig.from_dict({"num_codebok": 8})
    with pytest.raises(TypeError, match="num_codebok"):
        ContinualConfig(num_codebok=8)
    with pytest.raises(ValueError, match="did you mean 'num_codebooks'"):
        make_learner("dkvb", 4, 2, num_codebok=8)
    with pytest.raises(ValueError, match="num_codebooks"):
        ContinualConfig(num_codebooks=0)


def test_toy2d_tasks_are_checked_not_changed():
    with pytest.raises(ValueError, match="n_tasks: toy2d has 8 classes.*got 5"):
        ContinualConfig(dataset="toy2d", n_tasks=5)
    with pytest.raises(ValueError, match="n_tasks: digits has 10 classes"):
        ContinualConfig(dataset="digits", n_tasks=11)
    toy = ContinualConfig(dataset="toy2d").resolved(800)
    assert (toy.n_tasks, toy.epochs, toy.num_codebooks, toy.keys_per_codebook, toy.dim_key, toy.batch_size) == \
        (4, 20, 16, 64, 2, 32)
    assert ContinualConfig(dataset="toy2d", n_tasks=2).resolved().n_tasks == 2
    big = ContinualConfig(dataset="digits").resolved(60_000)
    assert (big.n_tasks, big.num_codebooks, big.keys_per_codebook, big.dim_key, big.batch_size) == (5, 64, 512, 14, 256)


@pytest.mark.slow
def test_the_study_runs_from_its_config_and_its_results_round_trip(tmp_path):
    cfg = ContinualConfig(dataset="toy2d", epochs=1, methods=("dkvb", "linear"), joint=False, num_codebooks=4,
                          keys_per_codebook=16)
    data = load_data(cfg)
    assert data.keys_from.shape == (4096, 2) and data.x_train.shape[1] == 2
    res = run(cfg, out=tmp_path, progress=False, data=data)
    assert res.dataset == "toy2d" and res.config["n_tasks"] == 4 and res.config["dim_key"] == 2
    assert set(res.methods) == {"dkvb", "linear"} and np.array(res.methods["dkvb"]["runs"][0]["R"]).shape == (4, 4)
    assert (tmp_path / "decision_regions.png").stat().st_size > 1000
    saved = ContinualResults.from_json(tmp_path / "metrics.json")
    assert saved.methods["dkvb"]["runs"][0]["R"] == res.methods["dkvb"]["runs"][0]["R"]
    assert saved.notes == res.notes and "4 tasks of 2 classes" in " ".join(res.notes)


def test_partial_results_are_written_as_each_method_finishes(tmp_path):
    seen = []
    cfg = ContinualConfig(dataset="digits", epochs=1, batch_size=64, methods=("linear", "mlp"), joint=False, **SMALL)
    run_experiment(*digits(), cfg, progress=False, on_run_end=lambda partial: seen.append(sorted(partial["methods"])))
    assert seen == [["linear"], ["linear", "mlp"]]


def test_replay_buffer_is_a_uniform_reservoir():
    learner = make_learner("replay", 3, 2, buffer_size=50)
    for s in range(10):
        x = torch.full((20, 3), float(s))
        learner.fit_batch(x, torch.zeros(20, dtype=torch.long))
    assert learner.seen == 200
    stored = learner.buffer_x[:, 0]
    assert len(set(stored.tolist())) > 5  # samples from many batches, not only the last
