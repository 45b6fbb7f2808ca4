"""CIFAR through torchvision: the error paths, offline, and the array conversion with a stand-in
torchvision (the real one is neither needed nor imported)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from bottlenecks.data import TORCHVISION_ENV, default_torchvision_dir, load_cifar


@pytest.fixture
def no_torchvision(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` raise ImportError
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)


def _fake_torchvision(monkeypatch, error=None):
    """A ``torchvision.datasets`` with CIFAR10 / CIFAR100 classes holding a few random images."""
    calls = []

    class FakeCIFAR:
        classes = ["airplane", "automobile", "bird"]

        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            if error is not None:
                raise error
            n = 6 if train else 3
            rng = np.random.default_rng(int(train))
            self.data = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
            self.targets = [i % 3 for i in range(n)]

    datasets = types.ModuleType("torchvision.datasets")
    datasets.CIFAR10 = type("CIFAR10", (FakeCIFAR,), {})
    datasets.CIFAR100 = type("CIFAR100", (FakeCIFAR,), {})
    tv = types.ModuleType("torchvision")
    tv.datasets = datasets
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)
    return calls


def test_missing_torchvision_says_how_to_install(no_torchvision, tmp_path):
    with pytest.raises(ImportError, match="pip install torchvision"):
        load_cifar("cifar10", root=tmp_path)


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="expected one of: cifar10, cifar100"):
        load_cifar("mnist")
    with pytest.raises(TypeError, match="cifar10"):
        load_cifar(10)


def test_absent_files_without_download_say_to_pass_download(monkeypatch, tmp_path):
    calls = _fake_torchvision(monkeypatch)
    with pytest.raises(FileNotFoundError, match=r"CIFAR-100 not found.*cifar-100-python.*download=True.*--download"):
        load_cifar("CIFAR-100", root=tmp_path)
    assert calls == []  # torchvision was never asked


def test_failed_download_and_corrupt_files(monkeypatch, tmp_path):
    _fake_torchvision(monkeypatch, error=OSError("<urlopen error [Errno -3] Temporary failure in name resolution>"))
    with pytest.raises(ConnectionError, match="could not download CIFAR-10.*online"):
        load_cifar("cifar10", root=tmp_path, download=True)
    (tmp_path / "cifar-10-batches-py").mkdir()
    _fake_torchvision(monkeypatch, error=RuntimeError("Dataset not found or corrupted."))
    with pytest.raises(ValueError, match="corrupted.*download=True"):
        load_cifar("cifar10", root=tmp_path)


def test_conversion_grey_and_rgb(monkeypatch, tmp_path):
    calls = _fake_torchvision(monkeypatch)
    (tmp_path / "cifar-10-batches-py").mkdir()
    train, test = load_cifar("cifar10", root=tmp_path)
    assert calls == [(str(tmp_path), True, False), (str(tmp_path), False, False)]
    assert train.images.shape == (6, 32, 32) and test.images.shape == (3, 32, 32)
    assert train.images.dtype == np.float32 and 0.0 <= train.images.min() and train.images.max() <= 1.0
    assert train.labels.dtype == np.int64 and train.class_names == ("airplane", "automobile", "bird")
    assert train.name == "cifar10" and train.image_shape == (32, 32) and test.split == "test"
    rgb, _ = load_cifar("cifar10", root=tmp_path, grayscale=False)
    assert rgb.images.shape == (6, 3, 32, 32)
    luma = 0.299 * rgb.images[:, 0] + 0.587 * rgb.images[:, 1] + 0.114 * rgb.images[:, 2]
    np.testing.assert_allclose(train.images, luma, atol=1e-5)


def test_default_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(TORCHVISION_ENV, str(tmp_path / "tv"))
    assert default_torchvision_dir() == tmp_path / "tv"
    monkeypatch.delenv(TORCHVISION_ENV)
    assert default_torchvision_dir().parts[-2:] == ("bottlenecks", "torchvision")
