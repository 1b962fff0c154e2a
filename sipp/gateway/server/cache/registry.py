"""Every configured cache of a gateway, and which target uses which."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sipp.gateway.server.cache.semantic import SemanticMirror
from sipp.gateway.server.cache.service import ResponseCache
from sipp.gateway.server.cache.store import CacheStore, MemoryStore
from sipp.gateway.server.cache_config import CacheConfig, CacheExtensions

__all__ = ["CacheRegistry", "StoreFactory", "TargetEmbedder"]

# (embedding target name, text) -> vector
TargetEmbedder = Callable[[str, str], Awaitable[Sequence[float]]]
# Builds the store of one cache (with the callback for entries that leave it); without
# one, caches live in memory and ``clock`` times their TTL.
StoreFactory = Callable[[CacheConfig, Callable[[str], None]], CacheStore]


class CacheRegistry:
    def __init__(self, extensions: CacheExtensions, clock: Callable[[], float],
                 embed: TargetEmbedder, store_factory: StoreFactory | None = None) -> None:
        self.caches: dict[str, ResponseCache] = {}
        self._factory = store_factory
        self._by_target = dict(extensions.target_cache)
        for name, config in extensions.caches.items():
            mirror = SemanticMirror()
            store = (store_factory(config, mirror.remove) if store_factory is not None else
                     MemoryStore(config.ttl_seconds, config.max_entries, config.max_bytes,
                                 clock, mirror.remove))
            self.caches[name] = ResponseCache(
                config, store, None if config.embedding_target is None
                else _bound(embed, config.embedding_target), mirror)

    def for_target(self, target: str) -> ResponseCache | None:
        name = self._by_target.get(target)
        return self.caches.get(name) if name is not None else None

    def snapshot(self) -> list[dict[str, Any]]:
        return [cache.snapshot() for cache in self.caches.values()]

    async def aclose(self) -> None:
        """Close the stores' connections (a shared store's client)."""
        close = getattr(self._factory, "aclose", None)
        if close is not None:
            await close()


def _bound(embed: TargetEmbedder, target: str) -> Callable[[str], Awaitable[Sequence[float]]]:
    async def one(text: str) -> Sequence[float]:
        return await embed(target, text)
    return one
