"""The generated concept-shapes data set: shapes, ranges, the class rule and the spurious tint."""

from __future__ import annotations

import numpy as np
import pytest

from bottlenecks.data.concept_shapes import CLASS_NAMES, CONCEPT_NAMES, SPURIOUS_CONCEPT, make_concept_shapes


def test_arrays_shapes_dtypes_and_ranges():
    ds = make_concept_shapes(300, "train", seed=1, image_size=16)
    assert ds.images.shape == (300, 3, 16, 16) and ds.images.dtype == np.float32
    assert ds.images.min() >= 0.0 and ds.images.max() <= 1.0
    assert ds.concepts.shape == (300, len(CONCEPT_NAMES)) and set(np.unique(ds.concepts)) <= {0, 1}
    assert ds.labels.shape == (300,) and ds.labels.max() < len(CLASS_NAMES)
    assert ds.concept_names[ds.spurious_index] == SPURIOUS_CONCEPT
    # exactly one colour and one shape per image
    assert (ds.concepts[:, 0:3].sum(1) == 1).all() and (ds.concepts[:, 3:6].sum(1) == 1).all()


def test_class_is_the_linear_rule_shape_times_texture():
    ds = make_concept_shapes(500, "test", seed=2)
    shape = ds.concepts[:, 3:6].argmax(1)
    striped = ds.concepts[:, 7]
    assert (ds.labels == 2 * shape + striped).all()
    # a linear head over the binary concepts reproduces it: score = [shape] + (striped or plain)
    w = np.zeros((6, len(CONCEPT_NAMES)))
    b = np.zeros(6)
    for k in range(6):
        w[k, 3 + k // 2] = 1.0
        w[k, 7] = 1.0 if k % 2 else -1.0
        b[k] = 0.0 if k % 2 else 1.0
    assert ((ds.concepts @ w.T + b).argmax(1) == ds.labels).all()


def test_spurious_tint_agrees_in_train_and_test_but_not_in_shifted():
    n = 4000
    for split in ("train", "test"):
        ds = make_concept_shapes(n, split, seed=0, spurious_agreement=0.9)
        agree = (ds.concepts[:, 8] == ds.concepts[:, 7]).mean()
        assert agree == pytest.approx(0.9, abs=0.02)
    for split in ("shifted", "concepts"):
        ds = make_concept_shapes(n, split, seed=0)
        assert (ds.concepts[:, 8] == ds.concepts[:, 7]).mean() == pytest.approx(0.5, abs=0.03)
        assert ds.concepts[:, 8].mean() == pytest.approx(0.5, abs=0.03)
    # nuisance concepts are balanced and independent of the class
    ds = make_concept_shapes(n, "train", seed=0)
    assert ds.concepts[:, 0:3].mean(0) == pytest.approx([1 / 3] * 3, abs=0.03)
    assert np.bincount(ds.labels, minlength=6) / n == pytest.approx([1 / 6] * 6, abs=0.02)


def test_pixels_follow_the_concepts():
    ds = make_concept_shapes(600, "shifted", seed=3, noise=0.0)
    corner = ds.images[:, :, 0, 0]  # background pixel: the tint raises red, lowers blue
    tinted = ds.concepts[:, 8] == 1
    assert (corner[tinted, 0] - corner[tinted, 2]).min() > 0.2 > (corner[~tinted, 0] - corner[~tinted, 2]).max()
    centre = ds.images[:, :, 8, 8]  # inside every shape: the fill colour's channel is the largest
    colour = ds.concepts[:, 0:3].argmax(1)
    assert (centre.argmax(1) == colour).mean() > 0.99
    large = ds.concepts[:, 6] == 1
    fg = (np.abs(ds.images - ds.images[:, :, :1, :1]).sum(1) > 0.05).mean((1, 2))
    assert fg[large].mean() > 1.8 * fg[~large].mean()


def test_seeds_splits_and_errors():
    a = make_concept_shapes(50, "train", seed=5)
    b = make_concept_shapes(50, "train", seed=5)
    c = make_concept_shapes(50, "test", seed=5)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)
    with pytest.raises(ValueError, match="split"):
        make_concept_shapes(10, "val")
    with pytest.raises(ValueError, match="spurious_agreement"):
        make_concept_shapes(10, spurious_agreement=1.5)
