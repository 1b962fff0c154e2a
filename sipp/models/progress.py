"""Download progress: an optional ``callable(fraction)`` and a tqdm bar on a terminal only.

A bar on a non-terminal stream (a log file, a container's stdout) is noise, so bars are
drawn only when stderr is a TTY; the callback is called either way. Exceptions raised by
the callback propagate and stop the download.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["ProgressCallback", "bar_factory", "load_bar", "stderr_is_tty"]

ProgressCallback = Callable[[float], object]


def stderr_is_tty() -> bool:
    """Whether progress bars should be drawn (stderr is an interactive terminal)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


@functools.cache
def _bar_class() -> Any:
    """The tqdm subclass, built on first use (tqdm is not imported with ``sipp``)."""
    from tqdm import tqdm

    class _Bar(tqdm):  # type: ignore[misc]
        """tqdm that draws only on a TTY and reports ``done/total`` to a callback."""

        def __init__(
            self, *args: Any, sipp_callback: ProgressCallback | None = None,
            sipp_bar: bool = True,
            **kwargs: Any,
        ) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = not (sipp_bar and stderr_is_tty())
            self._sipp_callback = sipp_callback
            self._sipp_done = int(kwargs.get("initial") or 0)
            super().__init__(*args, **kwargs)
            self._sipp_report()

        def _sipp_report(self) -> None:
            total = self.total
            if self._sipp_callback is not None and total:
                self._sipp_callback(min(1.0, max(0.0, self._sipp_done / total)))

        def update(self, n: float | None = 1) -> bool | None:
            self._sipp_done += int(n or 0)
            result: bool | None = super().update(n)
            self._sipp_report()
            return result

    return _Bar


def bar_factory(callback: ProgressCallback | None, *, bar: bool = True) -> Callable[..., Any]:
    """A tqdm-compatible factory (``factory(total=..., desc=...)``) for one download."""

    def make(*args: Any, **kwargs: Any) -> Any:
        return _bar_class()(*args, sipp_callback=callback, sipp_bar=bar, **kwargs)

    return make


def load_bar(desc: str) -> ProgressCallback | None:
    """A model-load progress callback drawing a percent bar on a terminal (None elsewhere:
    the load then reports nothing rather than writing bar frames into logs)."""
    if not stderr_is_tty():
        return None
    bar = _bar_class()(total=100, desc=desc, unit="%", leave=False)
    state = {"shown": 0}

    def report(fraction: float) -> None:
        target = int(fraction * 100)
        if target > state["shown"]:
            bar.update(target - state["shown"])
            state["shown"] = target
        if fraction >= 1.0:
            bar.close()

    return report
