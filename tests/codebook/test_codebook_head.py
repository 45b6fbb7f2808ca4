"""The VQ top-k codebook classification head."""

import pytest
import torch

from bottlenecks.codebook.head import CodebookClassifier


def _data(n=256, dim=10, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 3
    y = torch.arange(n) % classes
    return centres[y] + torch.randn(n, dim, generator=g), y


def test_shapes_codes_and_learning():
    x, y = _data()
    head = CodebookClassifier(10, 4, dim=8, num_codes=16, k=2, seed=0)
    logits, ids, closs = head(x)
    assert closs.dim() == 0
    assert logits.shape == (256, 4) and ids.shape == (256, 2)
    assert int(ids.max()) < 16
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        logits, _, closs = head(x)
        loss = head.loss(logits, y, closs)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    with torch.no_grad():
        acc = (head(x)[0].argmax(1) == y).float().mean()
    assert float(loss.detach()) < 0.5 * first and acc > 0.9


def test_decoder_reads_only_the_codes():
    # two inputs that pick the same codes get the same logits: the head is a discrete bottleneck
    x, _ = _data(64)
    head = CodebookClassifier(10, 4, dim=8, num_codes=4, k=1, seed=0).eval()
    with torch.no_grad():
        logits, ids, _ = head(x)
    same = (ids[:, 0] == ids[0, 0]).nonzero().flatten()
    assert len(same) > 1
    assert torch.allclose(logits[same], logits[same[0]].expand(len(same), -1))


def test_seeded_and_bad_input():
    a, b = CodebookClassifier(10, 4, seed=3), CodebookClassifier(10, 4, seed=3)
    assert torch.equal(a.project.weight, b.project.weight)
    assert not torch.equal(a.project.weight, CodebookClassifier(10, 4, seed=4).project.weight)
    with pytest.raises(ValueError, match=r"expected shape \(batch, 10\)"):
        a(torch.zeros(3, 9))
    with pytest.raises(ValueError, match="k=9 is larger than num_codes=8"):
        CodebookClassifier(10, 4, num_codes=8, k=9)
