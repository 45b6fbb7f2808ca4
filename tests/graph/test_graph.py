import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")

from bottlenecks.cluster import nearest  # noqa: E402
from bottlenecks.data.graphs import make_csbm, split_per_class  # noqa: E402
from bottlenecks.graph import (  # noqa: E402
    GNN,
    CosineQuantizer,
    GraphTokenizer,
    MLPStudent,
    accuracy,
    distillation_loss,
    fit_gnn,
    fit_mlp,
    fit_tokenizer,
    soft_assignments,
    soft_code_kl,
)
from bottlenecks.graph.models import sparse_adjacency  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def csbm():
    # weak features, strong structure: the graph is worth something
    g = make_csbm(n_per_class=80, n_classes=3, n_features=24, p_in=0.08, p_out=0.005, mu=0.6, seed=0)
    tr, va, te = (torch.from_numpy(a) for a in split_per_class(g.labels, 10, 15, seed=0))
    x, ei, y = torch.from_numpy(g.x), torch.from_numpy(g.edge_index), torch.from_numpy(g.labels)
    return g, x, ei, y, tr, va, te


@pytest.fixture(scope="module")
def tokenizer(csbm):
    g, x, ei, y, tr, va, te = csbm
    torch.manual_seed(0)
    tok = GraphTokenizer(g.num_features, 32, 3, 32, seed=0)
    record = fit_tokenizer(tok, x, ei, y, tr, va, epochs=60, patience=60)
    return tok, record


@pytest.fixture(scope="module")
def teacher_targets(csbm, tokenizer):
    """The trained tokenizer's outputs, its soft code assignments (tau 0.1) and every node's index."""
    g, x, ei, *_ = csbm
    tok, _ = tokenizer
    with torch.no_grad():
        out = tok(x, ei)
    return out, soft_assignments(out.embedding, tok.codes, 0.1), torch.arange(g.num_nodes)


# ---------------------------------------------------------------- quantizer

def test_quantizer_shapes_and_kmeans_init():
    torch.manual_seed(0)
    h = torch.randn(200, 8)
    q = CosineQuantizer(16, 8, seed=0).train()
    out, ids, loss = q(h)
    assert out.shape == (200, 8) and ids.shape == (200,) and loss.shape == ()
    assert torch.allclose(q.codes.norm(dim=1), torch.ones(16), atol=1e-5)
    # the forward's value is the chosen code (codes frozen in eval), its gradient reaches h (straight-through)
    q.eval()
    h.requires_grad_(True)
    out, ids, _ = q(h)
    assert torch.allclose(out, q.codes[ids], atol=1e-6)
    out.sum().backward()
    assert h.grad is not None and h.grad.abs().sum() > 0
    # ids are the nearest codes by cosine (cluster.nearest)
    assert torch.equal(ids, nearest(h.detach(), q.codes, 1, "cosine")[1][:, 0])


def test_quantizer_usage_and_dead_code_reseeding():
    torch.manual_seed(0)
    q = CosineQuantizer(8, 4, dead_threshold=0.5, seed=0).train()
    q(torch.randn(64, 4))
    assert abs(float(q.usage().sum()) - 1) < 1e-9
    # from now on the batch sits in one direction: most codes get no hit and must be re-seeded onto it
    tight = torch.tensor([[1.0, 0, 0, 0]]) + 0.01 * torch.randn(64, 4)
    for _ in range(10):
        q(tight)
    assert int(q.replaced) > 0
    assert float((q.codes @ torch.tensor([1.0, 0, 0, 0])).min()) > 0.9


def test_quantizer_bad_input():
    q = CosineQuantizer(8, 4)
    with pytest.raises(ValueError, match=r"expected shape \(n, 4\)"):
        q.train()(torch.randn(10, 5))
    with pytest.raises(ValueError, match="at least as many rows"):
        CosineQuantizer(16, 4).train()(torch.randn(5, 4))
    with pytest.raises(RuntimeError, match="not initialised"):
        CosineQuantizer(8, 4).eval()(torch.randn(10, 4))


# ---------------------------------------------------------------- soft assignments and losses

def test_soft_assignments_sum_to_one_and_peak_at_the_nearest_code():
    torch.manual_seed(0)
    z, codes = torch.randn(50, 6), torch.randn(20, 6)
    for metric in ("cosine", "l2"):
        r = soft_assignments(z, codes, tau=0.5, metric=metric)
        assert r.shape == (50, 20) and (r >= 0).all()
        assert torch.allclose(r.sum(1), torch.ones(50), atol=1e-5)
        nn = nearest(z, codes, 1, metric)[1][:, 0]
        assert torch.equal(r.argmax(1), nn)
    # a lower temperature gives sharper assignments (lower entropy)
    ent = [-(r * r.clamp_min(1e-30).log()).sum(1).mean() for r in
           (soft_assignments(z, codes, t) for t in (1.0, 0.1))]
    assert ent[1] < ent[0]
    with pytest.raises(ValueError, match="temperature"):
        soft_assignments(z, codes, tau=0)


def test_distillation_loss_terms():
    torch.manual_seed(0)
    logits, z, codes = torch.randn(10, 3), torch.randn(10, 4), torch.randn(6, 4)
    probs = torch.softmax(torch.randn(10, 3), -1)
    r_t = soft_assignments(torch.randn(10, 4), codes, 0.5)
    t = distillation_loss(logits, z, labels=torch.randint(0, 3, (10,)), labelled=torch.arange(4),
                          teacher_probs=probs, teacher_assignments=r_t, codes=codes, w_code=2.0, tau=0.5)
    assert set(t) == {"label", "soft_label", "code", "total"}
    assert all(float(v) >= 0 for v in t.values())
    assert torch.allclose(t["total"], t["label"] + t["soft_label"] + 2.0 * t["code"])
    # the KL of a distribution with itself is zero
    assert float(soft_code_kl(z, soft_assignments(z, codes, 0.5), codes, 0.5)) < 1e-5
    with pytest.raises(ValueError, match="code embedding"):
        distillation_loss(logits, None, teacher_assignments=r_t, codes=codes)


# ---------------------------------------------------------------- tokenizer and training

def test_tokenizer_shapes_and_losses(csbm):
    g, x, ei, *_ = csbm
    torch.manual_seed(0)
    tok = GraphTokenizer(g.num_features, 16, 3, 24, seed=0).train()
    out = tok(x, ei)
    n = g.num_nodes
    assert out.logits.shape == (n, 3) and out.embedding.shape == (n, 16) and out.ids.shape == (n,)
    assert set(out.losses) == {"commitment", "feature", "structure"}
    assert all(torch.isfinite(v) and v >= 0 for v in out.losses.values())
    tok.loss(out).backward()
    assert tok.conv1.lin_l.weight.grad is not None and tok.feature_decoder.weight.grad is not None
    # the sparse-adjacency fast path computes the same convolutions
    tok.eval()
    with torch.no_grad():
        a, b = tok(x, ei), tok(x, ei, sparse_adjacency(ei, n))
    assert torch.allclose(a.logits, b.logits, atol=1e-5) and torch.equal(a.ids, b.ids)


def test_tokenizer_learns_and_uses_many_codes(csbm, tokenizer):
    g, x, ei, y, tr, va, te = csbm
    tok, record = tokenizer
    first, last = record["history"][0][0], min(h[0] for h in record["history"])
    assert last < first
    with torch.no_grad():
        out = tok(x, ei)
    assert accuracy(out.logits, y, te) > 0.7
    assert len(torch.unique(out.ids)) >= 8  # tokens distinguish more than the 3 classes


def test_gnn_beats_mlp_on_a_structured_graph(csbm):
    g, x, ei, y, tr, va, te = csbm
    torch.manual_seed(0)
    gnn = GNN(g.num_features, 32, 3)
    fit_gnn(gnn, x, ei, y, tr, va, epochs=60, patience=60)
    torch.manual_seed(0)
    mlp = MLPStudent(g.num_features, 32, 3)
    fit_mlp(mlp, x, y, tr, va, epochs=60, patience=60)
    with torch.no_grad():
        assert accuracy(gnn(x, ei)[0], y, te) > accuracy(mlp(x)[0], y, te) + 0.1


def test_early_stopping_keeps_the_selected_epoch(csbm):
    g, x, ei, y, tr, va, te = csbm
    records = {}
    for select in ("acc", "loss"):
        torch.manual_seed(0)
        gnn = GNN(g.num_features, 32, 3)
        rec = fit_gnn(gnn, x, ei, y, tr, va, epochs=40, patience=40, select=select)
        hist = np.array(rec["history"])  # (epochs, 3): train loss, val accuracy, val loss
        assert rec["epochs"] == 40 and rec["select"] == select
        if select == "acc":  # the highest accuracy, the latest epoch on ties
            assert rec["best_epoch"] == len(hist) - int(np.argmax(hist[::-1, 1]))
        else:
            assert rec["best_epoch"] == int(np.argmin(hist[:, 2])) + 1
        # the kept weights are that epoch's: evaluating them again gives its validation numbers
        with torch.no_grad():
            logits = gnn(x, ei)[0]
        assert accuracy(logits, y, va) == pytest.approx(hist[rec["best_epoch"] - 1, 1])
        assert float(torch.nn.functional.cross_entropy(logits[va], y[va])) == pytest.approx(
            hist[rec["best_epoch"] - 1, 2], rel=1e-5)
        records[select] = rec
    # same seed, same run: the two criteria saw the same curve
    assert np.allclose(np.array(records["acc"]["history"]), np.array(records["loss"]["history"]))
    with pytest.raises(ValueError, match="select"):
        fit_gnn(GNN(g.num_features, 8, 3), x, ei, y, tr, va, epochs=2, select="f1")


def test_distillation_lowers_the_code_kl(csbm, tokenizer, teacher_targets):
    g, x, ei, y, tr, va, te = csbm
    tok, _ = tokenizer
    out, r_t, nodes = teacher_targets

    def code_kl(model):
        with torch.no_grad():
            return float(soft_code_kl(model(x)[1], r_t, tok.codes, 0.1))

    torch.manual_seed(0)
    student = MLPStudent(g.num_features, 32, 3, code_dim=32)
    before = code_kl(student)
    fit_mlp(student, x, y, tr, va, nodes=nodes, teacher_probs=out.logits.softmax(-1), teacher_assignments=r_t,
            codes=tok.codes, w_soft_label=1.0, w_code=1.0, tau=0.1, epochs=40, patience=40, code_batch=None)
    torch.manual_seed(0)
    control = MLPStudent(g.num_features, 32, 3, code_dim=32)  # same start, no code term
    fit_mlp(control, x, y, tr, va, nodes=nodes, teacher_probs=out.logits.softmax(-1), w_soft_label=1.0,
            epochs=40, patience=40)
    after = code_kl(student)
    assert after < 0.7 * before
    assert after < code_kl(control)


def test_mlp_sparse_and_dense_features_agree():
    torch.manual_seed(0)
    m = MLPStudent(10, 8, 3, code_dim=4).eval()
    x = (torch.rand(20, 10) > 0.7).float()
    a, b = m(x), m(x.to_sparse_csr())
    assert torch.allclose(a[0], b[0], atol=1e-6) and torch.allclose(a[1], b[1], atol=1e-6)
    with pytest.raises(ValueError, match="dense x"):
        fit_mlp(m, x.to_sparse_csr(), torch.zeros(20, dtype=torch.long), torch.arange(5), torch.arange(5, 10),
                batch_size=4)


def test_minibatch_student_matches_its_full_batch_quality(csbm):
    g, x, ei, y, tr, va, te = csbm
    torch.manual_seed(0)
    teacher = GNN(g.num_features, 32, 3)
    fit_gnn(teacher, x, ei, y, tr, va, epochs=40, patience=40)
    with torch.no_grad():
        probs = teacher(x, ei)[0].softmax(-1)
    torch.manual_seed(0)
    s = MLPStudent(g.num_features, 32, 3)
    rec = fit_mlp(s, x, y, tr, va, nodes=torch.arange(g.num_nodes), teacher_probs=probs, w_soft_label=1.0,
                  epochs=20, patience=20, batch_size=64, generator=torch.Generator().manual_seed(0))
    assert rec["epochs"] == 20 and np.isfinite(rec["history"][-1][0])


def test_graph_models_save_and_load_whole(csbm, tmp_path):
    g, x, ei, *_ = csbm
    torch.manual_seed(0)
    tok = GraphTokenizer(g.num_features, 16, 3, 24, recon_nodes=32, recon_edges=64, seed=3).train()
    for _ in range(3):
        tok.loss(tok(x, ei)).backward()
    back = GraphTokenizer.from_pretrained(tok.save_pretrained(tmp_path / "tok"))
    assert back.config() == tok.config() and back.training
    for a, b in zip(tok.state_dict().values(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # the generators travel too: the next training step samples the same nodes and edges
    torch.manual_seed(1)
    la = tok.loss(tok(x, ei))
    torch.manual_seed(1)
    lb = back.loss(back(x, ei))
    assert torch.equal(la, lb)
    for model in (GNN(g.num_features, 8, 3, dropout=0.5), MLPStudent(g.num_features, 8, 3, code_dim=4)):
        model.eval()
        loaded = type(model).from_pretrained(model.save_pretrained(tmp_path / type(model).__name__))
        ya = model(x, ei)[0] if isinstance(model, GNN) else model(x)[0]
        yb = loaded(x, ei)[0] if isinstance(model, GNN) else loaded(x)[0]
        assert loaded.config() == model.config() and torch.equal(ya, yb)


def test_alternating_passes_distill_and_step_at_weight_zero(csbm, tokenizer, teacher_targets):
    g, x, ei, y, tr, va, te = csbm
    tok, _ = tokenizer
    out, r_t, nodes = teacher_targets
    torch.manual_seed(0)
    student = MLPStudent(g.num_features, 32, 3, code_dim=32)
    with torch.no_grad():
        before = float(soft_code_kl(student(x)[1], r_t, tok.codes, 0.1))
    rec = fit_mlp(student, x, y, tr, va, nodes=nodes, teacher_probs=out.logits.softmax(-1), teacher_assignments=r_t,
                  codes=tok.codes, w_soft_label=1.0, w_code=1.0, tau=0.1, epochs=30, patience=30, batch_size=64,
                  passes="alternating", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float(soft_code_kl(student(x)[1], r_t, tok.codes, 0.1)) < 0.7 * before
    assert rec["best_val"] > 0.5  # 3 classes: chance is 1/3
    # a pass at weight 0 still takes its Adam step: with weight decay the weights shrink, without it they stay
    for wd, moves in ((0.1, True), (0.0, False)):
        torch.manual_seed(0)
        m = MLPStudent(g.num_features, 8, 3)
        w0 = m.fc1.weight.detach().clone()
        fit_mlp(m, x, y, tr, va, w_label=0.0, weight_decay=wd, epochs=3, patience=3, passes="alternating")
        assert (float(m.fc1.weight.detach().norm()) < float(w0.norm()) - 1e-3) == moves
        assert moves or torch.equal(m.fc1.weight, w0)
    with pytest.raises(ValueError, match="passes"):
        fit_mlp(m, x, y, tr, va, epochs=1, passes="both")
    with pytest.raises(ValueError, match="dense x"):
        fit_mlp(m, x.to_sparse_csr(), y, tr, va, epochs=1, passes="alternating")
