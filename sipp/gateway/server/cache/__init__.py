"""The gateway's response cache: exact and semantic keys, stores (memory or Redis), the
replica-local vector mirror, and what a hit replays."""

from __future__ import annotations

from sipp.gateway.server.cache.entry import ZERO_USAGE, CachedAnswer
from sipp.gateway.server.cache.keys import CacheControl, RequestKey, cache_control, request_key
from sipp.gateway.server.cache.redis_store import RedisStore, RedisStores
from sipp.gateway.server.cache.registry import CacheRegistry, StoreFactory, TargetEmbedder
from sipp.gateway.server.cache.semantic import SemanticMirror
from sipp.gateway.server.cache.service import Embedder, Lookup, ResponseCache
from sipp.gateway.server.cache.store import CacheStore, MemoryStore, StoreStats

__all__ = [
    "ZERO_USAGE",
    "CacheControl",
    "CacheRegistry",
    "CacheStore",
    "CachedAnswer",
    "Embedder",
    "Lookup",
    "MemoryStore",
    "RedisStore",
    "RedisStores",
    "RequestKey",
    "ResponseCache",
    "SemanticMirror",
    "StoreFactory",
    "StoreStats",
    "TargetEmbedder",
    "cache_control",
    "request_key",
]
