"""CodebookLayer / GroupCodebookLayer: shapes, ids, gradients, statistics, dead codes, errors."""

import pytest
import torch
import torch.nn.functional as F

from bottlenecks.codebook import CodebookLayer, GroupCodebookLayer


def _brute_topk(z, codes, k, metric):
    """Top-k ids by a full similarity matrix: z (n, d), codes (K, d) -> (n, k)."""
    if metric == "cosine":
        s = F.normalize(z, dim=-1) @ F.normalize(codes, dim=-1).t()
    elif metric == "dot":
        s = z @ codes.t()
    else:
        s = -torch.cdist(z, codes)
    return s.topk(k, dim=1).indices


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_shapes_and_ids_match_brute_force(metric):
    torch.manual_seed(0)
    layer = CodebookLayer(16, 40, k=3, metric=metric, kmeans_init=False, seed=1).eval()
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    layer.double()
    out, ids, _ = layer(x)
    assert out.shape == (2, 7, 16) and ids.shape == (2, 7, 3)
    want = _brute_topk(x.reshape(-1, 16), layer.codes[0].detach(), 3, metric).reshape(2, 7, 3)
    assert torch.equal(ids, want)
    # the output is the mean of the chosen (unit, for cosine) codes times the learned scale
    v = layer.codes[0].detach()[ids]
    v = F.normalize(v, dim=-1) if metric == "cosine" else v
    torch.testing.assert_close(out, v.mean(2) * layer.scale[0].detach())


def test_group_layer_searches_each_head_in_its_own_codebook():
    torch.manual_seed(0)
    layer = GroupCodebookLayer(12, 3, 20, k=2, metric="dot", kmeans_init=False, scale="none").eval()
    x = torch.randn(5, 12)
    out, ids, _ = layer(x)
    assert out.shape == (5, 12) and ids.shape == (5, 3, 2)
    for g in range(3):
        want = _brute_topk(x[:, 4 * g:4 * g + 4], layer.codes[g].detach(), 2, "dot")
        assert torch.equal(ids[:, g], want)
        torch.testing.assert_close(out[:, 4 * g:4 * g + 4], layer.codes[g].detach()[ids[:, g]].mean(1))


def test_straight_through_gradient_reaches_the_input_and_loss_trains_codes():
    torch.manual_seed(0)
    layer = CodebookLayer(8, 16, k=2, commitment=0.25, scale="learned").train()
    x = torch.randn(64, 8, requires_grad=True)
    out, _, loss = layer(x)
    w = torch.randn(64, 8)
    ((out * w).sum() + loss).backward()
    # downstream gradient passes unchanged, plus the commitment term's gradient
    commit = 0.25 * 2 * (x.detach() - out.detach()) / x.numel()
    torch.testing.assert_close(x.grad, w + commit, atol=1e-5, rtol=1e-5)
    assert layer.codes.grad is not None and layer.codes.grad.abs().sum() > 0
    assert layer.scale.grad is not None


def test_code_gradient_gives_the_chosen_codes_the_downstream_gradient():
    torch.manual_seed(0)
    x = torch.randn(32, 8)
    w = torch.randn(32, 8)
    grads = {}
    for flag in (False, True):
        layer = CodebookLayer(8, 16, k=2, metric="l2", scale="none", reconstruction=0.0, code_gradient=flag).train()
        xi = x.clone().requires_grad_(True)
        out, ids, _ = layer(xi)
        (out * w).sum().backward()
        torch.testing.assert_close(xi.grad, w)  # the input gets the downstream gradient either way
        grads[flag] = (layer.codes.grad, ids)
    assert grads[False][0] is None or grads[False][0].abs().sum() == 0
    # with code_gradient each chosen code gets w / k summed over the tokens that chose it
    g, ids = grads[True]
    want = torch.zeros(16, 8).index_add_(0, ids.reshape(-1), w.repeat_interleave(2, 0) / 2)
    torch.testing.assert_close(g[0], want)


def test_kmeans_initialisation_and_learned_scale_match_the_activation_norm():
    torch.manual_seed(0)
    centres = torch.randn(4, 6) * 5
    x = centres[torch.randint(0, 4, (400,))] + 0.01 * torch.randn(400, 6)
    layer = CodebookLayer(6, 4, k=1, metric="l2", scale="none", kmeans_iter=20, seed=0).train()
    layer(x)
    # k-means over the batch recovers the four centres
    d = torch.cdist(layer.codes[0].detach(), centres)
    assert d.min(1).values.max() < 0.1
    cos = CodebookLayer(6, 8, k=4, metric="cosine", scale="learned").train()
    cos(x)
    cos.eval().reset_stats()
    cos(x)
    raw = CodebookLayer(6, 8, k=4, metric="cosine", scale="none").train()
    raw(x)
    raw.eval().reset_stats()
    raw(x)
    assert abs(cos.norm_ratio() - 1) < 0.15  # matched at initialisation
    assert raw.norm_ratio() < 0.2  # unit codes against activations of norm ~12


def test_running_scale_follows_growing_activations():
    torch.manual_seed(0)
    x = torch.randn(512, 6)
    layers = {mode: CodebookLayer(6, 8, k=2, metric="cosine", scale=mode, seed=0).train()
              for mode in ("running", "learned", "none")}
    for layer in layers.values():
        opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
        for step in range(60):  # the activations grow 4x, as early in training, then settle
            loss = layer(x * (1 + 3 * min(step, 39) / 39))[2]
            opt.zero_grad()
            loss.backward()
            opt.step()
        layer.eval().reset_stats()
        layer(4 * x)
    assert abs(layers["running"].norm_ratio() - 1) < 0.1
    assert layers["learned"].norm_ratio() < 0.5  # gradient steps of ~lr cannot follow a 4x growth
    assert layers["none"].norm_ratio() < 0.15


def test_code_scale_keeps_a_norm_per_code():
    # two directions with very different norms: one shared scale cannot fit both, a norm per code can
    torch.manual_seed(0)
    u, v = F.normalize(torch.randn(2, 6), dim=-1)
    x = torch.stack([u * 1.0, v * 10.0]).repeat(128, 1) + 0.01 * torch.randn(256, 6)
    err = {}
    for mode in ("code", "running"):
        layer = CodebookLayer(6, 2, k=1, metric="cosine", scale=mode, replace_dead=False).train()
        opt = torch.optim.Adam(layer.parameters(), lr=0.05)
        for _ in range(100):
            loss = layer(x)[2]
            opt.zero_grad()
            loss.backward()
            opt.step()
        out, _, _ = layer.eval()(x)
        err[mode] = float(((out - x) ** 2).sum() / (x ** 2).sum())
    assert err["code"] < 0.01
    assert err["running"] > 0.1


def test_statistics_usage_perplexity_dead_fraction():
    layer = CodebookLayer(2, 4, k=1, metric="l2", kmeans_init=False, scale="none").eval()
    with torch.no_grad():
        layer.codes[0] = torch.tensor([[0.0, 0], [10, 0], [0, 10], [10, 10]])
    x = torch.tensor([[0.1, 0], [0.2, 0], [9.9, 0], [10, 0.1]])
    _, ids, _ = layer(x)
    assert ids.flatten().tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(layer.usage()[0], torch.tensor([0.5, 0.5, 0, 0], dtype=torch.float64))
    assert float(layer.perplexity()[0]) == pytest.approx(2.0)
    assert float(layer.dead_fraction()[0]) == pytest.approx(0.5)
    layer.reset_stats()
    assert float(layer.dead_fraction()[0]) == 1.0


def _far_codes_layer(replace_dead):
    layer = CodebookLayer(4, 8, k=1, metric="l2", replace_dead=replace_dead, replace_every=2, scale="none",
                          seed=3).train()
    with torch.no_grad():  # half of the codes sit far from the data: never chosen
        layer.codes[0, :4] = torch.randn(4, 4)
        layer.codes[0, 4:] = 100 + torch.randn(4, 4)
    layer.initialized.fill_(True)
    return layer


def test_dead_code_replacement_revives_unused_codes():
    g = torch.Generator().manual_seed(0)
    data = [torch.randn(256, 4, generator=g) * 2 for _ in range(4)]
    revived, kept = _far_codes_layer(True), _far_codes_layer(False)
    for layer in (revived, kept):
        for x in data:
            layer(x)
        layer.eval().reset_stats()
        layer(torch.randn(2000, 4, generator=torch.Generator().manual_seed(1)) * 2)
    assert int(revived.replaced) >= 4
    assert float(revived.dead_fraction()[0]) == 0.0  # every code is now chosen on fresh data
    assert float(kept.dead_fraction()[0]) == 0.5


def test_ema_updates_move_codes_to_the_mean_of_their_inputs():
    layer = CodebookLayer(2, 2, k=1, metric="l2", ema=True, ema_decay=0.5, replace_dead=False,
                          scale="none").train()
    with torch.no_grad():
        layer.codes[0] = torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    layer.initialized.fill_(True)
    layer.ema_sums.copy_(layer.codes.detach())
    layer.ema_counts.fill_(1.0)
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [6.0, 5.0]])
    for _ in range(30):
        layer(x)
    torch.testing.assert_close(layer.codes[0].detach(), torch.tensor([[1.0, 0.0], [6.0, 5.0]]), atol=1e-4,
                               rtol=0)
    assert not layer.codes.requires_grad


def test_errors_name_what_was_given():
    with pytest.raises(ValueError, match="k=5 is larger than num_codes=4"):
        CodebookLayer(8, 4, k=5)
    with pytest.raises(ValueError, match="not divisible by num_groups|not divisible by num_codebooks"):
        GroupCodebookLayer(10, 3, 8)
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., dim=8\), got \(3, 5\)"):
        CodebookLayer(8, 4)(torch.randn(3, 5))
    with pytest.raises(TypeError, match="floating-point"):
        CodebookLayer(8, 4)(torch.ones(3, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="metric"):
        CodebookLayer(8, 4, metric="manhattan")
    layer = GroupCodebookLayer(8, 2, 4)
    with pytest.raises(ValueError, match="codebook index 2 out of range"):
        layer.set_steering({2: [0]})
    with pytest.raises(ValueError, match=r"code ids \[7\] out of range"):
        layer.set_steering({0: [7]})


def test_low_precision_input_is_searched_in_the_codes_precision_and_returned_in_its_own():
    layer = CodebookLayer(16, 32, k=2, kmeans_init=False, seed=1).eval()
    x = (torch.randn(5, 7, 16, generator=torch.Generator().manual_seed(0)) * 3).to(torch.bfloat16)
    out, ids, _ = layer(x)
    out32, ids32, _ = layer(x.float())  # the same bf16 values, upcast: the codes' float32 search
    assert out.dtype == torch.bfloat16 and torch.equal(ids, ids32)
    assert torch.equal(out, out32.to(torch.bfloat16))
    layer.train()
    xg = x.clone().requires_grad_(True)
    layer(xg)[0].float().sum().backward()
    assert xg.grad.dtype == torch.bfloat16 and torch.equal(xg.grad, torch.ones_like(xg))  # straight-through


def _train_steps(layer, xs):
    """A few training forwards + code updates; returns the outputs and ids of each."""
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    seen = []
    for x in xs:
        out, ids, loss = layer(x)
        opt.zero_grad()
        (out.square().mean() + loss).backward()
        opt.step()
        seen.append((out.detach(), ids))
    return seen


@pytest.mark.parametrize("cls", ["CodebookLayer", "GroupCodebookLayer"])
def test_save_load_round_trips_and_training_continues_identically(tmp_path, cls):
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(64, 8, generator=g) + 4 for _ in range(10)]  # all in one orthant
    make = (lambda: CodebookLayer(8, 6, k=2, scale="code", replace_every=2, seed=3)) if cls == "CodebookLayer" \
        else (lambda: GroupCodebookLayer(8, 2, 6, k=2, scale="running", replace_every=2, seed=3))
    layer = make().train()
    for part in (xs[:4], xs[4:6]):  # k-means init, statistics, dead codes re-seeded (random draws)
        with torch.no_grad():  # two codes per codebook point away from every row: they die
            layer.codes[:, :2] = -4.0
        _train_steps(layer, part)
    assert int(layer.replaced) > 0
    with torch.no_grad():
        layer.codes[:, :2] = -4.0
    replaced = int(layer.replaced)
    layer.save(tmp_path / "cb")
    loaded = type(layer).load(tmp_path / "cb")
    assert type(loaded) is type(layer) and loaded.config() == layer.config()
    for name, t in layer.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name
    # same forward in eval mode, and the same training trajectory from here (dead-code draws included)
    layer.eval(), loaded.eval()
    assert all(torch.equal(a, b) for a, b in zip(layer(xs[6]), loaded(xs[6]), strict=True))
    layer.train(), loaded.train()
    for (oa, ia), (ob, ib) in zip(_train_steps(layer, xs[6:]), _train_steps(loaded, xs[6:]), strict=True):
        assert torch.equal(oa, ob) and torch.equal(ia, ib)
    assert int(layer.replaced) > replaced and int(loaded.replaced) == int(layer.replaced)
    assert torch.equal(layer.codes, loaded.codes)


def test_load_refuses_the_other_class(tmp_path):
    GroupCodebookLayer(8, 2, 4, seed=1).save(tmp_path / "g")
    with pytest.raises(ValueError, match="not a CodebookLayer checkpoint .saved class 'GroupCodebookLayer'"):
        CodebookLayer.load(tmp_path / "g")


def test_save_writes_safetensors_and_config(tmp_path):
    from safetensors.torch import load_file

    layer = GroupCodebookLayer(8, 2, 4, k=2, seed=5)
    layer.save(tmp_path / "cb")
    tensors = load_file(str(tmp_path / "cb" / "model.safetensors"))
    torch.testing.assert_close(tensors["codes"], layer.codes.detach())
    import json

    meta = json.loads((tmp_path / "cb" / "config.json").read_text())
    cfg = meta["config"]
    assert meta["class"] == "GroupCodebookLayer" and cfg["num_codebooks"] == 2 and cfg["k"] == 2


def test_group_layer_takes_num_codebooks_and_its_earlier_name():
    a = GroupCodebookLayer(12, num_codebooks=3, num_codes=8, seed=0)
    b = GroupCodebookLayer(12, num_groups=3, num_codes=8, seed=0)
    assert a.num_codebooks == b.num_codebooks == b.num_groups == 3 and torch.equal(a.codes, b.codes)
    with pytest.raises(ValueError, match="give one"):
        GroupCodebookLayer(12, num_codebooks=3, num_groups=4, num_codes=8)
    with pytest.raises(TypeError, match="expected num_codebooks and num_codes"):
        GroupCodebookLayer(12, num_codes=8)


def test_extreme_magnitudes_are_refused_or_searched_right():
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    layer = CodebookLayer(6, 4, seed=0).double().train()
    layer(x)  # codes from k-means on x
    layer.eval()
    ids = layer(x)[1]
    assert torch.equal(layer(x * 1e-96)[1], ids)  # tiny float64 rows still have a direction
    with pytest.raises(ValueError, match=r"^x: torch.float32 values of magnitude"):
        CodebookLayer(6, 4).train()(x.float() * 1e20)
