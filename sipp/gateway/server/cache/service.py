"""One configured cache (:class:`ResponseCache`): lookups, fills and the counts the
dashboard and ``/metrics`` show."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sipp.gateway.server.cache.entry import CachedAnswer
from sipp.gateway.server.cache.keys import RequestKey
from sipp.gateway.server.cache.semantic import SemanticMirror
from sipp.gateway.server.cache.store import CacheStore
from sipp.gateway.server.cache_config import CacheConfig

__all__ = ["Embedder", "Lookup", "ResponseCache"]

# Embeds one question through the cache's embedding target.
Embedder = Callable[[str], Awaitable[Sequence[float]]]


@dataclass
class Lookup:
    """What a lookup found: the answer (None on a miss), its similarity (1.0 for an exact
    hit) and the question vector a semantic miss is filed under."""

    answer: CachedAnswer | None
    score: float = 0.0
    vector: Sequence[float] | None = None


class ResponseCache:
    """An exact or semantic cache over ``store``; semantic ones embed with ``embed`` and
    search the replica-local ``mirror``."""

    def __init__(self, config: CacheConfig, store: CacheStore,
                 embed: Embedder | None = None,
                 mirror: SemanticMirror | None = None) -> None:
        self.config = config
        self.store = store
        self.embed = embed
        self.mirror = mirror or SemanticMirror()
        self.hits = 0
        self.misses = 0
        self.bypasses = 0
        self.stores = 0
        self.errors = 0  # lookups and fills the store or embedding target failed
        self.routed: defaultdict[tuple[str, str], int] = defaultdict(int)  # (hit|miss, target)

    @property
    def semantic(self) -> bool:
        return self.config.mode == "semantic"

    def scope(self, caller: str) -> str:
        return "*" if self.config.scope == "shared" else f"caller:{caller}"

    async def lookup(self, key: RequestKey) -> Lookup:
        exact = await self.store.get(key.exact)
        if exact is not None or not self.semantic or self.embed is None or not key.question:
            return Lookup(exact, 1.0 if exact is not None else 0.0)
        vector = await self.embed(key.question)
        await self.sync()
        best = await asyncio.to_thread(self.mirror.best, key.partition, vector)
        if best is None or best[1] < self.config.threshold:
            return Lookup(None, best[1] if best else 0.0, vector)
        answer = await self.store.get(best[0])
        if answer is None:
            self.mirror.remove(best[0])
            return Lookup(None, 0.0, vector)
        return Lookup(answer, best[1], vector)

    async def fill(self, key: RequestKey, answer: CachedAnswer,
                   vector: Sequence[float] | None) -> None:
        if not await self.store.put(key.exact, answer):
            return
        self.stores += 1
        if self.semantic and vector is not None:
            self.mirror.add(key.partition, key.exact, vector)
            publish = getattr(self.store, "publish_vector", None)
            if publish is not None:
                await publish(key.partition, key.exact, vector)

    async def sync(self) -> None:
        """Pull the vectors other replicas filed (a shared store only)."""
        pull = getattr(self.store, "pull_vectors", None)
        if pull is not None:
            await pull(self.mirror)

    async def flush(self) -> int:
        count = await self.store.flush()
        self.mirror.clear()
        return count

    def snapshot(self) -> dict[str, Any]:
        """The counts for the dashboard and ``/metrics``."""
        stats = self.store.stats
        return {"name": self.config.name, "mode": self.config.mode,
                "scope": self.config.scope, "entries": self.store.entries(),
                "bytes": self.store.bytes(), "hits": self.hits, "misses": self.misses,
                "bypasses": self.bypasses, "stores": self.stores, "errors": self.errors,
                "evictions": stats.evictions, "expirations": stats.expirations,
                "routed": [{"on": on, "target": target, "count": n}
                           for (on, target), n in sorted(self.routed.items())]}
