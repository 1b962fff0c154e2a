"""Request ids the gateway makes up: ``gw-`` and 16 random hex digits.

``os.urandom`` releases the GIL. On a busy gateway the event loop then waits for the HTTP
I/O thread to hand the GIL back, about 0.2 ms a request, so ids are made 512 at a time
from one read (the same unguessable ids, one system call per 512 of them).
"""

from __future__ import annotations

import collections
import os

__all__ = ["new_request_id"]

_ID_BYTES = 8
_BATCH = 512

# deque.popleft and extend are atomic: any thread may take an id without a lock, and two
# threads that refill at once each add fresh ids
_ready: collections.deque[str] = collections.deque()


def _refill() -> None:
    raw = os.urandom(_ID_BYTES * _BATCH).hex()
    step = 2 * _ID_BYTES
    _ready.extend("gw-" + raw[i:i + step] for i in range(0, len(raw), step))


def new_request_id() -> str:
    """A fresh ``gw-<16 hex digits>`` request id."""
    while True:
        try:
            return _ready.popleft()
        except IndexError:
            _refill()


os.register_at_fork(after_in_child=_ready.clear)  # a child must not repeat its parent's ids
