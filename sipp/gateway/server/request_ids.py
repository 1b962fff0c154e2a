"""Request ids the gateway makes up: ``gw-`` and 16 random hex digits.

``os.urandom`` releases the GIL. On a busy gateway the event loop then waits for the HTTP
I/O thread to hand the GIL back, about 0.2 ms a request, so the random bytes are read
4 KiB at a time (the same unguessable ids, one system call per 512 of them).
"""

from __future__ import annotations

import os
import threading

__all__ = ["new_request_id"]

_ID_BYTES = 8
_REFILL_BYTES = 4096


class _RandomBytes:
    """Random bytes handed out ``_ID_BYTES`` at a time from a buffered ``os.urandom`` read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def take(self) -> bytes:
        with self._lock:
            if self._offset + _ID_BYTES > len(self._buffer):
                self._buffer = os.urandom(_REFILL_BYTES)
                self._offset = 0
            start = self._offset
            self._offset = start + _ID_BYTES
            return self._buffer[start:start + _ID_BYTES]

    def forget(self) -> None:
        """Drop the buffer (a forked child must not repeat its parent's ids)."""
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0


_random = _RandomBytes()
os.register_at_fork(after_in_child=_random.forget)


def new_request_id() -> str:
    """A fresh ``gw-<16 hex digits>`` request id."""
    return "gw-" + _random.take().hex()
