"""IDX reading, Fashion-MNIST / digits loading and the image data set entry point."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pytest

from bottlenecks.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ENV,
    DatasetFallbackWarning,
    IDXFormatError,
    ImageDataset,
    load_digits_images,
    load_fashion_mnist,
    load_image_dataset,
    read_idx,
    write_idx,
)
from bottlenecks.data.fashion_mnist import DEFAULT_FASHION_MNIST_DIR

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def make_fashion_dir(folder, n_train=12, n_test=5, gz=True, seed=0):
    """Tiny fake Fashion-MNIST with the real file names; returns {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{FILES[split][0]}{suffix}", images)
        write_idx(folder / f"{FILES[split][1]}{suffix}", labels)
        out[split] = (images, labels)
    return out


# --- read_idx -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([3, 1, 4, 1, 5], dtype=np.uint8),
        np.array([[-1, 2], [300, -40000]], dtype=np.int32),
        np.array([0.5, -1.25, 3.0], dtype=np.float32),
        np.array([[1e-300, 2.5]], dtype=np.float64),
        np.array([-3, 7], dtype=np.int16),
        np.array([-3, 7], dtype=np.int8),
    ],
    ids=["u8-3d", "u8-1d", "i32", "f32", "f64", "i16", "i8"],
)
def test_read_idx_round_trip(tmp_path, array, suffix):
    path = write_idx(tmp_path / f"a-idx{suffix}", array)
    if suffix:
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    got = read_idx(path)
    assert got.dtype == array.dtype and got.dtype.isnative
    assert got.shape == array.shape
    np.testing.assert_array_equal(got, array)


def test_read_idx_hand_written_header(tmp_path):
    # magic 0x00000801: uint8, 1 dimension of size 3, then the bytes
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    np.testing.assert_array_equal(read_idx(path), [7, 8, 9])


def test_read_idx_gz_detected_by_content_not_suffix(tmp_path):
    path = tmp_path / "no-suffix"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 2, 5, 6])))
    np.testing.assert_array_equal(read_idx(path), [5, 6])


def test_read_idx_truncated_data(tmp_path):
    path = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((4, 5, 5), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(IDXFormatError, match=r"truncated.*93 data bytes.*expected 100"):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(IDXFormatError, match="trailing bytes"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 9]))
    with pytest.raises(IDXFormatError, match="truncated header"):
        read_idx(path)


def test_read_idx_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.arange(1000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(IDXFormatError, match="gzip stream is truncated or corrupt"):
        read_idx(path)


@pytest.mark.parametrize(
    "head",
    [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"PK\x03\x04", b"\x00\x00"],
    ids=["nonzero-prefix", "bad-dtype", "zip", "too-short"],
)
def test_read_idx_bad_magic(tmp_path, head):
    path = tmp_path / "x"
    path.write_bytes(head + bytes(8))
    with pytest.raises(IDXFormatError, match="magic number"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(TypeError, match="cannot store dtype int64"):
        write_idx(tmp_path / "x", np.zeros(2, dtype=np.int64))


# --- Fashion-MNIST --------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_fashion_mnist_from_dir(tmp_path, split, gz):
    want = make_fashion_dir(tmp_path, gz=gz)[split]
    images, labels = load_fashion_mnist(tmp_path, split=split)
    assert images.dtype == np.uint8 and images.shape == want[0].shape
    assert labels.dtype == np.int64 and labels.shape == (len(want[1]),)
    np.testing.assert_array_equal(images, want[0])
    np.testing.assert_array_equal(labels, want[1])


def test_load_fashion_mnist_env_var(tmp_path, monkeypatch):
    want = make_fashion_dir(tmp_path)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    images, _ = load_fashion_mnist(split="test")
    np.testing.assert_array_equal(images, want["test"][0])


def test_load_fashion_mnist_missing_dir_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(tmp_path / "absent")
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "data_dir" in msg and FASHION_MNIST_ENV in msg and "absent" in msg


def test_load_fashion_mnist_missing_one_file(tmp_path):
    make_fashion_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks t10k-labels-idx1-ubyte\[\.gz\]"):
        load_fashion_mnist(tmp_path, split="test")
    load_fashion_mnist(tmp_path, split="train")  # the other split is still fine


def test_load_fashion_mnist_bad_split(tmp_path):
    with pytest.raises(ValueError, match=r"split: expected one of \['test', 'train'\], got 'val'"):
        load_fashion_mnist(tmp_path, split="val")


def test_load_fashion_mnist_wrong_shapes(tmp_path):
    make_fashion_dir(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((12, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"expected uint8 images of shape \(n, 28, 28\)"):
        load_fashion_mnist(tmp_path)
    make_fashion_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="one label per image"):
        load_fashion_mnist(tmp_path)


@pytest.mark.skipif(
    not (DEFAULT_FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_load_fashion_mnist_installed(monkeypatch):
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    images, labels = load_fashion_mnist(split="test")
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)


# --- digits ---------------------------------------------------------------------------------


def test_digits_shapes_and_split():
    x_tr, y_tr = load_digits_images("train")
    x_te, y_te = load_digits_images("test")
    assert x_tr.shape == (1437, 8, 8) and x_te.shape == (360, 8, 8)
    assert x_tr.dtype == np.uint8 and y_tr.dtype == np.int64
    assert x_tr.max() == 255 and x_tr.min() == 0
    assert set(np.unique(y_te)) == set(range(10))
    # stratified: every class is about 20 % test
    frac = np.bincount(y_te) / (np.bincount(y_te) + np.bincount(y_tr))
    assert np.all(np.abs(frac - 0.2) < 0.02)


def test_digits_deterministic_and_seeded():
    a = load_digits_images("train")
    b = load_digits_images("train")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = load_digits_images("train", random_state=1)
    assert not np.array_equal(a[1], c[1])


def test_digits_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_digits_images("validation")


# --- load_image_dataset ---------------------------------------------------------------------


def test_load_image_dataset_fashion(tmp_path):
    want = make_fashion_dir(tmp_path)
    ds = load_image_dataset("fashion-mnist", data_dir=tmp_path, split="train")
    assert isinstance(ds, ImageDataset)
    assert ds.name == "fashion-mnist" and ds.fallback_from is None and ds.split == "train"
    assert ds.images.dtype == np.float32 and ds.images.shape == (12, 28, 28)
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    np.testing.assert_allclose(ds.images * 255, want["train"][0], atol=1e-4)
    assert ds.labels.dtype == np.int64
    assert ds.class_names == FASHION_MNIST_CLASSES and ds.class_names[9] == "Ankle boot"
    assert ds.image_shape == (28, 28) and ds.n_classes == 10 and len(ds) == 12
    assert ds.flat.shape == (12, 784)


def test_load_image_dataset_digits():
    ds = load_image_dataset("digits", split="test")
    assert ds.name == "digits" and ds.image_shape == (8, 8) and ds.images.shape == (360, 8, 8)
    assert ds.images.dtype == np.float32 and ds.images.max() == 1.0
    assert ds.class_names == tuple("0123456789")


def test_load_image_dataset_name_aliases(tmp_path):
    make_fashion_dir(tmp_path)
    assert load_image_dataset("Fashion_MNIST", data_dir=tmp_path).name == "fashion-mnist"


def test_load_image_dataset_fallback_warns(tmp_path):
    with pytest.warns(DatasetFallbackWarning, match="using scikit-learn's digits") as rec:
        ds = load_image_dataset("fashion-mnist", data_dir=tmp_path / "absent", split="test")
    assert "apt-get install dataset-fashion-mnist" in str(rec[0].message)
    assert ds.name == "digits" and ds.fallback_from == "fashion-mnist"
    assert ds.images.shape == (360, 8, 8)


def test_load_image_dataset_no_fallback_raises(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FileNotFoundError, match="apt-get"):
            load_image_dataset("fashion-mnist", data_dir=tmp_path, fallback=False)


def test_load_image_dataset_corrupt_file_does_not_fall_back(tmp_path):
    make_fashion_dir(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(IDXFormatError):
        load_image_dataset("fashion-mnist", data_dir=tmp_path)


def test_load_image_dataset_unknown_name():
    match = r"unknown image data set 'cifar10'.*digits, fashion-mnist"
    with pytest.raises(ValueError, match=match):
        load_image_dataset("cifar10")
