"""Token storage helpers: a growable int32 buffer, longest common prefix, prefix hashes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["TokenBuffer", "as_token_array", "common_prefix_len", "prefix_hashes"]

Tokens = npt.NDArray[np.int32]


def as_token_array(tokens: Sequence[int] | npt.NDArray[np.integer], field: str) -> Tokens:
    """Return ``tokens`` as a 1-D int32 array, or raise ``ValueError`` naming ``field``."""
    array = np.asarray(tokens)
    if array.ndim != 1:
        raise ValueError(f"{field} must be a 1-D sequence of token ids, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{field} must hold integer token ids, got dtype {array.dtype}")
    if array.size and (int(array.min()) < 0 or int(array.max()) > np.iinfo(np.int32).max):
        raise ValueError(f"{field} token ids must be in [0, 2**31-1]")
    return np.ascontiguousarray(array, dtype=np.int32)


class TokenBuffer:
    """An append-mostly int32 array with amortized O(1) ``append``; ``view()`` is a slice."""

    __slots__ = ("_data", "_n")

    def __init__(self, initial: Tokens, extra_capacity: int = 16) -> None:
        self._data = np.empty(initial.shape[0] + max(extra_capacity, 1), dtype=np.int32)
        self._data[: initial.shape[0]] = initial
        self._n = int(initial.shape[0])

    def __len__(self) -> int:
        return self._n

    def append(self, token: int) -> None:
        """Append one token id."""
        if self._n == self._data.shape[0]:
            grown = np.empty(self._data.shape[0] * 2, dtype=np.int32)
            grown[: self._n] = self._data[: self._n]
            self._data = grown
        self._data[self._n] = token
        self._n += 1

    def view(self, start: int = 0, stop: int | None = None) -> Tokens:
        """A read-only-by-convention view of ``[start, stop)`` (no copy)."""
        end = self._n if stop is None else min(stop, self._n)
        return self._data[start:end]

    def tolist(self) -> list[int]:
        return [int(t) for t in self._data[: self._n]]


def common_prefix_len(a: Tokens, b: Tokens) -> int:
    """Length of the longest common prefix of two token arrays (numpy, one pass)."""
    n = min(a.shape[0], b.shape[0])
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


def prefix_hashes(tokens: Tokens, lengths: Iterable[int]) -> dict[int, bytes]:
    """Digest of ``tokens[:n]`` for every ``n`` in ``lengths`` (one incremental pass)."""
    wanted = sorted({n for n in lengths if 0 < n <= tokens.shape[0]})
    digests: dict[int, bytes] = {}
    hasher = hashlib.blake2b(digest_size=16)
    done = 0
    for n in wanted:
        hasher.update(tokens[done:n].tobytes())
        done = n
        digests[n] = n.to_bytes(4, "little") + hasher.copy().digest()
    return digests
