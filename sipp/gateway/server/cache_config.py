"""The ``[[caches]]`` and ``[[collections]]`` TOML sections and the ``cache`` / ``rag``
fields of a target: parsed and validated with their field paths, so ``sipp-gateway check``
reports every mistake before ``serve`` runs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sipp.gateway.server.config_reader import Reader, join, show

__all__ = [
    "TARGET_KEYS",
    "CacheConfig",
    "CacheExtensions",
    "ChunkingConfig",
    "CollectionConfig",
    "RagConfig",
    "RouteOnHit",
    "read_extensions",
]

# The fields every target type accepts on top of its own.
TARGET_KEYS = ("cache", "rag")

_CACHE_KEYS = ("name", "mode", "threshold", "embedding_target", "scope", "ttl_seconds",
               "max_entries", "max_bytes", "cache_nondeterministic", "on_hit", "on_miss")
_COLLECTION_KEYS = ("name", "embedding_target", "source", "index_path", "chunking",
                    "reindex_on_change")
_CHUNK_KEYS = ("max_chars", "overlap")
_RAG_KEYS = ("collection", "top_k", "min_score", "inject")


@dataclass(frozen=True)
class RouteOnHit:
    """Where a hit (``on_hit``) or a miss (``on_miss``) is sent instead of the target."""

    route_to: str
    with_context: bool = True


@dataclass(frozen=True)
class CacheConfig:
    """One ``[[caches]]`` entry."""

    name: str
    mode: Literal["exact", "semantic"] = "exact"
    threshold: float = 0.9
    embedding_target: str | None = None
    scope: Literal["per_caller", "shared"] = "per_caller"
    ttl_seconds: float = 3600.0
    max_entries: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    # cache sampled answers too (by default only temperature 0 or a seed is cached)
    cache_nondeterministic: bool = False
    on_hit: RouteOnHit | None = None
    on_miss: RouteOnHit | None = None


@dataclass(frozen=True)
class ChunkingConfig:
    """Paragraph chunks packed up to ``max_chars``; longer paragraphs are cut with
    ``overlap`` characters repeated between pieces."""

    max_chars: int = 800
    overlap: int = 100


@dataclass(frozen=True)
class CollectionConfig:
    """One ``[[collections]]`` entry: documents from ``source`` (a directory of text files
    or a JSONL file of ``{"id", "text", ...}``), embedded through ``embedding_target`` and
    persisted at ``index_path``."""

    name: str
    embedding_target: str
    source: str
    index_path: str
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    reindex_on_change: bool = True


@dataclass(frozen=True)
class RagConfig:
    """A target's ``rag`` table."""

    collection: str
    top_k: int = 4
    min_score: float = 0.3
    inject: Literal["system", "documents"] = "system"


@dataclass(frozen=True)
class CacheExtensions:
    """Caches, collections and which targets use them (by target name)."""

    caches: Mapping[str, CacheConfig] = field(default_factory=dict)
    collections: Mapping[str, CollectionConfig] = field(default_factory=dict)
    target_cache: Mapping[str, str] = field(default_factory=dict)
    target_rag: Mapping[str, RagConfig] = field(default_factory=dict)


def _number(r: Reader, data: Mapping[str, Any], path: str, key: str, default: float,
            low: float, high: float, *, open_low: bool = False) -> float:
    value = data.get(key, default)
    ok = not isinstance(value, bool) and isinstance(value, int | float) and \
        math.isfinite(value) and (low < value if open_low else low <= value) and value <= high
    if not ok:
        bound = f"({low:g}, {high:g}]" if open_low else f"[{low:g}, {high:g}]"
        r.fail(join(path, key), f"must be a number in {bound}, got {show(value)}")
        return default
    return float(value)


def _flag(r: Reader, data: Mapping[str, Any], path: str, key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        r.fail(join(path, key), f"must be true or false, got {show(value)}")
        return default
    return value


def _route(r: Reader, data: Mapping[str, Any], path: str, key: str,
           targets: set[str]) -> RouteOnHit | None:
    raw = data.get(key)
    if raw is None:
        return None
    where = join(path, key)
    known = ("route_to", "with_context") if key == "on_hit" else ("route_to",)
    table = r.table(raw, where, known)
    if table is None:
        return None
    name = r.text(table, where, "route_to")
    if name is not None and name not in targets:
        r.fail(join(where, "route_to"), f"unknown target: {name}")
    return RouteOnHit(name or "", _flag(r, table, where, "with_context", True))


def _entries(r: Reader, data: Mapping[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    raw = data.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        r.fail(key, f"must be an array of tables ([[{key}]]), got {show(raw)}")
        return []
    out = []
    for index, item in enumerate(raw):
        path = f"{key}[{index}]"
        if not isinstance(item, dict):
            r.fail(path, f"must be a table, got {show(item)}")
            continue
        out.append((path, item))
    return out


def _cache(r: Reader, path: str, item: dict[str, Any], targets: set[str]) -> CacheConfig:
    table = r.table(item, path, _CACHE_KEYS) or {}
    name = r.text(table, path, "name") or ""
    mode = r.choice(table, path, "mode", ("exact", "semantic"), "exact")
    embedding = r.text(table, path, "embedding_target", required=mode == "semantic")
    if embedding is not None and embedding not in targets:
        r.fail(join(path, "embedding_target"), f"unknown target: {embedding}")
    if mode == "exact":
        for key in ("threshold", "embedding_target"):
            if key in table:
                r.fail(join(path, key), 'is only used with mode = "semantic"')
    threshold = _number(r, table, path, "threshold", 0.9, 0.0, 1.0, open_low=True)
    ttl = _number(r, table, path, "ttl_seconds", 3600.0, 0.0, 365 * 86400.0, open_low=True)
    return CacheConfig(
        name=name, mode=mode,  # type: ignore[arg-type]
        threshold=threshold, embedding_target=embedding,
        scope=r.choice(table, path, "scope", ("per_caller", "shared"),
                       "per_caller"),  # type: ignore[arg-type]
        ttl_seconds=ttl,
        max_entries=r.integer(table, path, "max_entries", default=10_000) or 10_000,
        max_bytes=r.integer(table, path, "max_bytes", default=64 * 1024 * 1024)
        or 64 * 1024 * 1024,
        cache_nondeterministic=_flag(r, table, path, "cache_nondeterministic", False),
        on_hit=_route(r, table, path, "on_hit", targets),
        on_miss=_route(r, table, path, "on_miss", targets),
    )


def _collection(r: Reader, path: str, item: dict[str, Any], targets: set[str]
                ) -> CollectionConfig:
    table = r.table(item, path, _COLLECTION_KEYS) or {}
    name = r.text(table, path, "name") or ""
    embedding = r.text(table, path, "embedding_target") or ""
    if embedding and embedding not in targets:
        r.fail(join(path, "embedding_target"), f"unknown target: {embedding}")
    source = r.text(table, path, "source") or ""
    index_path = r.text(table, path, "index_path") or ""
    chunking = ChunkingConfig()
    if "chunking" in table:
        where = join(path, "chunking")
        chunk = r.table(table["chunking"], where, _CHUNK_KEYS) or {}
        max_chars = r.integer(chunk, where, "max_chars", default=800) or 800
        overlap = r.integer(chunk, where, "overlap", default=100, minimum=0)
        overlap = 100 if overlap is None else overlap
        if overlap >= max_chars:
            r.fail(join(where, "overlap"),
                   f"must be smaller than max_chars ({max_chars}), got {overlap}")
            overlap = 0
        chunking = ChunkingConfig(max_chars, overlap)
    return CollectionConfig(name, embedding, source, index_path, chunking,
                            _flag(r, table, path, "reindex_on_change", True))


def _rag(r: Reader, path: str, raw: Any, collections: Mapping[str, CollectionConfig]
         ) -> RagConfig | None:
    table = r.table(raw, path, _RAG_KEYS)
    if table is None:
        return None
    name = r.text(table, path, "collection") or ""
    if name and name not in collections:
        r.fail(join(path, "collection"), f"unknown collection: {name}")
    top_k = r.integer(table, path, "top_k", default=4) or 4
    if top_k > 64:
        r.fail(join(path, "top_k"), f"must be at most 64, got {top_k}")
    return RagConfig(name, top_k,
                     _number(r, table, path, "min_score", 0.3, -1.0, 1.0),
                     r.choice(table, path, "inject", ("system", "documents"),
                              "system"))  # type: ignore[arg-type]


def read_extensions(r: Reader, data: Mapping[str, Any],
                    target_tables: Sequence[Any]) -> CacheExtensions:
    """Read ``[[caches]]``, ``[[collections]]`` and each target's ``cache`` / ``rag``
    (``target_tables`` are the raw ``[[targets]]`` tables, in order)."""
    names = {t.get("name") for t in target_tables if isinstance(t, dict)}
    targets = {n for n in names if isinstance(n, str)}
    caches: dict[str, CacheConfig] = {}
    for path, item in _entries(r, data, "caches"):
        cache = _cache(r, path, item, targets)
        if cache.name in caches:
            r.fail(join(path, "name"), f"duplicate cache: {cache.name}")
        caches[cache.name] = cache
    collections: dict[str, CollectionConfig] = {}
    index_paths: dict[str, str] = {}
    for path, item in _entries(r, data, "collections"):
        collection = _collection(r, path, item, targets)
        if collection.name in collections:
            r.fail(join(path, "name"), f"duplicate collection: {collection.name}")
        if collection.index_path and collection.index_path in index_paths:
            r.fail(join(path, "index_path"), f"collection {index_paths[collection.index_path]}"
                                             " already uses this index file")
        index_paths.setdefault(collection.index_path, collection.name)
        collections[collection.name] = collection
    target_cache: dict[str, str] = {}
    target_rag: dict[str, RagConfig] = {}
    for index, table in enumerate(target_tables):
        if not isinstance(table, dict) or not isinstance(table.get("name"), str):
            continue
        path = f"targets[{index}]"
        if "cache" in table:
            name = r.text(table, path, "cache")
            if name is not None and name not in caches:
                r.fail(join(path, "cache"), f"unknown cache: {name}")
            elif name is not None:
                target_cache[table["name"]] = name
        if "rag" in table:
            rag = _rag(r, join(path, "rag"), table["rag"], collections)
            if rag is not None:
                target_rag[table["name"]] = rag
    return CacheExtensions(caches, collections, target_cache, target_rag)
