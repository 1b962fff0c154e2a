"""Host-memory store of saved sequence states, keyed by a hash of their token prefix."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sipp.scheduler._tokens import prefix_hashes

__all__ = ["SnapshotEntry", "SnapshotStore"]


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    """One saved state: the KV of the first ``n_tokens`` tokens of some prompt."""

    key: bytes
    n_tokens: int
    data: bytes

    @property
    def nbytes(self) -> int:
        return len(self.data)


class SnapshotStore:
    """An LRU of :class:`SnapshotEntry` bounded by ``max_entries`` and ``max_bytes``.

    ``find_longest(tokens, limit)`` returns the stored entry with the longest prefix of
    ``tokens`` (at most ``limit`` tokens): one incremental hash pass over the prompt at the
    stored lengths, so lookups cost O(prompt + distinct lengths).
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be >= 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, SnapshotEntry] = OrderedDict()
        self._length_counts: dict[int, int] = {}
        self.total_bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def keys(self) -> list[bytes]:
        """Keys from least to most recently used."""
        return list(self._entries)

    def put(self, key: bytes, n_tokens: int, data: bytes) -> bool:
        """Store (or refresh) an entry, evicting least recently used ones to fit.

        Returns False, storing nothing, when ``data`` alone exceeds ``max_bytes``.
        """
        if len(data) > self.max_bytes:
            return False
        self.discard(key)
        self._entries[key] = SnapshotEntry(key, n_tokens, bytes(data))
        self._length_counts[n_tokens] = self._length_counts.get(n_tokens, 0) + 1
        self.total_bytes += len(data)
        while len(self._entries) > self.max_entries or self.total_bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self.discard(oldest)
            self.evictions += 1
        return True

    def discard(self, key: bytes) -> None:
        """Remove an entry if present."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.total_bytes -= entry.nbytes
        left = self._length_counts[entry.n_tokens] - 1
        if left:
            self._length_counts[entry.n_tokens] = left
        else:
            del self._length_counts[entry.n_tokens]

    def get(self, key: bytes) -> SnapshotEntry | None:
        """The entry for ``key`` (marked most recently used), or None."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def find_longest(self, tokens: npt.NDArray[np.int32], limit: int) -> SnapshotEntry | None:
        """The entry holding the longest prefix of ``tokens`` no longer than ``limit``."""
        lengths = [n for n in self._length_counts if n <= limit]
        if not lengths:
            return None
        digests = prefix_hashes(tokens, lengths)
        for n in sorted(digests, reverse=True):
            entry = self.get(digests[n])
            if entry is not None:
                return entry
        return None
