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
    if t.is_complex():
        raise TypeError(f"{name}: expected real numbers, got dtype {t.dtype}")
    if dtype is not None or device is not None:
        t = t.to(device=device if device is not None else t.device,
                 dtype=dtype if dtype is not None else t.dtype)
    return t


def check_float(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Reject integer / bool / complex tensors: silent casting hides bugs in tensor code."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a floating-point torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name}: expected a floating-point tensor (float16, bfloat16, float32 or float64), "
            f"got {x.dtype}; convert it first, e.g. {name}.float()"
        )
    return x


def check_ndim(x: torch.Tensor, ndims, name: str = "x", shape_hint: str = "") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
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


def check_squarable(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Refuse values whose squares (squared distances, kernel exponents) leave ``x``'s dtype's
    normal range: ``max |x|`` above ``sqrt(max) / 1e3`` or below ``sqrt(tiny) * 1e3`` (all-zero
    data passes). About 1e16 / 1e-16 in float32 and 1e151 / 1e-151 in float64."""
    if not x.is_floating_point() or x.numel() == 0:
        return x
    info, amax = torch.finfo(x.dtype), float(x.detach().abs().max())
    hi, lo = info.max ** 0.5 / 1e3, info.tiny ** 0.5 * 1e3
    if amax > hi or 0 < amax < lo:
        raise ValueError(f"{name}: {x.dtype} values of magnitude up to {amax:.3g} leave the range in which their "
                         f"squares are computed exactly (max |{name}| in [{lo:.1g}, {hi:.1g}]); rescale {name} "
                         "(e.g. divide by its standard deviation) or use float64")
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


def check_device(device, name: str = "device") -> str:
    """A torch device name this machine has: ``cpu``, ``cuda`` / ``cuda:N`` (with a CUDA build and
    that many GPUs) or ``mps``. Refused before any work starts, not at the first ``.to(device)``."""
    if not isinstance(device, str):
        raise TypeError(f"{name}: expected a device name such as 'cpu' or 'cuda', got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name}: {device!r} is not a torch device; expected cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"{name}: {device!r} is not available ({why}, torch {torch.__version__}); use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name}: {device!r} is not available ({torch.cuda.device_count()} GPU(s) visible)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}: {device!r} is not available on this machine; use cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{name}: {device!r} is not supported here; expected cpu, cuda, cuda:N or mps")
    return device


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {sorted(choices)}, got {value!r}")
    return value


# ------------------------------------------------------------------------------- declarative checks
class ParameterError(ValueError, TypeError):
    """A parameter outside its constraints (both a ``ValueError`` and a ``TypeError``, as
    scikit-learn's ``InvalidParameterError``: callers catching either see it)."""


class Interval:
    """A constraint on a number: ``Interval(int, 1, None)`` is an integer >= 1,
    ``Interval(float, 0, 1, closed="right")`` a number in (0, 1] (``float`` accepts ints too,
    never booleans, never NaN; an unbounded side still refuses infinity).

    As scikit-learn's ``_parameter_constraints``: a list of constraints per parameter, the value
    passes if any of them accepts it (``None`` in the list accepts ``None``); see :func:`check_params`.
    """

    def __init__(self, kind: type, left=None, right=None, closed: str = "both"):
        if kind not in (int, float):
            raise TypeError(f"kind: expected int or float, got {kind!r}")
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed: expected 'both', 'left', 'right' or 'neither', got {closed!r}")
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def accepts(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if not np.isfinite(float(value)):
            return False
        lo_ok = self.left is None or (value >= self.left if self.closed in ("both", "left") else value > self.left)
        hi_ok = self.right is None or (value <= self.right if self.closed in ("both", "right") else value < self.right)
        return lo_ok and hi_ok

    def __str__(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        lo_in, hi_in = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.left is not None and self.right is not None:
            return f"{what} in {'[' if lo_in else '('}{self.left:g}, {self.right:g}{']' if hi_in else ')'}"
        if self.left is not None:
            return f"{what} {'>=' if lo_in else '>'} {self.left:g}"
        if self.right is not None:
            return f"{what} {'<=' if hi_in else '<'} {self.right:g}"
        return what


class Options:
    """A constraint: one of a fixed set of values (``Options({"kmeans", "ema"})``)."""

    def __init__(self, choices):
        self.choices = tuple(choices)

    def accepts(self, value) -> bool:
        try:
            return value in self.choices
        except TypeError:  # unhashable or incomparable
            return False

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)


class InstanceOf:
    """A constraint: an instance of ``kind`` (a type or a tuple of types; ``bool`` is not an ``int`` here)."""

    def __init__(self, kind, description: str | None = None):
        self.kind, self.description = kind, description

    def accepts(self, value) -> bool:
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        if isinstance(value, bool) and bool not in kinds:
            return False
        return isinstance(value, self.kind)

    def __str__(self) -> str:
        if self.description:
            return self.description
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        return "a " + " or a ".join(k.__name__ for k in kinds)


def _describe(constraints) -> str:
    return " or ".join("None" if c is None else str(c) for c in constraints)


def check_param(value, name: str, constraints):
    """Return ``value`` if one of ``constraints`` (a constraint or a list of them, see
    :class:`Interval`, :class:`Options`, :class:`InstanceOf`; ``None`` accepts ``None``) accepts
    it; else raise :class:`ParameterError` (a ``ValueError`` and a ``TypeError``) naming ``name``,
    what was given and what is expected."""
    constraints = constraints if isinstance(constraints, (list, tuple)) else [constraints]
    for c in constraints:
        if (value is None) if c is None else c.accepts(value):
            return value
    shown = repr(value) if isinstance(value, (numbers.Real, str)) and not isinstance(value, bool) else \
        f"{value!r} ({type(value).__name__})"
    raise ParameterError(f"{name}: expected {_describe(constraints)}, got {shown}")


def check_params(values: dict, constraints: dict) -> None:
    """:func:`check_param` for every name of ``constraints`` present in ``values``."""
    for name, cons in constraints.items():
        if name in values:
            check_param(values[name], name, cons)
