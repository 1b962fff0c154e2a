"""Where cached answers live: :class:`MemoryStore` (one process, LRU with TTL, entry and
byte limits). The Redis store (:mod:`.redis_store`) has the same methods."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from sipp.gateway.server.cache.entry import CachedAnswer

__all__ = ["CacheStore", "MemoryStore", "StoreStats"]


class StoreStats:
    """Counts a store keeps (the cache adds hits, misses and bypasses)."""

    def __init__(self) -> None:
        self.evictions = 0
        self.expirations = 0


class CacheStore(Protocol):
    stats: StoreStats

    async def get(self, key: str) -> CachedAnswer | None: ...
    async def put(self, key: str, answer: CachedAnswer) -> bool: ...
    async def flush(self) -> int: ...
    def entries(self) -> int: ...
    def bytes(self) -> int: ...


class MemoryStore:
    """An LRU map of key → answer; an entry lives ``ttl`` seconds of ``clock``. When
    ``max_entries`` or ``max_bytes`` (the answers' serialized size) would be exceeded the
    least recently used entries go; ``on_drop(key)`` hears of every entry that leaves."""

    def __init__(self, ttl: float, max_entries: int, max_bytes: int,
                 clock: Callable[[], float],
                 on_drop: Callable[[str], None] = lambda key: None) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self.on_drop = on_drop
        self.stats = StoreStats()
        self._items: OrderedDict[str, tuple[CachedAnswer, float, int]] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str) -> CachedAnswer | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= self.clock():
            self.stats.expirations += 1
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return item[0]

    async def put(self, key: str, answer: CachedAnswer) -> bool:
        size = len(answer.to_bytes()) + len(key)
        if size > self.max_bytes:
            return False
        if key in self._items:
            self._drop(key)
        self._items[key] = (answer, self.clock() + self.ttl, size)
        self._bytes += size
        while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._items))
            self.stats.evictions += 1
            self._drop(oldest)
        return True

    def _drop(self, key: str) -> None:
        _, _, size = self._items.pop(key)
        self._bytes -= size
        self.on_drop(key)

    async def flush(self) -> int:
        count = len(self._items)
        for key in list(self._items):
            self._drop(key)
        return count

    def entries(self) -> int:
        return len(self._items)

    def bytes(self) -> int:
        return self._bytes
