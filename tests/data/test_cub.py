"""The CUB-200-2011 loader on a tiny folder written in the official layout."""

from collections import defaultdict

import numpy as np
import pytest

from bottlenecks.data.cub import attribute_phrase, describe_cub, load_cub, write_tiny_cub


def _votes_by_hand(base):
    """Re-read the written files line by line: the expected class-level table, independently."""
    cls = {int(a): int(b) for a, b in (ln.split() for ln in (base / "image_class_labels.txt").read_text().split("\n")
                                       if ln)}
    train = {int(a): b == "1" for a, b in (ln.split() for ln in (base / "train_test_split.txt").read_text().split("\n")
                                            if ln)}
    yes, total = defaultdict(int), defaultdict(int)
    n_attr = 0
    for line in (base / "attributes" / "image_attribute_labels.txt").read_text().split("\n"):
        if not line:
            continue
        img, att, present, cert = (int(t) for t in line.split()[:4])
        n_attr = max(n_attr, att)
        if not train[img] or (present == 0 and cert == 1):
            continue
        yes[cls[img], att] += present
        total[cls[img], att] += 1
    n_cls = max(cls.values())
    table = np.array([[int(yes[c, a] * 2 >= total[c, a]) for a in range(1, n_attr + 1)] for c in range(1, n_cls + 1)])
    return table, cls, train


@pytest.mark.parametrize("where", ["attributes", "root", "parent"])
def test_filtering_matches_a_vote_count_by_hand(tmp_path, where):
    base = write_tiny_cub(tmp_path, n_classes=5, images_per_class=8, n_attributes=15, attributes_txt=where, seed=3)
    table, cls, train = _votes_by_hand(base)
    keep = np.flatnonzero(table.sum(0) >= 3)
    assert 0 < keep.size < 15  # the data exercise the filter
    for split in ("train", "test"):
        ds = load_cub(tmp_path, split, min_classes=3)  # the parent folder is found too
        ids = [i for i in sorted(cls) if train[i] == (split == "train")]
        assert ds.image_ids.tolist() == ids
        assert ds.labels.tolist() == [cls[i] - 1 for i in ids]
        np.testing.assert_array_equal(ds.attribute_ids, keep + 1)
        np.testing.assert_array_equal(ds.class_attributes, table[:, keep])
        np.testing.assert_array_equal(ds.attributes, table[ds.labels][:, keep])
        assert ds.attributes.dtype == np.uint8 and ds.attributes.shape == (len(ids), keep.size)
        assert ds.attribute_names == tuple(f"has_part_{a // 3}::value_{a % 3}" for a in keep)
        assert ds.class_names[0] == "Bird A0 Kind" and ds.n_classes == 5
        assert all(p.is_file() for p in ds.image_paths)


def test_raw_votes_certainty_and_unfiltered_attributes(tmp_path):
    base = write_tiny_cub(tmp_path, n_classes=3, images_per_class=4, n_attributes=6, seed=1)
    lines = [ln.split() for ln in (base / "attributes" / "image_attribute_labels.txt").read_text().split("\n") if ln]
    raw = {(int(r[0]), int(r[1])): (int(r[2]), int(r[3])) for r in lines}
    assert any(len(r) == 6 for r in lines)  # the ragged lines are there and are read
    ds = load_cub(base, "all", filter_attributes=False, class_level=False)
    assert len(ds) == 12 and ds.n_attributes == 6
    for row, img in enumerate(ds.image_ids):
        for a in range(6):
            assert (ds.instance_attributes[row, a], ds.certainty[row, a]) == raw[int(img), a + 1]
    np.testing.assert_array_equal(ds.attributes, ds.instance_attributes)
    strict = load_cub(base, "train", filter_attributes=False, min_class_fraction=1.0)
    loose = load_cub(base, "train", filter_attributes=False, min_class_fraction=0.5)
    assert (strict.class_attributes <= loose.class_attributes).all()


def test_images_load_channels_first(tmp_path):
    base = write_tiny_cub(tmp_path, n_classes=2, images_per_class=2, n_attributes=3, image_size=6)
    ds = load_cub(base, "train", filter_attributes=False)
    x = ds.load_images(image_size=(4, 5), indices=[1])
    assert x.shape == (1, 3, 4, 5) and x.dtype == np.float32 and 0.0 <= x.min() <= x.max() <= 1.0
    assert ds.load_images(image_size=6).shape == (2, 3, 6, 6)


def test_attribute_phrases():
    assert attribute_phrase("has_bill_shape::curved_(up_or_down)") == "bill shape: curved (up or down)"
    assert attribute_phrase("has_size::small_(5_-_9_in)") == "size: small (5 - 9 in)"


def test_errors_say_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images.txt"):
        load_cub(tmp_path)
    base = write_tiny_cub(tmp_path, n_classes=2, images_per_class=2, n_attributes=3)
    with pytest.raises(ValueError, match="split: expected one of"):
        load_cub(base, "val")
    with pytest.raises(ValueError, match="lower min_classes"):
        load_cub(base)  # 2 classes cannot reach the default of 10
    (base / "attributes" / "attributes.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no attributes.txt"):
        load_cub(base, filter_attributes=False)
    (base / "train_test_split.txt").unlink()
    with pytest.raises(FileNotFoundError, match="train_test_split.txt: missing"):
        load_cub(base)


def test_describe_cub_summarises_and_writes_json(tmp_path):
    import json

    base = write_tiny_cub(tmp_path / "data", n_classes=4, images_per_class=4, n_attributes=9, seed=2)
    res = describe_cub(base, min_classes=2, out=tmp_path / "out")
    train = load_cub(base, "train", min_classes=2)
    assert (res["n_train"], res["n_test"], res["n_classes"], res["n_attributes_total"]) == (8, 8, 4, 9)
    assert res["attribute_names"] == list(train.attribute_names) and res["n_attributes"] == train.n_attributes
    np.testing.assert_allclose(res["positive_rate_train"], train.attributes.mean(0), atol=1e-6)
    assert json.loads((tmp_path / "out" / "cub_summary.json").read_text()) == res
