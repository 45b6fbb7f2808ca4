import math

import pytest
import torch

from bottlenecks.info.layers import VariationalIB, cauchy_schwarz_ib_loss, silverman_bandwidth


def test_vib_shapes_and_repr():
    vib = VariationalIB(5, 3, beta=0.1)
    z, kl = vib(torch.randn(7, 5), generator=torch.Generator().manual_seed(0))
    assert z.shape == (7, 3) and kl.shape == (7,)
    assert (kl >= 0).all()
    assert "dim_in=5, dim_z=3, beta=0.1" in repr(vib)


def test_vib_kl_closed_form():
    vib = VariationalIB(4, 2)
    h = torch.randn(6, 4)
    with torch.no_grad():
        mu, logvar = vib.encode(h)
        _, kl = vib(h)
    var = logvar.exp()
    expected = torch.stack([
        sum(0.5 * (var[i, k] + mu[i, k] ** 2 - 1 - math.log(var[i, k])) for k in range(2)) for i in range(6)
    ])
    torch.testing.assert_close(kl, expected)
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    lv = torch.tensor([[0.0, 0.0], [math.log(4.0), 0.0]])
    torch.testing.assert_close(VariationalIB.kl_divergence(mu, lv),
                               torch.tensor([0.0, 0.5 * (4 + 1 - math.log(4) - 1) + 0.5 * 4]))


def test_vib_eval_deterministic_mean_and_train_seeded():
    vib = VariationalIB(4, 3)
    h = torch.randn(5, 4)
    vib.eval()
    z1, _ = vib(h)
    z2, _ = vib(h)
    torch.testing.assert_close(z1, z2)
    torch.testing.assert_close(z1, vib.encode(h)[0])
    vib.train()
    a, _ = vib(h, generator=torch.Generator().manual_seed(3))
    b, _ = vib(h, generator=torch.Generator().manual_seed(3))
    c, _ = vib(h, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_vib_beta_scales_loss():
    kl = torch.tensor([1.0, 3.0])
    task = torch.tensor(0.5)
    assert float(VariationalIB(2, 2, beta=0.0).loss(task, kl)) == pytest.approx(0.5)
    assert float(VariationalIB(2, 2, beta=0.1).loss(task, kl)) == pytest.approx(0.7)
    assert float(VariationalIB(2, 2, beta=1.0).loss(task, kl)) == pytest.approx(2.5)


def test_vib_trains_classification():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    vib = VariationalIB(4, 2, beta=1e-3)
    head = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam([*vib.parameters(), *head.parameters()], lr=0.05)
    losses = []
    for _ in range(60):
        z, kl = vib(x, generator=g)
        loss = vib.loss(torch.nn.functional.cross_entropy(head(z), y), kl)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    vib.eval()
    acc = (head(vib(x)[0]).argmax(1) == y).float().mean()
    assert acc > 0.9


def test_vib_errors():
    vib = VariationalIB(4, 2)
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        vib(torch.randn(3, 5))
    with pytest.raises(ValueError, match="2-D"):
        vib(torch.randn(4))
    with pytest.raises(TypeError, match="floating-point"):
        vib(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="beta"):
        VariationalIB(4, 2, beta=-1.0)
    with pytest.raises(ValueError, match="dim_z"):
        VariationalIB(4, 0)


def test_silverman_rule():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])  # std (n-1) = sqrt(2.5), n = 5, d = 1
    expected = math.sqrt(2.5) * (4 / 3 / 5) ** 0.2
    assert float(silverman_bandwidth(x)) == pytest.approx(expected)
    x2 = torch.tensor([[0.0, 0.0], [2.0, 4.0], [4.0, 8.0]])  # stds 2 and 4 -> mean 3, d = 2, n = 3
    assert float(silverman_bandwidth(x2)) == pytest.approx(3.0 * (4 / (4 * 3)) ** (1 / 6))


def _data(n=12, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, generator=g, dtype=dtype)
    y = (z[:, :1] * 2 + 0.1 * torch.randn(n, 1, generator=g, dtype=dtype))
    return z, y


def test_cs_ib_zero_prediction_term_and_grows():
    z, y = _data(64)
    _, pred0, _ = cauchy_schwarz_ib_loss(z, y.clone(), y, return_terms=True)
    assert abs(float(pred0)) < 1e-5
    prev = float(pred0)
    for scale in (0.3, 1.0, 3.0):
        g = torch.Generator().manual_seed(1)
        y_hat = y + scale * torch.randn(y.shape, generator=g)
        _, pred, _ = cauchy_schwarz_ib_loss(z, y_hat, y, return_terms=True)
        assert float(pred) > prev
        prev = float(pred)


def test_cs_ib_beta_and_compression():
    z, y = _data(32)
    y_hat = y + 0.5
    l0, pred, comp = cauchy_schwarz_ib_loss(z, y_hat, y, beta=0.0, return_terms=True)
    l1 = cauchy_schwarz_ib_loss(z, y_hat, y, beta=0.5)
    assert float(l0) == pytest.approx(float(pred))
    assert float(l1) == pytest.approx(float(pred) + 0.5 * float(comp), rel=1e-5)
    # with x: CS-QMI is ~0 for independent x and z, larger for dependent ones
    g = torch.Generator().manual_seed(5)
    x_ind = torch.randn(200, 2, generator=g)
    z_big = torch.randn(200, 2, generator=g)
    y_big = z_big[:, :1]

    def comp_term(x, sigma):
        return float(cauchy_schwarz_ib_loss(z_big, y_big, y_big, x=x, sigma=sigma, return_terms=True)[2])

    # wide kernel: near 0 when independent; narrow (Silverman) kernels carry a positive finite-n bias
    assert abs(comp_term(x_ind, 1.0)) < 0.05 < 0.2 < comp_term(z_big + 0.1 * x_ind, 1.0)
    assert comp_term(z_big + 0.1 * x_ind, None) > comp_term(x_ind, None) + 0.5


def test_cs_ib_gradcheck():
    z, y = _data(6, dtype=torch.float64)
    z.requires_grad_(True)
    y_hat = (y + 0.3 * torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    y_hat.requires_grad_(True)
    torch.autograd.gradcheck(lambda a, b: cauchy_schwarz_ib_loss(a, b, y, beta=0.1, sigma=(1.0, 0.7)),
                             (z, y_hat))
    x = torch.randn(6, 2, dtype=torch.float64)
    torch.autograd.gradcheck(lambda a, b: cauchy_schwarz_ib_loss(a, b, y, beta=0.1, sigma=1.0, x=x), (z, y_hat))
    # default (Silverman) widths still give finite gradients
    cauchy_schwarz_ib_loss(z, y_hat, y).backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(y_hat.grad).all()


def test_cs_ib_errors():
    z, y = _data(8)
    with pytest.raises(ValueError, match="same shape"):
        cauchy_schwarz_ib_loss(z, y[:, 0].reshape(1, -1), y)
    with pytest.raises(ValueError, match="same number of samples"):
        cauchy_schwarz_ib_loss(z[:5], y, y)
    with pytest.raises(ValueError, match="same number of samples"):
        cauchy_schwarz_ib_loss(z, y, y, x=torch.randn(3, 2))
    with pytest.raises(ValueError, match="3-D|2-D"):
        cauchy_schwarz_ib_loss(z.reshape(2, 4, 3), y, y)
    with pytest.raises(ValueError, match="sigma"):
        cauchy_schwarz_ib_loss(z, y, y, sigma=-1.0)
    with pytest.raises(ValueError, match="beta"):
        cauchy_schwarz_ib_loss(z, y, y, beta=-0.1)
    with pytest.raises(TypeError, match="floating-point"):
        cauchy_schwarz_ib_loss(z, y.long(), y.long())


def test_cs_ib_condition_on_inputs():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(40, 3, generator=g)
    z = torch.randn(40, 2, generator=g, requires_grad=True)
    y = torch.randn(40, generator=g)
    _, pred, _ = cauchy_schwarz_ib_loss(z, y.clone(), y, x=x, condition="x", return_terms=True)
    assert abs(float(pred)) < 1e-5  # perfect predictions: zero divergence whatever the conditioning
    _, far, _ = cauchy_schwarz_ib_loss(z, y + 1.0, y, x=x, condition="x", return_terms=True)
    _, near, _ = cauchy_schwarz_ib_loss(z, y + 0.1, y, x=x, condition="x", return_terms=True)
    assert float(far) > float(near) > 0
    # conditioning on x: the prediction term does not depend on z
    _, other, _ = cauchy_schwarz_ib_loss(3 * z, y + 1.0, y, x=x, condition="x", return_terms=True)
    assert float(other) == pytest.approx(float(far), rel=1e-6)
    with pytest.raises(ValueError, match="needs the inputs"):
        cauchy_schwarz_ib_loss(z, y, y, condition="x")
    with pytest.raises(ValueError, match="condition"):
        cauchy_schwarz_ib_loss(z, y, y, x=x, condition="y")
