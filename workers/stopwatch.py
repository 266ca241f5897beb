"""CPU seconds per stage of one page, for the benchmark's profile (``details["seconds"]`` of a page).

The pipeline opens a :class:`Stopwatch` for each page and times its stages with ``stage(name)``; code
deeper down (an OCR engine's detection and recognition) adds its own parts to the same watch through
:func:`stage`, without the watch being passed through every call. CPU time (user + system of the
process) is used, not wall time: a worker runs single-threaded, and CPU time does not move with the
load other processes put on the machine.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, Protocol, TypeVar

_current: contextvars.ContextVar[Stopwatch | None] = contextvars.ContextVar("stopwatch", default=None)


class Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._token: contextvars.Token[Stopwatch | None] | None = None

    def __enter__(self) -> Stopwatch:
        self._token = _current.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current.reset(self._token)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def rounded(self) -> dict[str, float]:
        return {name: round(value, 3) for name, value in self.seconds.items()}


class _HasDetails(Protocol):
    details: dict[str, Any]


P = ParamSpec("P")
T = TypeVar("T", bound=_HasDetails)


def timed_stages(func: Callable[P, T]) -> Callable[P, T]:
    """Run ``func`` with a watch open and put its stages' CPU seconds in the result's ``details["seconds"]``."""

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        with Stopwatch() as watch:
            result = func(*args, **kwargs)
        result.details["seconds"] = watch.rounded()
        return result

    return run


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Add the CPU time of the block to ``name`` on the page's watch (nothing when no watch is open)."""
    watch = _current.get()
    start = time.process_time()
    try:
        yield
    finally:
        if watch is not None:
            watch.add(name, time.process_time() - start)
