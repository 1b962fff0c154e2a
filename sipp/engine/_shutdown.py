"""Close engines still open when the interpreter exits, before their handles' finalizers.

An engine frees its context, samplers and model on its own thread, in order, when it is
closed. At interpreter exit ``weakref.finalize`` would instead free whatever owners are
still alive one by one on the main thread while the engine thread may still hold them,
which corrupted the heap (abort at exit) after concurrent runs when a script never called
``close()``. The hook is registered when the first engine opens, so it runs before the
finalizers' own exit hook (``atexit`` runs last-registered first).
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import weakref
from typing import Protocol

__all__ = ["close_at_exit"]


class _Closable(Protocol):
    def close(self) -> None: ...


_live: weakref.WeakSet[_Closable] = weakref.WeakSet()
_lock = threading.Lock()
_registered = False


def close_at_exit(engine: _Closable) -> None:
    """Close ``engine`` at interpreter exit if it is still open then."""
    global _registered
    with _lock:
        _live.add(engine)
        if not _registered:
            atexit.register(_close_live)
            _registered = True


def _close_live() -> None:
    for engine in list(_live):
        with contextlib.suppress(Exception):  # exiting: one engine's failure must not stop the rest
            engine.close()
