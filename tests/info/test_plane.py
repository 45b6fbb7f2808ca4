import math

import numpy as np
import pytest
import torch
from torch import nn

from bottlenecks.data.twelve_bit import load_twelve_bit
from bottlenecks.info.plane import InfoPlane, binned_information


def _h_bits(y: torch.Tensor) -> float:
    p = float(y.float().mean())
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


@pytest.fixture(scope="module")
def data():
    return load_twelve_bit()


@pytest.mark.parametrize("bins", [2, 30])
def test_binning_injective_layer(data, bins):
    x, y = data
    i_xt, i_ty = binned_information(x, y, bins=bins)
    assert i_xt == pytest.approx(12.0, abs=1e-9)
    assert i_ty == pytest.approx(_h_bits(y), abs=1e-9)


def test_binning_constant_layer(data):
    x, y = data
    i_xt, i_ty = binned_information(torch.full((4096, 5), 0.7), y)
    assert i_xt == 0.0 and i_ty == 0.0


def test_infoplane_identity_module(data):
    x, y = data
    model = nn.Sequential(nn.Identity(), nn.Linear(12, 1))
    with InfoPlane(model, ["0"], x, y, bins=2) as plane:
        (rec,) = plane.record(0)
    assert rec["layer"] == "0" and rec["i_xt"] == pytest.approx(12.0)
    assert rec["i_ty"] == pytest.approx(_h_bits(y))


class TinyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(12, 8), nn.Linear(8, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.out(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


def test_infoplane_training_and_plot(data, tmp_path):
    x, y = data
    torch.manual_seed(0)
    model = TinyMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    layers = ["fc1", "fc2", "out"]
    epochs = 4
    with InfoPlane(model, layers, x, y, bins=30) as plane:
        for epoch in range(epochs):
            model.train()
            for idx in torch.randperm(4096).split(256):
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
            plane.record(epoch)
            assert model.training  # previous mode restored
        png = plane.plot(tmp_path / "sub" / "plane.png")
    assert len(plane.history) == epochs * len(layers)
    for layer in layers:
        traj = plane.trajectory(layer)
        assert traj[:, 0].tolist() == list(range(epochs))
    for h in plane.history:
        assert h["i_ty"] <= h["i_xt"] + 1e-9 <= 12.0 + 1e-9
        assert h["i_ty"] >= 0.0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    img = imread(png)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_every_skips_epochs(data):
    x, y = data
    model = TinyMLP()
    with InfoPlane(model, ["fc1"], x, y, every=2) as plane:
        assert plane.record(1) == []
        assert len(plane.record(2)) == 1
    assert len(plane.history) == 1


def test_continuous_estimator_runs(data):
    x, y = data
    torch.manual_seed(1)
    model = TinyMLP()
    idx = torch.randperm(4096, generator=torch.Generator().manual_seed(0))[:512]
    with InfoPlane(model, ["fc2"], x[idx], y[idx], estimator="gaussian") as plane:
        (rec,) = plane.record(0)
    assert np.isfinite(rec["i_xt"]) and np.isfinite(rec["i_ty"])


def test_hooks_removed_leave_outputs_unchanged(data):
    x, y = data
    torch.manual_seed(2)
    model = TinyMLP()
    before = model(x).detach()
    plane = InfoPlane(model, ["fc1", "fc2"], x, y)
    assert torch.equal(model(x).detach(), before)
    plane.record(0)
    plane.remove()
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    assert torch.equal(model(x).detach(), before)
    with pytest.raises(RuntimeError):
        plane.record(1)


def test_bad_inputs(data):
    x, y = data
    model = TinyMLP()
    with pytest.raises(ValueError, match="not found"):
        InfoPlane(model, ["nope"], x, y)
    with pytest.raises(ValueError):
        InfoPlane(model, ["fc1"], x, y, estimator="magic")
    with pytest.raises(ValueError):
        InfoPlane(model, ["fc1"], x, y[:10])
    with InfoPlane(model, ["fc1"], x, y) as plane, pytest.raises(RuntimeError):
        plane.plot("unused.png")


def test_pairwise_estimator_and_degree_of_ib(data):
    x, y = data
    idx = torch.randperm(4096, generator=torch.Generator().manual_seed(1))[:256]
    ident = nn.Sequential(nn.Identity())
    with InfoPlane(ident, ["0"], x[idx], y[idx], estimator="pairwise", noise_var=1e-4) as plane:
        (rec,) = plane.record(0)
        # distinct binary inputs, tiny noise: every component is separate, I(X;T) = log2(n) and I(T;Y) = H(Y)
        assert rec["i_xt"] == pytest.approx(8.0, abs=1e-6)
        assert rec["i_ty"] == pytest.approx(_h_bits(y[idx]), abs=1e-6)
        deg = plane.degree_of_ib(bins=2)
    # binary inputs in 2 bins are the inputs themselves: I(X;T|Y) = H(X|Y) = log2 n - H(Y)
    assert deg["0"] == pytest.approx(8.0 - _h_bits(y[idx]), abs=1e-9)
    with pytest.raises(ValueError, match="noise_var"):
        InfoPlane(ident, ["0"], x, y, estimator="pairwise")
