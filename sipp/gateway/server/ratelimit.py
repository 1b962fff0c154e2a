"""Per-client token-bucket rate limiting with an injectable clock."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RateLimiter"]

_MAX_BUCKETS = 4096
_IDLE_SECONDS = 900.0


class RateLimiter:
    """Buckets of capacity ``burst`` that refill at ``requests_per_minute / 60`` per second.

    A bucket starts full; each request costs one token. Idle buckets (15 minutes) are
    dropped, and at most 4096 are kept (the least recently used go first).
    """

    def __init__(self, requests_per_minute: int, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = requests_per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: str) -> float | None:
        """Take one token for ``key``: None if allowed, else seconds until one is available."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._prune(now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        if len(self._buckets) <= _MAX_BUCKETS:
            return
        for key in [k for k, (_, last) in self._buckets.items() if now - last > _IDLE_SECONDS]:
            del self._buckets[key]
        while len(self._buckets) > _MAX_BUCKETS:  # dicts keep insertion order: oldest first
            del self._buckets[next(iter(self._buckets))]
