"""Input checks shared by every package: one helper per concern, each error says what was
given and what is expected. This module is a leaf: it imports nothing from the project."""

from __future__ import annotations

import numbers

import numpy as np
import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_tensor(x, name: str = "x", *, device=None, dtype=None) -> torch.Tensor:
    """NumPy / list / tensor -> tensor, never sharing memory that we later write to."""
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as err:  # pragma: no cover - numpy gives good messages
            raise TypeError(f"{name}: expected an array-like or a torch.Tensor, got {type(x).__name__}") from err
        if arr.dtype == object:
            raise TypeError(f"{name}: expected numeric data, got an object array")
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected numeric data, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if dtype is not None or device is not None:
        t = t.to(device=device if device is not None else t.device,
                 dtype=dtype if dtype is not None else t.dtype)
    return t


def check_float(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Reject integer / bool / complex tensors: silent casting hides bugs in tensor code."""
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name}: expected a floating-point tensor (float16, bfloat16, float32 or float64), "
            f"got {x.dtype}; convert it first, e.g. {name}.float()"
        )
    return x


def check_ndim(x: torch.Tensor, ndims, name: str = "x", shape_hint: str = "") -> torch.Tensor:
    ndims = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    if x.dim() not in ndims:
        hint = f" {shape_hint}" if shape_hint else ""
        want = " or ".join(f"{n}-D" for n in ndims)
        extra = ""
        if x.dim() == 1 and 2 in ndims:
            extra = "; reshape a single feature with x.reshape(-1, 1) or a single sample with x.reshape(1, -1)"
        raise ValueError(f"{name}: expected a {want} tensor{hint}, got shape {tuple(x.shape)}{extra}")
    return x


def check_nonempty(x: torch.Tensor, name: str = "x", min_samples: int = 1) -> torch.Tensor:
    if x.dim() >= 1 and x.shape[0] < min_samples:
        raise ValueError(f"{name}: expected at least {min_samples} sample(s), "
                         f"got {x.shape[0]} (shape {tuple(x.shape)})")
    if x.dim() >= 2 and x.shape[-1] == 0:
        raise ValueError(f"{name}: expected at least 1 feature, got shape {tuple(x.shape)}")
    return x


def _all_finite(x: torch.Tensor) -> bool:
    """``torch.isfinite(x).all()`` in slices of ~4M elements: on a whole tensor it allocates
    temporaries of up to twice the tensor's size."""
    flat = x.reshape(-1) if x.is_contiguous() else None
    if flat is None or flat.numel() <= 1 << 22:
        return bool(torch.isfinite(x).all())
    return all(bool(torch.isfinite(flat[s:s + (1 << 22)]).all()) for s in range(0, flat.numel(), 1 << 22))


def check_finite(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    if x.is_floating_point() and not _all_finite(x):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(f"{name} contains NaN or infinity ({n_nan} NaN, {n_inf} inf values); "
                         "expected finite values — clean or impute the data first")
    return x


def check_same_device(a: torch.Tensor, b: torch.Tensor, names=("x", "codes")) -> None:
    if a.device != b.device:
        raise ValueError(f"{names[0]} is on {a.device} but {names[1]} is on {b.device}; "
                         f"move them to one device, e.g. {names[1]}.to({names[0]}.device)")


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {sorted(choices)}, got {value!r}")
    return value
