"""The replica-local vector mirror of a semantic cache: one :class:`~sipp.vector.VectorIndex`
of question vectors per partition (same target, options and scope), row id = exact key."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from sipp.vector import VectorIndex

__all__ = ["SemanticMirror"]


class SemanticMirror:
    """Thread-safe: searches run on worker threads, writes come from the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[str, VectorIndex] = {}
        self._where: dict[str, str] = {}

    def add(self, partition: str, key: str, vector: Sequence[float]) -> None:
        with self._lock:
            index = self._parts.get(partition)
            if index is None:
                index = self._parts[partition] = VectorIndex()
            old = self._where.get(key)
            if old is not None and old != partition:
                self._parts[old].delete([key])
            self._where[key] = partition
        index.upsert([key], [list(vector)])

    def remove(self, key: str) -> None:
        with self._lock:
            partition = self._where.pop(key, None)
            index = self._parts.get(partition) if partition is not None else None
            if index is not None and index.delete([key]) and not len(index):
                del self._parts[partition]  # type: ignore[arg-type]

    def best(self, partition: str, vector: Sequence[float]) -> tuple[str, float] | None:
        """The nearest question of ``partition`` and its cosine similarity."""
        with self._lock:
            index = self._parts.get(partition)
        if index is None:
            return None
        try:
            hits = index.search(list(vector), 1)
        except Exception:  # a vector of another dimension (embedding target changed)
            return None
        return (hits[0].id, hits[0].score) if hits else None

    def clear(self) -> None:
        with self._lock:
            self._parts.clear()
            self._where.clear()

    def __len__(self) -> int:
        return len(self._where)
