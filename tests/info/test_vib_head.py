"""The VIB classification head."""

import pytest
import torch

from bottlenecks.info.heads import VIBClassifier


def _data(n=200, dim=10, classes=3):
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(classes, dim, generator=g) * 3
    y = torch.arange(n) % classes
    return centres[y] + torch.randn(n, dim, generator=g), y


def test_learns_and_the_kl_is_the_layers():
    x, y = _data()
    head = VIBClassifier(10, 3, dim_z=4, hidden=16, beta=1e-2, seed=0)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(80):
        logits, kl = head(x)
        loss = head.loss(logits, y, kl)
        losses.append(float(loss))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.3 * losses[0]
    head.eval()
    with torch.no_grad():
        logits, kl = head(x)
        mu, logvar = head.vib.encode(head.encoder(x))
    assert (logits.argmax(1) == y).float().mean() > 0.95
    assert torch.allclose(kl, head.vib.kl_divergence(mu, logvar))
    assert torch.allclose(head.encode(x)[0], mu)  # eval mode: z is the mean


def test_noise_is_seeded_and_beta_is_a_parameter():
    x, _ = _data(20)
    a, b = VIBClassifier(10, 3, seed=1), VIBClassifier(10, 3, seed=1)
    assert torch.equal(a(x)[0], b(x)[0])  # training mode: same weights, same noise
    assert VIBClassifier(10, 3, beta=0.5).beta == 0.5
    with pytest.raises(ValueError, match="beta"):
        VIBClassifier(10, 3, beta=-1.0)
    with pytest.raises(ValueError, match=r"expected shape \(batch, 10\)"):
        a(torch.zeros(2, 4))
