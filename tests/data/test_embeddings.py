"""User embeddings from .npz / .safetensors: both layouts, the stratified split and the error messages."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from bottlenecks.data import EmbeddingDataset, load_embeddings, stratified_split


def _xy(n=60, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return rng.normal(size=(n, d)), y


def test_npz_with_a_given_split(tmp_path):
    x, y = _xy()
    path = tmp_path / "feats.npz"
    np.savez(path, x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:].astype(np.int32), extra=np.ones(2))
    ds = load_embeddings(path)
    assert isinstance(ds, EmbeddingDataset)
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape == (40, 5) and ds.x_test.shape == (20, 5)
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    np.testing.assert_allclose(ds.x_train, x[:40].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, y[40:])
    assert ds.name == "feats" and ds.source == str(path.resolve())
    assert ds.dim == 5 and ds.n_classes == 3
    with pytest.raises(AttributeError):  # frozen
        ds.name = "other"


def test_npz_x_y_is_split_stratified_and_seeded(tmp_path):
    x, y = _xy(n=50, k=5)
    path = tmp_path / "xy.npz"
    np.savez(path, x=x, y=y)
    a, b, c = load_embeddings(path), load_embeddings(path), load_embeddings(path, seed=1)
    assert len(a.x_train) == 40 and len(a.x_test) == 10
    assert np.bincount(a.y_test).tolist() == [2] * 5  # 20% of each class
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_test, c.x_test)
    # every row lands in exactly one split
    rows = np.concatenate([a.x_train, a.x_test])
    assert sorted(map(tuple, rows.round(5))) == sorted(map(tuple, x.astype(np.float32).round(5)))
    half = load_embeddings(path, test_fraction=0.5)
    assert len(half.x_test) == 25


def test_safetensors_both_layouts(tmp_path):
    x, y = _xy()
    save_file({"x": x.astype(np.float32), "y": y.astype(np.int64)}, str(tmp_path / "a.safetensors"))
    save_file({"x_train": x[:30].astype(np.float16), "y_train": y[:30].astype(np.uint8),
               "x_test": x[30:].astype(np.float16), "y_test": y[30:].astype(np.uint8)},
              str(tmp_path / "b.safetensors"))
    a = load_embeddings(tmp_path / "a.safetensors")
    b = load_embeddings(str(tmp_path / "b.safetensors"))
    assert a.x_train.shape == (48, 5) and a.y_train.dtype == np.int64
    assert b.x_train.dtype == np.float32 and b.y_train.dtype == np.int64 and b.x_test.shape == (30, 5)


def test_integer_valued_float_labels_are_accepted(tmp_path):
    x, y = _xy()
    np.savez(tmp_path / "f.npz", x=x, y=y.astype(np.float32))
    assert load_embeddings(tmp_path / "f.npz").y_train.dtype == np.int64


def test_stratified_split_keeps_singletons_in_train():
    y = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    tr, te = stratified_split(y, 0.2, seed=0)
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(8))
    assert 7 in tr and np.bincount(y[te], minlength=3).tolist() == [1, 1, 0]
    with pytest.raises(ValueError, match="between 0 and 1"):
        stratified_split(y, 1.0)


@pytest.mark.parametrize("arrays, error, match", [
    ({"features": np.zeros((4, 2)), "labels": np.zeros(4)}, ValueError,
     r"expected arrays x_train, y_train, x_test, y_test .* or x, y .* found: features, labels"),
    ({"x": np.zeros((4, 2)), "y": np.zeros(3, dtype=np.int64)}, ValueError, "x has 4 rows but y has 3"),
    ({"x": np.zeros(4), "y": np.zeros(4, dtype=np.int64)}, ValueError, r"2-D .*reshape\(-1, 1\)"),
    ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 0.5, 1])}, TypeError, "integer class labels.*0.5"),
    ({"x": np.zeros((4, 2)), "y": np.array(["a", "b", "a", "b"])}, TypeError, "integer class labels"),
    ({"x": np.zeros((4, 2)), "y": np.array([0, -1, 0, 1])}, ValueError, "non-negative"),
    ({"x": np.array([[0.0, np.nan]] * 4), "y": np.array([0, 1, 0, 1])}, ValueError, r"x contains NaN .*4 NaN"),
    ({"x_train": np.ones((4, 2)), "y_train": np.array([0, 1, 0, 1]), "x_test": np.ones((2, 3)),
      "y_test": np.array([0, 1])}, ValueError, "x_train has 2 features per row but x_test has 3"),
    ({"x": np.zeros((2, 2)), "y": np.array([0, 1])}, ValueError, "single sample"),
])
def test_bad_contents_are_clear_errors(tmp_path, arrays, error, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(error, match=match):
        load_embeddings(tmp_path / "bad.npz")


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_embeddings(tmp_path / "missing.npz")
    (tmp_path / "x.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=r"unknown file type '\.npy'.*\.npz, \.safetensors"):
        load_embeddings(tmp_path / "x.npy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="could not read"):
        load_embeddings(tmp_path / "junk.npz")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="could not read"):
        load_embeddings(tmp_path / "junk.safetensors")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match="numeric arrays"):
        load_embeddings(tmp_path / "obj.npz")
    with pytest.raises(ValueError, match="test_fraction"):
        load_embeddings(tmp_path / "missing.npz", test_fraction=0)
