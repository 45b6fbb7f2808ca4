import json
import math

import pytest
import torch

from bottlenecks.studies.info_plane import InfoPlaneConfig, InfoPlaneResults, TwelveBitNet, run


def run_info_plane(out, **kwargs):
    return run(InfoPlaneConfig(**kwargs), out=out, progress=False)


@pytest.mark.slow
def test_run_info_plane_writes_report_and_respects_bounds(tmp_path):
    m = run_info_plane(tmp_path, activation="both", epochs=12, n_points=4, seed=0)
    for name in ("info-plane-tanh.png", "info-plane-relu.png", "report.md", "metrics.json"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["runs"].keys() == {"tanh", "relu"}
    assert InfoPlaneResults.from_json(tmp_path / "metrics.json") == m
    h_y = m["data"]["h_y_bits"]
    assert h_y == pytest.approx(0.99916, abs=1e-5)
    for run_ in m["runs"].values():
        epochs = [h["epoch"] for h in run_["history"] if h["layer"] == "act0"]
        assert epochs[0] == 0 and epochs[-1] == 12 and len(epochs) == 4 and epochs == sorted(set(epochs))
        for layer in run_["layers"].values():
            assert 0 <= layer["i_ty_final"] <= h_y + 1e-12  # data processing: I(T;Y) <= I(X;Y) = H(Y)
            assert 0 <= layer["i_xt_final"] <= 12 + 1e-12
            assert layer["degree_of_ib_bits"] <= layer["i_xt_final"] + 1e-9  # I(X;T|Y) <= H(T)
        assert run_["final"]["train_acc"] > 0.5
    assert "| act4 |" in (tmp_path / "report.md").read_text()


def test_same_seed_same_numbers(tmp_path):
    a = run_info_plane(tmp_path / "a", activation="relu", epochs=3, n_points=2, seed=5)
    b = run_info_plane(tmp_path / "b", activation="relu", epochs=3, n_points=2, seed=5)
    assert a["runs"]["relu"]["history"] == b["runs"]["relu"]["history"]
    assert a["runs"]["relu"]["final"] == b["runs"]["relu"]["final"]


def test_net_and_errors(tmp_path):
    net = TwelveBitNet("relu")
    assert net(torch.zeros(3, 12)).shape == (3, 2)
    assert net.layer_names == ["act0", "act1", "act2", "act3", "act4"] and "relu" in repr(net)
    with pytest.raises(ValueError, match="activation"):
        run_info_plane(tmp_path, activation="gelu")
    with pytest.raises(ValueError, match="train_fraction"):
        run_info_plane(tmp_path, train_fraction=math.inf)
