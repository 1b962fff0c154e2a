"""Application-wide admission: at most ``max_concurrent_requests`` in flight."""

from __future__ import annotations

__all__ = ["Admission"]


class Admission:
    """A non-blocking counter (one event loop, so no lock): ``try_enter`` or refuse."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.active = 0

    def try_enter(self) -> bool:
        if self.limit is not None and self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1
