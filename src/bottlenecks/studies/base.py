"""What every study's config and results have in common: built from a dict with unknown keys
refused, validated on construction, and a JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import ClassVar

from ..validation import check_params


def _plain(value):
    """Tuples -> lists and nested dataclasses -> dicts, so ``json.dumps`` takes the value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _unknown_keys_error(cls, unknown, fields) -> ValueError:
    import difflib

    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, fields, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ValueError(f"{cls.__name__}: unknown key(s) {', '.join(hints)}; expected some of {sorted(fields)}")


class _FromDict:
    @classmethod
    def from_dict(cls, values: dict):
        """Build from a dict (e.g. parsed JSON or flags). Unknown keys raise a ``ValueError`` that
        names them and the valid ones; a list given where the default is a tuple becomes a tuple."""
        if not isinstance(values, dict):
            raise TypeError(f"{cls.__name__}.from_dict: expected a dict, got {type(values).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [k for k in values if k not in fields]
        if unknown:
            raise _unknown_keys_error(cls, unknown, fields)
        kwargs = {}
        for key, value in values.items():
            f = fields[key]
            default = f.default if f.default is not dataclasses.MISSING else None
            if isinstance(default, tuple) and isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return _plain(self)


class StudyConfig(_FromDict):
    """Base of every study's config dataclass (subclass it with ``@dataclass``).

    ``constraints`` (a class attribute): ``{field: [constraint, ...]}`` in
    :mod:`bottlenecks.validation`'s declarative style (``Interval(int, 1, None)``, ``Options(...)``,
    ``None``), checked on construction; override :meth:`validate` for what depends on several
    fields. A config that exists is a valid one. Every config has a ``seed`` field of its own
    choosing (``--seed``)."""

    constraints: ClassVar[dict] = {}

    def __post_init__(self):
        check_params({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, self.constraints)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field, the value given and what is expected."""

    def replace(self, **changes):
        """A copy with ``changes`` applied (validated; unknown names raise)."""
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = [k for k in changes if k not in fields]
        if unknown:
            raise _unknown_keys_error(type(self), unknown, fields)
        return dataclasses.replace(self, **changes)


class StudyResults(_FromDict):
    """Base of every study's results dataclass: plain JSON-able fields (numbers, strings, lists,
    dicts), so ``from_json(to_json(r)) == r``. NaN survives the round trip (Python's JSON).
    ``results["name"]`` reads a field too (the studies returned dicts before)."""

    def __getitem__(self, key: str):
        if key not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def to_json(self, path=None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=True)
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path):
        """Parse JSON text, or read it from a path (``str`` ending in ``.json`` or a ``Path``)."""
        if isinstance(text_or_path, Path) or (isinstance(text_or_path, str) and text_or_path.endswith(".json")):
            path = Path(text_or_path)
            try:
                values = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: not valid JSON ({err})") from err
        else:
            values = json.loads(text_or_path)
        return cls.from_dict(values)


def prepare_out(out, create: bool = True) -> Path:
    """The report folder ``out``, checked (no file in its way, writable) and, with ``create``,
    created with its parents, so a study fails here (``out ...``, naming the folder) before any
    work starts rather than after it. ``create=False`` only checks: nothing is written."""
    import os

    out = Path(out).expanduser()
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(f"out {out}: {parent} is a file; expected a folder for the report")
        if parent.exists():
            if not os.access(parent, os.W_OK | os.X_OK):
                raise PermissionError(f"out {out}: {parent} is not writable")
            break
    if not create:
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"out {out}: cannot create the folder ({err.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(f"out {out}: the folder is not writable")
    return out


def write_json(obj, path, indent: int | None = 2) -> Path:
    """Write ``obj`` (plain values, dataclasses) as JSON to ``path`` (folders made), through a
    temporary file so a reader never sees half a file: partial results of a running study."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_plain(obj), indent=indent, allow_nan=True, default=float))
    tmp.replace(path)
    return path


def nan_equal(a, b) -> bool:
    """Deep equality where NaN equals NaN (to compare results after a JSON round trip)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(nan_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(nan_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b
