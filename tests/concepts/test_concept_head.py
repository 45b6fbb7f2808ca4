"""The gradient-trained concept bottleneck head."""

import pytest
import torch

from bottlenecks.concepts.head import ConceptBottleneckHead


def _data(n=300, dim=12):
    g = torch.Generator().manual_seed(0)
    c = torch.randint(0, 2, (n, 3), generator=g)
    y = c[:, 0] * 2 + c[:, 1]  # the class is a rule over concepts 0 and 1; concept 2 is noise
    w = torch.randn(3, dim, generator=g) * 2
    return c.float() @ w + 0.3 * torch.randn(n, dim, generator=g), y, c


def test_learns_concepts_and_classes_and_intervention_uses_true_concepts():
    x, y, c = _data()
    head = ConceptBottleneckHead(12, 3, 4, seed=0)
    opt = torch.optim.Adam(head.parameters(), lr=2e-2)
    for _ in range(300):
        logits, cl = head(x)
        loss = head.loss(logits, cl, y, c)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits, cl = head(x)
    assert ((cl > 0).long() == c).float().mean() > 0.95
    assert (logits.argmax(1) == y).float().mean() > 0.9
    # an intervention replaces the concept probabilities: the class layer on the true concepts
    got = head.intervene(x, [0, 1, 2], c.float())
    assert torch.allclose(got, head.classes(c.float()))


def test_bad_input():
    head = ConceptBottleneckHead(12, 3, 4)
    x, y, c = _data(10)
    logits, cl = head(x)
    with pytest.raises(ValueError, match="one 0/1 entry per concept"):
        head.loss(logits, cl, y, c[:, :2])
    with pytest.raises(ValueError, match="out of range"):
        head.intervene(x, [5], c[:, :1].float())
