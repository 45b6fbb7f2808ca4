"""The feature cache: hits, misses, keys that change with everything that decides the features,
atomic writes, and files that do not match are never served."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from bottlenecks.encoders import Encoder, FeatureCache, default_cache_dir, fingerprint, get_encoder
from bottlenecks.encoders import cache as cache_module


class Scaled(Encoder):
    """x -> scale * flat(x), counting the rows it encodes."""

    def __init__(self, scale=1.0, name="scaled"):
        super().__init__(name, {"scale": scale})
        self.rows = 0

    def _encode_batch(self, batch):
        self.rows += len(batch)
        return batch.reshape(len(batch), -1) * self.config["scale"]


def data(seed=0):
    return np.random.default_rng(seed).random((6, 3, 3)).astype(np.float32)


def test_hit_and_miss(tmp_path):
    cache = FeatureCache(tmp_path)
    enc, x = Scaled(2.0), data()
    a = cache.get_or_compute(enc, x, "toy", "train", progress=False)
    assert enc.rows == 6 and len(list(tmp_path.glob("*.safetensors"))) == 1
    b = cache.get_or_compute(enc, x, "toy", "train", batch_size=2, progress=False)  # encode kwargs: same key
    assert enc.rows == 6  # served from disk
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(b, torch.from_numpy(x).reshape(6, -1) * 2)


def test_a_changed_config_never_returns_stale_features(tmp_path):
    cache = FeatureCache(tmp_path)
    x = data()
    old = cache.get_or_compute(Scaled(2.0), x, "toy", "train", progress=False)
    enc = Scaled(3.0)
    new = cache.get_or_compute(enc, x, "toy", "train", progress=False)
    assert enc.rows == 6
    torch.testing.assert_close(new, torch.from_numpy(x).reshape(6, -1) * 3)
    assert not torch.allclose(old, new)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_every_field_changes_the_key(tmp_path):
    cache = FeatureCache(tmp_path)
    enc, fp = Scaled(1.0), fingerprint(data())
    base = cache.key(enc, "toy", "train", None, fp)
    assert base == cache.key(Scaled(1.0), "toy", "train", None, fp)  # deterministic
    assert len(base) == 64 and int(base, 16) >= 0
    others = [
        cache.key(Scaled(1.5), "toy", "train", None, fp),
        cache.key(Scaled(1.0, name="other"), "toy", "train", None, fp),
        cache.key(enc, "toy2", "train", None, fp),
        cache.key(enc, "toy", "test", None, fp),
        cache.key(enc, "toy", "train", "standardize", fp),
        cache.key(enc, "toy", "train", {"crop": 20}, fp),
        cache.key(enc, "toy", "train", None, fingerprint(data(1))),
    ]
    assert len({base, *others}) == len(others) + 1
    # dict order does not matter: the JSON is canonical
    assert cache.key(enc, "t", "s", {"a": 1, "b": 2}, fp) == cache.key(enc, "t", "s", {"b": 2, "a": 1}, fp)


def test_changed_data_is_recomputed(tmp_path):
    cache = FeatureCache(tmp_path)
    enc, x = Scaled(1.0), data()
    cache.get_or_compute(enc, x, "toy", "train", progress=False)
    x2 = x.copy()
    x2[0, 0, 0] += 0.5
    out = cache.get_or_compute(enc, x2, "toy", "train", progress=False)
    assert enc.rows == 12
    torch.testing.assert_close(out, torch.from_numpy(x2).reshape(6, -1))


def test_fingerprint_sees_shape_dtype_and_content():
    x = data()
    fps = {fingerprint(x), fingerprint(x.reshape(6, 9)), fingerprint(x.astype(np.float64)),
           fingerprint(x[::-1]), fingerprint(["a", "b"]), fingerprint(["ab"])}
    assert len(fps) == 6
    assert fingerprint(x) == fingerprint(x.copy()) == fingerprint(torch.from_numpy(x))
    assert fingerprint(x[:, ::2]) == fingerprint(np.ascontiguousarray(x[:, ::2]))
    assert fingerprint(torch.ones(3, dtype=torch.bfloat16)) != fingerprint(torch.ones(3))
    with pytest.raises(TypeError):
        fingerprint(np.array([object()]))


def test_file_metadata_holds_the_key_fields(tmp_path):
    cache = FeatureCache(tmp_path)
    enc = Scaled(2.0)
    cache.get_or_compute(enc, data(), "toy", "train", transform={"crop": 2}, progress=False)
    (path,) = tmp_path.glob("*.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["bottlenecks.features"])
        assert f.get_tensor("features").shape == (6, 9)
    assert meta["encoder"] == "scaled" and meta["config"] == {"scale": 2.0}
    assert meta["dataset"] == "toy" and meta["split"] == "train" and meta["transform"] == {"crop": 2}
    assert meta["data"] == fingerprint(data()) and meta["format"] == cache_module.FORMAT_VERSION
    assert path.stem == cache.key(enc, "toy", "train", {"crop": 2}, fingerprint(data()))


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(cache_module.os, "replace", spy)
    cache.get_or_compute(Scaled(), data(), "toy", "train", progress=False)
    ((src, dst),) = replaced
    assert src.parent == dst.parent == tmp_path and src.name.endswith(".tmp") and dst.suffix == ".safetensors"
    assert not src.exists() and dst.exists()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.get_or_compute(Scaled(5.0), data(), "toy", "train", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [dst.name]  # no partial file, no temporary left


def test_corrupt_or_mismatched_files_are_recomputed(tmp_path):
    cache = FeatureCache(tmp_path)
    enc, x = Scaled(2.0), data()
    good = cache.get_or_compute(enc, x, "toy", "train", progress=False)
    (path,) = tmp_path.glob("*.safetensors")
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.warns(RuntimeWarning, match="unreadable"):
        again = cache.get_or_compute(enc, x, "toy", "train", progress=False)
    torch.testing.assert_close(again, good)
    assert enc.rows == 12
    # a file under the right name but written for other fields (as a hash collision would be)
    other = Scaled(7.0)
    fields = cache.fields(other, "toy", "train", None, fingerprint(x))
    cache.save(path.stem, torch.zeros(6, 9), fields)
    with pytest.warns(RuntimeWarning, match="does not match"):
        served = cache.get_or_compute(enc, x, "toy", "train", progress=False)
    torch.testing.assert_close(served, good)


def test_default_root_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BOTTLENECKS_CACHE", str(tmp_path / "c"))
    assert FeatureCache().root == tmp_path / "c" == default_cache_dir()
    monkeypatch.delenv("BOTTLENECKS_CACHE")
    assert FeatureCache().root == Path.home() / ".cache" / "bottlenecks" / "features"


def test_encode_dataset_and_text_and_clear(tmp_path):
    from bottlenecks.data import ImageDataset

    x = data()
    ds = ImageDataset(images=x, labels=np.zeros(6, dtype=np.int64), class_names=("a",), name="toy",
                      image_shape=(3, 3), split="test")
    cache = FeatureCache(tmp_path)
    out = cache.encode_dataset(get_encoder("pixels"), ds, progress=False)
    assert out.shape == (6, 9)
    assert (tmp_path / f"{cache.key(get_encoder('pixels'), 'toy', 'test', None, fingerprint(x))}.safetensors").exists()
    assert cache.clear() == 1 and not list(tmp_path.glob("*.safetensors"))
    with pytest.raises(TypeError, match="transform"):
        cache.get_or_compute(Scaled(), x, "toy", "train", transform=3)
