"""Image folders read with Pillow: both layouts, sizes, colour and the error messages."""

from __future__ import annotations

import numpy as np
import pytest

from bottlenecks.data import ImageDataset, load_image_folder

Image = pytest.importorskip("PIL.Image")

CLASSES = ("cat", "dog", "emu")


def make_folder(root, n=6, size=(8, 8), classes=CLASSES, suffix=".png", rgb=False, seed=0):
    """root/<class>/<i>.png: class c's images have mean brightness ~ 40 + 80 c."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = size + ((3,) if rgb else ())
            pixels = np.clip(40 + 80 * c + rng.integers(-20, 20, size=shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}{suffix}")
    return root


def test_flat_layout_is_split_stratified(tmp_path):
    root = make_folder(tmp_path / "shapes")
    (root / "notes.txt").write_text("ignored")
    (root / "cat" / "readme.md").write_text("ignored")
    train, test = load_image_folder(root)
    assert isinstance(train, ImageDataset) and isinstance(test, ImageDataset)
    assert train.images.shape == (15, 8, 8) and test.images.shape == (3, 8, 8)
    assert train.images.dtype == np.float32 and 0.0 <= train.images.min() and train.images.max() <= 1.0
    assert train.labels.dtype == np.int64 and np.bincount(test.labels).tolist() == [1, 1, 1]
    assert train.class_names == CLASSES and train.name == "shapes" and train.image_shape == (8, 8)
    assert (train.split, test.split) == ("train", "test")
    # labels follow the sorted class folders: brighter folders have larger labels
    means = [train.images[train.labels == c].mean() for c in range(3)]
    assert means == sorted(means)
    again, _ = load_image_folder(root)
    np.testing.assert_array_equal(again.images, train.images)
    other, _ = load_image_folder(root, seed=1)
    assert not np.array_equal(other.images, train.images)


def test_train_test_layout_resize_and_rgb(tmp_path):
    make_folder(tmp_path / "train", n=4, suffix=".jpg")
    make_folder(tmp_path / "test", n=2, classes=("cat", "dog"))
    train, test = load_image_folder(tmp_path, image_size=4)
    assert train.images.shape == (12, 4, 4) and test.images.shape == (4, 4, 4)
    assert train.class_names == CLASSES and sorted(set(test.labels.tolist())) == [0, 1]
    train, test = load_image_folder(tmp_path, image_size=(6, 5), grayscale=False)
    assert train.images.shape == (12, 3, 6, 5) and train.image_shape == (6, 5)


def test_rgb_images_and_mixed_sizes(tmp_path):
    root = make_folder(tmp_path / "rgb", n=3, rgb=True)
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(root / "emu" / "big.png")
    with pytest.warns(UserWarning, match="1 image.*resized to 8x8"):
        train, test = load_image_folder(root, grayscale=False)
    assert train.images.shape[1:] == (3, 8, 8) and len(train) + len(test) == 10
    grey, _ = load_image_folder(root, image_size=8)
    assert grey.images.ndim == 3


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_image_folder(tmp_path / "missing")
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(loose / "a.png")
    with pytest.raises(ValueError, match="one sub-folder per class.*1 loose image"):
        load_image_folder(loose)
    empty = make_folder(tmp_path / "empty", n=2)
    (empty / "zebra").mkdir()
    with pytest.raises(ValueError, match="zebra hold no images"):
        load_image_folder(empty)
    half = make_folder(tmp_path / "half" / "train", n=2).parent
    with pytest.raises(ValueError, match="found train/ but no test/"):
        load_image_folder(half)
    broken = make_folder(tmp_path / "broken", n=2)
    (broken / "cat" / "z.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"z\.png: could not read it as an image"):
        load_image_folder(broken)
    with pytest.raises(ValueError, match="image_size"):
        load_image_folder(make_folder(tmp_path / "ok", n=2), image_size=(0, 3))
