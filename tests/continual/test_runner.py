import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from bottlenecks.continual.methods import make_learner
from bottlenecks.continual.runner import ContinualConfig, run_experiment


def digits():
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    cut = 1400
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


SMALL = {"num_codebooks": 8, "keys_per_codebook": 32, "dim_key": 8, "head_lr": 1e-2}


def test_every_method_runs_end_to_end_and_reports_its_metrics():
    cfg = ContinualConfig(n_tasks=5, epochs=2, batch_size=64, methods=("dkvb", "linear", "mlp", "replay"),
                          eval_every=10, options=SMALL)
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
                          options=SMALL)
    a = run_experiment(*digits(), cfg, progress=False)
    b = run_experiment(*digits(), cfg, progress=False)
    for m in ("dkvb", "linear"):
        assert a["methods"][m]["runs"][0]["R"] == b["methods"][m]["runs"][0]["R"]


def test_bad_configuration_errors():
    with pytest.raises(ValueError, match="unknown method"):
        run_experiment(*digits(), ContinualConfig(methods=("ewc",)), progress=False)
    with pytest.raises(ValueError):
        run_experiment(*digits(), ContinualConfig(n_tasks=11, methods=("linear",)), progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        make_learner("ewc", 4, 2)


def test_replay_buffer_is_a_uniform_reservoir():
    learner = make_learner("replay", 3, 2, buffer_size=50)
    for s in range(10):
        x = torch.full((20, 3), float(s))
        learner.fit_batch(x, torch.zeros(20, dtype=torch.long))
    assert learner.seen == 200
    stored = learner.buffer_x[:, 0]
    assert len(set(stored.tolist())) > 5  # samples from many batches, not only the last
