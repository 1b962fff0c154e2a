"""Cached answers in Redis (``[state] backend = "redis"``), shared by every replica.

An answer is one Redis string key with the cache's TTL (``SET ... PX``); a sorted set of
keys by last use keeps the entry limit (the least recently used beyond ``max_entries`` are
deleted, counted as evictions); an answer larger than ``max_bytes`` is not stored (the
total size is left to Redis' own ``maxmemory`` policy). A semantic cache also appends each
question vector to a Redis stream; every replica searches its own in-process mirror and
pulls the stream's new entries before each search, so a question one replica answered is a
hit on all of them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from sipp.gateway.server.cache.entry import CachedAnswer
from sipp.gateway.server.cache.semantic import SemanticMirror
from sipp.gateway.server.cache.store import StoreStats
from sipp.gateway.server.cache_config import CacheConfig

__all__ = ["RedisStore", "RedisStores"]

_PULL_BATCH = 1000


class RedisStore:
    """``client``: a ``redis.asyncio.Redis`` returning bytes; keys start with ``prefix``
    (the ``[state]`` key prefix) and ``cache:<name>:``."""

    def __init__(self, client: Any, prefix: str, name: str, ttl: float, max_entries: int,
                 max_bytes: int, on_drop: Callable[[str], None] = lambda key: None) -> None:
        self.client = client
        self.base = f"{prefix}cache:{name}:"
        self.ttl_ms = max(1, int(ttl * 1000))
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.on_drop = on_drop
        self.stats = StoreStats()
        self._recency = self.base + "recency"
        self._stream = self.base + "vectors"
        self._last_id = b"0-0"
        self._entries = 0
        self._bytes = 0

    def _key(self, key: str) -> str:
        return self.base + "entry:" + key

    async def get(self, key: str) -> CachedAnswer | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self._key(key))
        pipe.time()
        data, (seconds, micros) = await pipe.execute()
        if data is None:
            return None
        await self.client.zadd(self._recency, {key: seconds + micros / 1e6}, xx=True)
        return CachedAnswer.from_bytes(data)

    async def put(self, key: str, answer: CachedAnswer) -> bool:
        data = answer.to_bytes()
        if len(data) + len(key) > self.max_bytes:
            return False
        seconds, micros = await self.client.time()
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self._key(key), data, px=self.ttl_ms)
        pipe.zadd(self._recency, {key: seconds + micros / 1e6})
        pipe.zcard(self._recency)
        _, _, count = await pipe.execute()
        if count > self.max_entries:
            old = await self.client.zpopmin(self._recency, count - self.max_entries)
            stale = [k.decode() if isinstance(k, bytes) else str(k) for k, _ in old]
            if stale:
                await self.client.delete(*(self._key(k) for k in stale))
                self.stats.evictions += len(stale)
                for k in stale:
                    self.on_drop(k)
        self._entries = min(count, self.max_entries)
        self._bytes += len(data)
        return True

    async def publish_vector(self, partition: str, key: str, vector: Sequence[float]) -> None:
        packed = struct.pack(f"<{len(vector)}f", *vector)
        await self.client.xadd(self._stream, {b"p": partition.encode(), b"k": key.encode(),
                                              b"v": packed},
                               maxlen=self.max_entries * 2, approximate=True)

    async def pull_vectors(self, mirror: SemanticMirror) -> None:
        """Add the vectors filed since the last pull (by any replica) to ``mirror``."""
        while True:
            rows = await self.client.xrange(self._stream, b"(" + self._last_id, b"+",
                                            count=_PULL_BATCH)
            for row_id, fields in rows:
                vector = fields[b"v"]
                mirror.add(fields[b"p"].decode(), fields[b"k"].decode(),
                           struct.unpack(f"<{len(vector) // 4}f", vector))
                self._last_id = row_id
            if len(rows) < _PULL_BATCH:
                return

    async def flush(self) -> int:
        count = 0
        async for key in self.client.scan_iter(match=self.base + "*", count=500):
            count += await self.client.delete(key) if b":entry:" in key else 0
        await self.client.delete(self._recency, self._stream)
        self._last_id = b"0-0"
        self._entries = self._bytes = 0
        return count

    def entries(self) -> int:
        """The entry count Redis reported at this replica's last fill."""
        return self._entries

    def bytes(self) -> int:
        """Bytes this replica filed (Redis holds the total)."""
        return self._bytes


class RedisStores:
    """A store factory for :class:`~.registry.CacheRegistry`: every cache in the Redis at
    ``url`` through one connection pool (bytes in and out); :meth:`aclose` closes it."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as redis_asyncio

        self.prefix = prefix
        self.client = redis_asyncio.Redis.from_url(url, socket_timeout=2.0,
                                                   socket_connect_timeout=2.0)

    def __call__(self, config: CacheConfig, on_drop: Callable[[str], None]) -> RedisStore:
        return RedisStore(self.client, self.prefix, config.name, config.ttl_seconds,
                          config.max_entries, config.max_bytes, on_drop)

    async def aclose(self) -> None:
        await self.client.aclose()
