"""IDX files: the array format of MNIST and Fashion-MNIST, plain or gzip-compressed.

Layout (all integers big-endian)::

    bytes 0-1   zero
    byte  2     dtype code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
                0x0E float64)
    byte  3     number of dimensions d
    4 * d       the size of each dimension, uint32
    rest        the values, row-major, prod(sizes) * itemsize bytes
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_DTYPES", "IDXFormatError", "read_idx", "write_idx"]

#: IDX dtype code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IDXFormatError(ValueError):
    """The bytes are not a valid IDX file (bad magic number, dtype code, or length)."""


def _read_bytes(path: Path) -> bytes:
    """Whole file, gunzipped if it starts with the gzip magic (whatever its suffix)."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise IDXFormatError(
            f"{path}: the gzip stream is truncated or corrupt ({err}); "
            "expected a complete .gz file — download or reinstall it"
        ) from err


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or ``.gz``) into a native-endian array.

    Returns an array of shape ``(d0, d1, ...)`` as given in the header, e.g. ``(n, 28, 28)`` uint8
    for an ``idx3-ubyte`` image file and ``(n,)`` uint8 for an ``idx1-ubyte`` label file.

    Raises ``FileNotFoundError`` if the file is absent and :class:`IDXFormatError` (a
    ``ValueError``) if the magic number, dtype code or length is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXFormatError(
            f"{path}: file is {len(data)} bytes long; expected at least a 4-byte IDX magic number"
        )
    zero, code, ndim = int.from_bytes(data[0:2], "big"), data[2], data[3]
    if zero != 0 or code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise IDXFormatError(
            f"{path}: bad IDX magic number 0x{data[:4].hex().upper()}; expected 0x0000 followed by "
            f"a dtype code in ({known}) and the number of dimensions — is this an IDX file?"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(
            f"{path}: truncated header: {len(data)} bytes, expected {header} "
            f"for the sizes of {ndim} dimension(s)"
        )
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise IDXFormatError(
            f"{path}: file {what}: {got} data bytes after the header, expected {expected} "
            f"for shape {shape} of {dtype.name}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array, *, compress: bool | None = None) -> Path:
    """Write ``array`` (any shape, dtype uint8/int8/int16/int32/float32/float64) as an IDX file.

    ``compress=None`` gzips when the path ends in ``.gz``. Parent folders are created.
    Returns the path written.
    """
    path = Path(path)
    arr = np.asarray(array)
    by_kind = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}
    code = by_kind.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        names = ", ".join(dt.name for dt in IDX_DTYPES.values())
        raise TypeError(f"array: IDX cannot store dtype {arr.dtype}; expected one of: {names}")
    if arr.ndim > 255:
        raise ValueError(f"array: IDX stores at most 255 dimensions, got {arr.ndim}")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        payload = gzip.compress(payload, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path
