"""Value training with the paper's defaults: SGD lr 0.3 without momentum, batch 256,
gradient-norm clip 1.0, cross-entropy with label smoothing 0.1."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F

from ..progress import track
from ..validation import as_tensor, check_positive_int


def check_number(value, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number in ``[low, high]`` (``low_open`` / ``high_open`` exclude the end)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    want = f"a finite number in {lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if (not math.isfinite(value) or (low is not None and (value < low or (low_open and value == low)))
            or (high is not None and (value > high or (high_open and value == high)))):
        raise ValueError(f"{name}: expected {want}, got {value}")
    return value


def check_labels(y, num_classes: int, name: str = "y") -> torch.Tensor:
    """Class labels ``(n,)`` as int64 in ``[0, num_classes)``. Whole-number floats are accepted;
    fractional values, NaN, one-hot / 2-D arrays and strings are refused with what to do instead."""
    if not isinstance(y, torch.Tensor):
        arr = np.asarray(y)
        if arr.dtype.kind in "USO":
            raise TypeError(f"{name}: expected integer class labels in [0, {num_classes}), got "
                            f"{'str' if arr.dtype.kind in 'US' else 'object'} values (e.g. {arr.flat[0]!r} if any); "
                            "encode them first, e.g. classes, y = numpy.unique(y, return_inverse=True)")
        y = as_tensor(arr, name)
    if y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"{name}: expected integer class labels in [0, {num_classes}), got dtype {y.dtype}")
    if y.dim() != 1:
        hint = ("; for one-hot or probability rows pass y.argmax(dim=1)" if y.dim() == 2 else "")
        raise ValueError(f"{name}: expected a 1-D tensor of class indices, got shape {tuple(y.shape)}"
                         f" (one-hot labels are not accepted{hint})")
    if y.is_floating_point():
        if bool(torch.isnan(y).any()):
            raise ValueError(f"{name} contains NaN ({int(torch.isnan(y).sum())} of {len(y)} labels); "
                             f"expected integer class labels in [0, {num_classes})")
        frac = torch.isfinite(y) & (y != y.round())
        if bool(frac.any()) or bool(torch.isinf(y).any()):
            bad = y[frac | torch.isinf(y)][0].item()
            raise ValueError(f"{name}: expected integer class labels in [0, {num_classes}), got the "
                             f"non-integer value {bad} (labels are not rounded or truncated)")
    if len(y) and (float(y.min()) < 0 or float(y.max()) >= num_classes):
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}), got [{y.min().item()}, {y.max().item()}]")
    return y.to(torch.long)


def train_values(model, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 1, lr: float = 0.3,
                 batch_size: int = 256, clip: float | None = 1.0, label_smoothing: float = 0.1,
                 shuffle: bool = True, seed: int = 0, progress: bool | None = None) -> list[float]:
    """Train ``model`` (a :class:`KeyValueClassifier`) on inputs ``x`` and integer labels ``y``
    in the order given (``shuffle`` only permutes within the call: a class-incremental stream
    calls this once per task). Only parameters with ``requires_grad`` are optimised — for the
    bottleneck, its values. Returns the mean loss per epoch.

    ``y``: ``(n,)`` class indices (integers, or floats holding whole numbers). ``lr`` must be a
    finite positive number, ``clip`` a finite positive number or None, ``label_smoothing`` in [0, 1).
    ``progress``: a bar over the epochs on a terminal (None, the default), also plain lines in a
    log (True), nothing (False); see :mod:`bottlenecks.progress`.
    """
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    lr = check_number(lr, "lr", low=0.0, low_open=True)
    if clip is not None:
        clip = check_number(clip, "clip", low=0.0, low_open=True)
    label_smoothing = check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0, high_open=True)
    x = as_tensor(x, "x")
    if x.dim() == 0:
        raise ValueError(f"x: expected a batch of inputs (n, ...), got a scalar {x.item()}")
    y = check_labels(y, model.num_classes)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}; expected the same number")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in track(range(epochs), "values", progress=progress, leave=False):
        order = torch.randperm(len(x), generator=g) if shuffle else torch.arange(len(x))
        total, count = 0.0, 0
        for s in range(0, len(x), batch_size):
            idx = order[s:s + batch_size]
            xb, yb = x[idx], y[idx].to(x.device)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        losses.append(total / max(1, count))
    return losses
