"""One way to show progress: ``progress=`` on every long loop of the library and the studies.

``progress`` takes three values everywhere:

- ``False``: nothing is printed;
- ``None`` (the library's default): a tqdm bar on a terminal, nothing otherwise;
- ``True`` (the studies' and the command line's default): a tqdm bar on a terminal, and plain
  phase lines otherwise (``what: how far, time so far``; flushed, at most one every
  ``interval`` seconds plus the last), so a log file of a long run says where it is.

This module is a leaf: it imports nothing from the project.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator

__all__ = ["phase", "track", "wants_progress"]


def _terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def wants_progress(progress: bool | None) -> bool:
    """Whether anything will be shown for ``progress`` (a bar or lines)."""
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress: expected True, False or None, got {progress!r}")
    return progress is True or (progress is None and _terminal(sys.stderr))


def _fmt_time(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class _Lines:
    """Plain progress lines for a log: ``desc: i/total (p%), t s``."""

    def __init__(self, iterable, desc: str, total: int | None, interval: float, stream):
        self.iterable, self.desc, self.total, self.interval, self.stream = iterable, desc, total, interval, stream
        self.postfix = ""

    def set_postfix_str(self, s: str) -> None:  # the tqdm call the studies use
        self.postfix = s

    def _line(self, i: int, t0: float) -> None:
        far = f"{i}/{self.total} ({100 * i / self.total:.0f}%)" if self.total else f"{i}"
        extra = f" [{self.postfix}]" if self.postfix else ""
        print(f"{self.desc}: {far}, {_fmt_time(time.perf_counter() - t0)}{extra}", file=self.stream, flush=True)

    def __iter__(self) -> Iterator:
        t0 = last = time.perf_counter()
        i = 0
        try:
            for item in self.iterable:
                yield item
                i += 1
                now = time.perf_counter()
                if now - last >= self.interval and (self.total is None or i < self.total):
                    self._line(i, t0)
                    last = now
        finally:  # the last line also when the loop stops early (a converged k-means)
            self._line(i, t0)


class _Silent:
    def __init__(self, iterable):
        self.iterable = iterable

    def set_postfix_str(self, s: str) -> None:
        pass

    def __iter__(self):
        return iter(self.iterable)


def track(iterable: Iterable, desc: str, *, total: int | None = None, progress: bool | None = None,
          interval: float = 10.0, leave: bool = True):
    """``iterable`` wrapped by what ``progress`` asks for (see the module). The result iterates
    like ``iterable`` and has ``set_postfix_str`` (what is running now)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not wants_progress(progress):
        return _Silent(iterable)
    if _terminal(sys.stderr):
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=leave)
    return _Lines(iterable, desc, total, interval, sys.stderr)


def phase(message: str, progress: bool | None = None, start: float | None = None) -> None:
    """One line ``message`` (with the time since ``start``, a ``time.perf_counter()`` value) on
    stderr, flushed, when ``progress`` shows anything."""
    if wants_progress(progress):
        since = "" if start is None else f" ({_fmt_time(time.perf_counter() - start)})"
        print(f"{message}{since}", file=sys.stderr, flush=True)
