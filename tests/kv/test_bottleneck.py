import pytest
import torch

from bottlenecks.kv import DiscreteKeyValueBottleneck, KeyValueClassifier, train_values


def blobs(n=600, dim=16, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 3
    y = torch.randint(0, classes, (n,), generator=g)
    return centers[y] + torch.randn(n, dim, generator=g), y


def small(**kw):
    args = dict(dim_in=16, num_codebooks=8, keys_per_codebook=32, dim_key=4, dim_value=4)
    args.update(kw)
    return DiscreteKeyValueBottleneck(**args)


def test_shapes_and_learning_on_separable_data():
    x, y = blobs()
    b = small().fit_keys(x).freeze_keys()
    values, idx, _ = b(x[:5])
    assert values.shape == (5, 8, 4) and idx.shape == (5, 8, 1)
    model = KeyValueClassifier(None, b).fit(x, y, epochs=10)
    assert (model.predict(x) == y).float().mean() > 0.9


def test_keys_do_not_change_during_value_training_and_only_values_are_parameters():
    x, y = blobs()
    b = small().fit_keys(x).freeze_keys()
    keys, proj = b.keys.clone(), b.projection.clone()
    assert [name for name, _ in b.named_parameters()] == ["values"]
    train_values(KeyValueClassifier(None, b), x, y, epochs=3)
    assert torch.equal(b.keys, keys) and torch.equal(b.projection, proj)
    assert b.values.abs().sum() > 0


def test_only_fetched_values_receive_gradient():
    x, _ = blobs(n=7)
    b = small().fit_keys(blobs()[0]).freeze_keys()
    values, idx, _ = b(x)
    values.sum().backward()
    grad = b.values.grad
    touched = torch.zeros(8, 32, dtype=torch.bool)
    for c in range(8):
        touched[c, idx[:, c, 0]] = True
    assert bool((grad.abs().sum(-1) > 0)[touched].all())
    assert bool((grad[~touched] == 0).all())


def test_untrained_keys_are_unreachable_at_eval():
    x, y = blobs()
    b = small().fit_keys(x).freeze_keys()
    model = KeyValueClassifier(None, b)
    train_values(model, x[y < 2], y[y < 2], epochs=1)  # only some keys get trained
    trained = b.value_usage > 0
    assert not bool(trained.all())
    model.eval()
    _, idx, _ = b(x)  # includes inputs of never-seen classes
    assert bool(trained.gather(1, idx[:, :, 0].T).all())
    b.mask_untrained = False  # without the mask, some lookups land on untrained keys
    _, idx, _ = b(x)
    assert not bool(trained.gather(1, idx[:, :, 0].T).all())


def test_chunk_projection_hand_computed_example():
    b = DiscreteKeyValueBottleneck(4, num_codebooks=2, keys_per_codebook=2, dim_value=3, projection="chunk")
    b.set_keys(torch.tensor([[[0.0, 0.0], [1.0, 1.0]],      # head 0 keys
                             [[0.0, 0.0], [-1.0, 2.0]]]))   # head 1 keys
    with torch.no_grad():
        b.values.copy_(torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]],
                                     [[0.0, 0.0, 4.0], [6.0, 0.0, 0.0]]]))
    b.freeze_keys()
    model = KeyValueClassifier(None, b).eval()
    b.mask_untrained = False
    x = torch.tensor([[0.9, 1.2, -0.8, 1.9],    # head 0 -> key 1, head 1 -> key 1
                      [0.1, -0.2, 0.1, 0.3]])   # head 0 -> key 0, head 1 -> key 0
    expected = torch.tensor([[(0 + 6) / 2, (2 + 0) / 2, 0.0],
                             [(1 + 0) / 2, 0.0, (0 + 4) / 2]])
    torch.testing.assert_close(model(x), expected)


def test_topk_sums_the_fetched_values():
    x, _ = blobs(n=20)
    b = small(topk=3).fit_keys(blobs()[0]).freeze_keys()
    with torch.no_grad():
        b.values.normal_()
    values, idx, _ = b(x)
    assert idx.shape == (20, 8, 3)
    manual = torch.stack([b.values[c, idx[:, c]].sum(1) for c in range(8)], 1)
    torch.testing.assert_close(values, manual)


def test_gradcheck_on_the_value_path():
    b = small(dim_value=2, keys_per_codebook=8).double()
    b.fit_keys(blobs(n=100)[0].double()).freeze_keys()
    x = blobs(n=4)[0].double()
    _, idx, _ = b(x)
    with torch.no_grad():
        b.values.normal_()
    values = b.values.detach().clone().requires_grad_(True)

    def f(v):
        flat = idx + torch.arange(8).view(1, 8, 1) * 8
        return torch.nn.functional.embedding(flat, v.view(-1, 2)).sum(2).mean(1)

    assert torch.autograd.gradcheck(f, (values,))


def test_same_seed_same_keys_values_logits():
    x, y = blobs()
    outs = []
    for _ in range(2):
        b = small(seed=3).fit_keys(x).freeze_keys()
        model = KeyValueClassifier(None, b).fit(x, y, epochs=2, seed=5)
        outs.append((b.keys.clone(), b.values.detach().clone(), model.eval()(x[:10]).detach()))
    for a, c in zip(outs[0], outs[1], strict=True):
        assert torch.equal(a, c)


@pytest.mark.parametrize("method", ["kmeans", "ema", "random"])
def test_fit_keys_methods_cover_the_data(method):
    x, _ = blobs(n=800)
    b = small(key_init=method).fit_keys(x, epochs=3)
    usage = b.key_usage(x)
    assert usage["counts"].sum() == 800 * 8
    assert usage["mean_dead_fraction"] < 0.5


def test_kmeans_keys_equal_one_kmeans_per_head_from_the_same_rows():
    from bottlenecks.cluster.lloyd import kmeans as kmeans_2d

    x, _ = blobs(n=500)
    b = small().fit_keys(x, kmeans_iter=15)
    z = b.project(x)
    g = torch.Generator().manual_seed(b.seed + 1)  # fit_keys draws each head's starting rows in turn
    for c in range(b.num_codebooks):
        rows = torch.randperm(len(z), generator=g)[:b.keys_per_codebook]
        alone = kmeans_2d(z[:, c].contiguous(), b.keys_per_codebook, init=z[rows, c], max_iter=15, tol=1e-4)
        torch.testing.assert_close(b.keys[c], alone.centroids, rtol=1e-6, atol=1e-6)


def test_fit_keys_from_a_dataloader_and_batches():
    x, y = blobs(n=300)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=50)
    a = small(key_init="ema").fit_keys(loader, epochs=2)
    b = small(key_init="ema").fit_keys([x[i:i + 50] for i in range(0, 300, 50)], epochs=2)
    torch.testing.assert_close(a.keys, b.keys)


def test_state_dict_and_safetensors_round_trip_exactly(tmp_path):
    x, y = blobs()
    b = small(topk=2).fit_keys(x).freeze_keys()
    KeyValueClassifier(None, b).fit(x, y, epochs=1)
    path = tmp_path / "dkvb.safetensors"
    b.save(path)
    c = DiscreteKeyValueBottleneck.load(path)
    for (ka, va), (kb, vb) in zip(b.state_dict().items(), c.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    b.eval(), c.eval()
    assert torch.equal(b(x)[0], c(x)[0])


def test_reset_values_clears_values_and_usage():
    x, y = blobs()
    b = small().fit_keys(x).freeze_keys()
    KeyValueClassifier(None, b).fit(x, y)
    b.reset_values()
    assert b.values.abs().sum() == 0 and b.value_usage.sum() == 0


def test_errors_are_clear():
    b = small()
    with pytest.raises(RuntimeError, match="fit_keys"):
        b(torch.randn(3, 16))
    b.fit_keys(blobs()[0])
    with pytest.raises(ValueError, match="dim_in=16"):
        b(torch.randn(3, 15))
    with pytest.raises(ValueError, match="NaN"):
        b(torch.full((2, 16), float("nan")))
    with pytest.raises(ValueError, match="topk=40"):
        small(topk=40)
    with pytest.raises(ValueError, match="divisible"):
        DiscreteKeyValueBottleneck(10, num_codebooks=3, projection="chunk")
    with pytest.raises(ValueError, match="at least keys_per_codebook"):
        small().fit_keys(torch.randn(10, 16))
    with pytest.warns(RuntimeWarning, match="never fitted"):
        small().freeze_keys()
    with pytest.raises(ValueError, match="num_classes"):
        KeyValueClassifier(None, small(), num_classes=7)


def test_fit_keys_takes_numpy_and_lists_and_names_bad_data():
    import numpy as np

    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))

    def fitted(data):
        b = DiscreteKeyValueBottleneck(8, num_codebooks=2, keys_per_codebook=4, dim_key=3, seed=0)
        return b.fit_keys(data, kmeans_iter=5).keys

    want = fitted(x)
    assert torch.equal(fitted(x.numpy()), want) and torch.equal(fitted(x.tolist()), want)
    assert torch.equal(fitted([(x[:32], None), (x[32:], None)]), want)  # an iterable of (x, y) batches
    for bad, err in (("data.npy", TypeError), (None, TypeError), (np.array([["a", "b"]]), TypeError),
                     (torch.zeros(0, 8), ValueError)):
        with pytest.raises(err, match="data"):
            fitted(bad)


@pytest.mark.parametrize("topk", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_value_gradient_equals_the_embedding_gradient(topk, dtype):
    x, _ = blobs(n=40)
    b = small(topk=topk).fit_keys(blobs()[0]).freeze_keys().to(dtype)
    with torch.no_grad():
        b.values.normal_(generator=torch.Generator().manual_seed(1))
    w = torch.randn(40, 8, 4, generator=torch.Generator().manual_seed(2), dtype=dtype)
    values, idx, _ = b(x.to(dtype))
    (values * w).sum().backward()
    flat = idx + torch.arange(8).view(1, 8, 1) * 32
    table = b.values.detach().view(-1, 4).clone().requires_grad_()
    ref = torch.nn.functional.embedding(flat, table).sum(2)
    (ref * w).sum().backward()
    assert torch.equal(values, ref)
    torch.testing.assert_close(b.values.grad.view(-1, 4), table.grad, rtol=1e-6, atol=1e-7)
    b.values.grad = None
    values, _, _ = b(x.to(dtype), sparse_grad=True)  # the sparse gradient: the same numbers
    (values * w).sum().backward()
    torch.testing.assert_close(b.values.grad.to_dense().view(-1, 4), table.grad, rtol=1e-6, atol=1e-7)
