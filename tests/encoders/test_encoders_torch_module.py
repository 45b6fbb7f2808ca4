"""User modules through TorchModuleEncoder, the image preprocessing, and the torchvision / timm /
open_clip loading code run against small local stand-ins for those libraries (no downloads)."""

import enum
import sys
import types

import pytest
import torch
from torch import nn

from bottlenecks.encoders import (
    ImagePreprocess,
    TorchModuleEncoder,
    get_encoder,
    penultimate,
    register_encoder,
)
from bottlenecks.encoders import registry as registry_module


def tiny_cnn(seed=0, dropout=0.5):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(dropout),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 8))


def test_tiny_cnn_through_the_registry(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    register_encoder("tiny-cnn", lambda seed=0, device=None: TorchModuleEncoder(
        tiny_cnn(seed), "tiny-cnn", {"seed": seed}, preprocess=lambda x: x[:, None], device=device))
    enc = get_encoder("tiny-cnn", seed=1)
    x = torch.rand(10, 12, 12)
    a = enc.encode(x, batch_size=3, progress=False)
    b = enc.encode(x, batch_size=10, progress=False)
    assert a.shape == (10, 8) and a.dtype == torch.float32 and not a.requires_grad
    torch.testing.assert_close(a, b)  # eval mode: dropout off, batch norm uses running stats
    assert not enc.module.training
    assert all(not p.requires_grad for p in enc.module.parameters())
    enc.module.train()  # a user flipping the mode does not leak into encode
    torch.testing.assert_close(enc.encode(x, progress=False), a)
    assert not torch.allclose(get_encoder("tiny-cnn", seed=2).encode(x, progress=False), a)


def test_tuple_outputs_and_text_modality():
    class TwoOut(nn.Module):
        def forward(self, x):
            return x.sum(-1), x

    enc = TorchModuleEncoder(TwoOut(), "two", {})
    assert enc.encode(torch.ones(3, 2, 5), progress=False).shape == (3, 2)

    class CharCount(nn.Module):
        def forward(self, input_ids):
            return input_ids.float()

    def tokenize(texts):
        return {"input_ids": torch.tensor([[len(t), t.count("a")] for t in texts])}

    text = TorchModuleEncoder(CharCount(), "chars", {}, tokenize, modality="text")
    out = text.encode(["a", "banana", "xyz"], batch_size=2, progress=False)
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0], [6.0, 3.0], [3.0, 0.0]]))
    with pytest.raises(TypeError, match="single str"):
        text.encode("banana")
    with pytest.raises(TypeError, match="list of strings"):
        text.encode([1, 2])
    with pytest.raises(TypeError, match="nn.Module"):
        TorchModuleEncoder(lambda x: x, "f", {})


def test_image_preprocess():
    pre = ImagePreprocess(8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.8)
    out = pre(torch.ones(2, 20, 30))
    assert out.shape == (2, 3, 8, 8)
    torch.testing.assert_close(out, torch.ones_like(out))  # (1 - 0.5) / 0.5
    assert pre.config()["size"] == [8, 8] and pre.config()["crop_pct"] == 0.8
    with pytest.raises(ValueError, match="expected"):
        pre(torch.rand(2, 2, 5, 5))


def test_penultimate_removes_the_last_linear():
    model = penultimate(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Sequential(nn.Linear(6, 3))))
    assert model(torch.rand(2, 4)).shape == (2, 6)
    with pytest.raises(ValueError, match="no nn.Linear"):
        penultimate(nn.ReLU())


@pytest.mark.parametrize("name, package", [("torchvision:resnet18", "torchvision"), ("timm:resnet18", "timm"),
                                           ("open_clip:ViT-B-32/openai", "open_clip_torch"),
                                           ("sentence-transformers:all-MiniLM-L6-v2", "sentence-transformers")])
def test_missing_library_names_the_package(monkeypatch, name, package):
    module = {"torchvision": "torchvision", "timm": "timm", "open_clip_torch": "open_clip",
              "sentence-transformers": "sentence_transformers"}[package]
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ImportError, match=f"pip install {package}"):
        get_encoder(name)


class _Transforms:
    def __call__(self, x):
        return torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear")

    def __repr__(self):
        return "Transforms(size=8)"


class _Weights(enum.Enum):
    IMAGENET1K_V1 = "v1"
    DEFAULT = "v1"  # an alias, as in torchvision

    def transforms(self):
        return _Transforms()


def _classifier():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 10))


def test_torchvision_loading_code(monkeypatch):
    calls = {}

    def get_model(name, weights=None):
        calls.update(name=name, weights=weights)
        return _classifier()

    tv = types.ModuleType("torchvision")
    tv.__version__ = "0.0-test"
    tv.models = types.SimpleNamespace(get_model=get_model, get_model_weights=lambda name: _Weights)
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    enc = get_encoder("torchvision:tiny")
    assert calls == {"name": "tiny", "weights": _Weights.IMAGENET1K_V1}
    assert enc.name == "torchvision:tiny"
    assert enc.config["weights"] == "_Weights.IMAGENET1K_V1" and enc.config["torchvision"] == "0.0-test"
    out = enc.encode(torch.rand(3, 28, 28), progress=False)
    assert out.shape == (3, 5)  # penultimate: the Linear(5, 10) head is gone
    with pytest.raises(ValueError, match="no weights"):
        get_encoder("torchvision:tiny", weights="NOPE")


def test_timm_loading_code(monkeypatch):
    calls = {}

    def create_model(name, pretrained=False, num_classes=1000):
        calls.update(name=name, pretrained=pretrained, num_classes=num_classes)
        return penultimate(_classifier())

    timm = types.ModuleType("timm")
    timm.__version__ = "0.0-test"
    timm.create_model = create_model
    data = types.ModuleType("timm.data")
    data.resolve_model_data_config = lambda model: {"input_size": (3, 10, 10), "mean": (0.1, 0.2, 0.3),
                                                    "std": (0.5, 0.5, 0.5), "crop_pct": 0.9,
                                                    "interpolation": "bicubic"}
    timm.data = data
    monkeypatch.setitem(sys.modules, "timm", timm)
    monkeypatch.setitem(sys.modules, "timm.data", data)
    enc = get_encoder("timm:tiny")
    assert calls == {"name": "tiny", "pretrained": True, "num_classes": 0}
    assert enc.config["preprocess"]["size"] == [10, 10] and enc.config["preprocess"]["crop_pct"] == 0.9
    assert enc.encode(torch.rand(2, 28, 28), progress=False).shape == (2, 5)


def test_open_clip_loading_code(monkeypatch):
    class Clip(nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = _classifier()
            self.visual.image_size = 16
            self.visual.image_mean, self.visual.image_std = (0.4, 0.4, 0.4), (0.3, 0.3, 0.3)

        def encode_image(self, x, normalize=False):
            assert x.shape[1:] == (3, 16, 16)
            out = self.visual(x)
            return nn.functional.normalize(out, dim=-1) if normalize else out

    oc = types.ModuleType("open_clip")
    oc.__version__ = "0.0-test"
    oc.create_model_and_transforms = lambda name, pretrained=None: (Clip(), None, None)
    oc.OPENAI_DATASET_MEAN, oc.OPENAI_DATASET_STD = (0.5,) * 3, (0.5,) * 3
    monkeypatch.setitem(sys.modules, "open_clip", oc)
    enc = get_encoder("open_clip:tiny/laion", normalize=True)
    assert enc.config["model"] == "tiny" and enc.config["pretrained"] == "laion"
    out = enc.encode(torch.rand(3, 28, 28), progress=False)
    assert out.shape == (3, 10)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="<model>/<pretrained>"):
        get_encoder("open_clip:tiny")
