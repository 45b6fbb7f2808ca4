"""Wrap any frozen ``torch.nn.Module`` as an :class:`Encoder`, and the tensor image
preprocessing (grey -> RGB, resize, centre crop, normalise) that pretrained image models expect."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from .registry import Encoder, _check_sequence_of_str

__all__ = ["ImagePreprocess", "TorchModuleEncoder", "to_rgb"]


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """(n, H, W) or (n, 1, H, W) grey, or (n, 3, H, W) colour -> (n, 3, H, W)."""
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images: expected (n, H, W), (n, 1, H, W) or (n, 3, H, W), got shape {tuple(x.shape)}")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class ImagePreprocess:
    """Images in [0, 1] -> the input of a pretrained model, on tensors and in batches.

    Grey images become RGB; the shorter side is resized to ``size / crop_pct``, the centre
    ``size`` crop is kept, and channels are normalised with ``mean`` and ``std``. ``config()``
    is the JSON that goes into an encoder's config (and so into the cache key).
    """

    def __init__(self, size: int | Sequence[int], mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225), crop_pct: float = 1.0,
                 interpolation: str = "bilinear"):
        if isinstance(size, int):
            size = (size, size)
        self.size = (int(size[-2]), int(size[-1]))
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std: expected 3 values each (RGB), got {self.mean} and {self.std}")
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct: expected a value in (0, 1], got {crop_pct}")
        self.crop_pct = float(crop_pct)
        if interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(f"interpolation: expected 'bilinear', 'bicubic' or 'nearest', got {interpolation!r}")
        self.interpolation = interpolation

    def config(self) -> dict:
        return {"size": list(self.size), "mean": list(self.mean), "std": list(self.std),
                "crop_pct": self.crop_pct, "interpolation": self.interpolation}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = to_rgb(x).float()
        h, w = x.shape[-2:]
        th, tw = self.size
        short = min(th, tw) / self.crop_pct
        scale = short / min(h, w)
        rh, rw = max(th, math.floor(h * scale + 0.5)), max(tw, math.floor(w * scale + 0.5))
        if (rh, rw) != (h, w):
            kw = {} if self.interpolation == "nearest" else {"align_corners": False, "antialias": scale < 1}
            x = F.interpolate(x, size=(rh, rw), mode=self.interpolation, **kw)
        top, left = (rh - th) // 2, (rw - tw) // 2
        x = x[..., top:top + th, left:left + tw]
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"ImagePreprocess({self.config()})"


class TorchModuleEncoder(Encoder):
    """A frozen ``module`` as an encoder: ``module(preprocess(batch))`` flattened to (b, D).

    The module is put in eval mode and its parameters stop requiring gradients. ``config``
    must describe everything that changes its output (weights, preprocessing) since it keys
    the feature cache. ``modality="text"`` takes lists of strings and hands each batch, a list
    of str, to ``preprocess`` (a tokenizer, say) or to the module directly; a mapping returned
    by ``preprocess`` is passed as keyword arguments. When the module returns a tuple or list,
    its first element is used.
    """

    def __init__(self, module: torch.nn.Module, name: str, config: dict | None = None,
                 preprocess: Callable | None = None, *, modality: str = "image", device=None):
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
        if modality not in ("image", "text"):
            raise ValueError(f"modality: expected 'image' or 'text', got {modality!r}")
        if preprocess is not None and not callable(preprocess):
            raise TypeError(f"preprocess: expected a callable or None, got {type(preprocess).__name__}")
        super().__init__(name, config, device=device)
        self.modality = modality
        self.module = module.eval().requires_grad_(False).to(self.device)
        self.preprocess = preprocess

    def modules(self) -> list[torch.nn.Module]:
        return [self.module]

    def _prepare(self, inputs):
        if self.modality == "text":
            return _check_sequence_of_str(inputs)
        return super()._prepare(inputs)

    def _encode_batch(self, batch) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):
            batch = batch.to(self.device)
        x = self.preprocess(batch) if self.preprocess is not None else batch
        if isinstance(x, Mapping):  # e.g. a tokenizer's output: keyword arguments of the module
            out = self.module(**{k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in x.items()})
        else:
            out = self.module(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.reshape(out.shape[0], -1)
