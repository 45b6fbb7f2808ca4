"""Pretrained image models that download their weights on first use: ``torchvision:<model>``,
``timm:<model>`` and ``open_clip:<model>/<pretrained>``.

Each library is imported only when its encoder is built, and a missing one is an ImportError
that names the package to install. All three go through :class:`TorchModuleEncoder` with a
tensor preprocessing step, so grey (n, H, W) images in [0, 1] are accepted as they are.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from .torch_module import ImagePreprocess, TorchModuleEncoder, to_rgb

__all__ = ["open_clip_encoder", "penultimate", "require", "timm_encoder", "torchvision_encoder"]


def require(module: str, package: str, what: str):
    """Import ``module`` or raise an ImportError saying which package ``what`` needs."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"the {what} encoder needs the {package!r} package, which is not installed: "
                          f"pip install {package}") from err


def _version(mod) -> str:
    return str(getattr(mod, "__version__", "unknown"))


def penultimate(model: nn.Module) -> nn.Module:
    """Replace the model's last ``nn.Linear`` (its classification head) with ``nn.Identity`` so
    that it returns the features the head was fed. Returns the same model."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if not last:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classification head to remove")
    parent_name, _, attr = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Identity())
    return model


class _Composed:
    """grey -> RGB, then the weights' own transforms (torchvision's work on batched tensors)."""

    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.transforms(to_rgb(x).float())


def torchvision_encoder(model_name: str, *, weights: str = "DEFAULT", device=None) -> TorchModuleEncoder:
    """``torchvision.models.get_model(model_name, weights=...)`` with its head removed:
    images -> penultimate features, preprocessed by the weights' own ``transforms()``."""
    tv = require("torchvision", "torchvision", f"torchvision:{model_name}")
    enum = tv.models.get_model_weights(model_name)
    try:
        resolved = getattr(enum, weights)
    except AttributeError:
        names = [w.name for w in enum] if hasattr(enum, "__iter__") else []
        raise ValueError(f"weights: {model_name} has no weights {weights!r}; expected 'DEFAULT' or one of "
                         f"{names}") from None
    model = penultimate(tv.models.get_model(model_name, weights=resolved))
    transforms = resolved.transforms()
    config = {"model": model_name, "weights": str(resolved), "features": "penultimate",
              "preprocess": repr(transforms), "torchvision": _version(tv)}
    return TorchModuleEncoder(model, f"torchvision:{model_name}", config, _Composed(transforms), device=device)


_TIMM_INTERPOLATION = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}


def timm_encoder(model_name: str, *, pretrained: bool = True, device=None) -> TorchModuleEncoder:
    """``timm.create_model(model_name, pretrained=True, num_classes=0)``: pooled features,
    preprocessed as the model's pretrained data config says (size, crop, mean, std)."""
    timm = require("timm", "timm", f"timm:{model_name}")
    model = timm.create_model(model_name, pretrained=bool(pretrained), num_classes=0)
    data = importlib.import_module("timm.data")
    if hasattr(data, "resolve_model_data_config"):
        cfg = data.resolve_model_data_config(model)
    else:  # timm < 0.9
        cfg = data.resolve_data_config({}, model=model)
    preprocess = ImagePreprocess(tuple(cfg["input_size"])[-2:], cfg["mean"], cfg["std"],
                                 crop_pct=float(cfg.get("crop_pct") or 1.0),
                                 interpolation=_TIMM_INTERPOLATION.get(cfg.get("interpolation"), "bicubic"))
    tag = getattr(model, "pretrained_cfg", {}) or {}
    config = {"model": model_name, "pretrained": bool(pretrained), "pretrained_tag": tag.get("tag"),
              "preprocess": preprocess.config(), "timm": _version(timm)}
    return TorchModuleEncoder(model, f"timm:{model_name}", config, preprocess, device=device)


class _EncodeImage(nn.Module):
    def __init__(self, model: nn.Module, normalize: bool):
        super().__init__()
        self.model = model
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x, normalize=self.normalize)


def _split_open_clip(spec: str) -> tuple[str, str | None]:
    if spec.startswith("hf-hub:"):  # the hub repository holds both the model and its weights
        return spec, None
    model, sep, pretrained = spec.partition("/")
    if not sep or not model or not pretrained:
        raise ValueError(f"open_clip encoders are named 'open_clip:<model>/<pretrained>', e.g. "
                         f"'open_clip:ViT-B-32/laion2b_s34b_b79k', got 'open_clip:{spec}'")
    return model, pretrained


def open_clip_encoder(spec: str, *, normalize: bool = False, device=None) -> TorchModuleEncoder:
    """``open_clip.create_model_and_transforms(model, pretrained=...)``; images -> ``encode_image``
    (L2-normalised when ``normalize``), preprocessed with the model's size, mean and std."""
    model_name, pretrained = _split_open_clip(spec)
    oc = require("open_clip", "open_clip_torch", f"open_clip:{spec}")
    model, _, _ = oc.create_model_and_transforms(model_name, pretrained=pretrained)
    visual = model.visual
    size = getattr(visual, "image_size", 224)
    mean = getattr(visual, "image_mean", None) or oc.OPENAI_DATASET_MEAN
    std = getattr(visual, "image_std", None) or oc.OPENAI_DATASET_STD
    preprocess = ImagePreprocess(size, mean, std, crop_pct=1.0, interpolation="bicubic")
    config = {"model": model_name, "pretrained": pretrained, "normalize": bool(normalize),
              "preprocess": preprocess.config(), "open_clip": _version(oc)}
    return TorchModuleEncoder(_EncodeImage(model, bool(normalize)), f"open_clip:{spec}", config, preprocess,
                              device=device)
