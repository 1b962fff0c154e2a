"""The shared shape of native owner objects: one handle, idempotent close, context manager."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any

from sipp.native._errors import UseAfterCloseError

__all__ = ["Owner"]


class Owner:
    """Owns one native handle; ``close()`` frees it once, the finalizer frees it otherwise.

    Subclasses call :meth:`_own` with a module-level free function and its arguments (which
    must not reference the owner), and read the handle through ``self._ptr`` (``None`` once
    closed) or :meth:`_handle` (raises a clear error once closed).
    """

    _kind = "native object"
    _ptr: Any = None
    _finalizer: weakref.finalize[Any, Any] | None = None

    def _own(self, ptr: Any, free: Callable[..., None], *args: Any) -> None:
        self._ptr = ptr
        self._finalizer = weakref.finalize(self, free, *args)

    def _handle(self) -> Any:
        ptr = self._ptr
        if ptr is None:
            raise self._closed()
        return ptr

    def _closed(self) -> UseAfterCloseError:
        return UseAfterCloseError(f"{self._kind} is closed")

    def _before_close(self) -> None:
        """Hook: close dependents before the handle is freed."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the handle never opened)."""
        return self._ptr is None

    def close(self) -> None:
        """Free the native handle now; calling it again does nothing."""
        if self._ptr is None:
            return
        self._before_close()
        self._ptr = None
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> Any:
        self._handle()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
