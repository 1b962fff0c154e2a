"""``LlamaBatch``: a ``llama_batch`` whose arrays we allocate and fill in bulk from NumPy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sipp.native._lib import get_native

__all__ = ["LlamaBatch"]


class LlamaBatch:
    """Room for ``capacity`` tokens, each in up to ``n_seq_max`` sequences.

    The arrays are our own ``ffi.new`` allocations (freed with the object; nothing to close)
    and exposed as NumPy views: :attr:`tokens`, :attr:`pos`, :attr:`n_seq_id`,
    :attr:`seq_ids` (``capacity x n_seq_max``), :attr:`logits` (int8 output flags). Fill
    with :meth:`set` (whole arrays, no Python loop) or :meth:`add` (one token), then pass to
    ``LlamaContext.decode``. With ``embd > 0`` the batch carries embeddings instead of tokens
    (:attr:`embd`, ``capacity x embd``).
    """

    def __init__(self, capacity: int, n_seq_max: int = 1, embd: int = 0) -> None:
        for name, value, low in (
            ("capacity", capacity, 1),
            ("n_seq_max", n_seq_max, 1),
            ("embd", embd, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        ffi = get_native().ffi
        self.capacity = capacity
        self.n_seq_max = n_seq_max
        self._token_buf = ffi.new("llama_token[]", capacity)
        self._embd_buf = ffi.new("float[]", capacity * embd) if embd else ffi.NULL
        self._pos_buf = ffi.new("llama_pos[]", capacity)
        self._nseq_buf = ffi.new("int32_t[]", capacity)
        self._seq_block = ffi.new("llama_seq_id[]", capacity * n_seq_max)
        self._seq_ptrs = ffi.new("llama_seq_id *[]", capacity)
        self._logits_buf = ffi.new("int8_t[]", capacity)
        base = int(ffi.cast("uintptr_t", self._seq_block))
        ptrs = np.frombuffer(ffi.buffer(self._seq_ptrs), dtype=np.uintp)
        ptrs[:] = base + np.arange(capacity, dtype=np.uintp) * (4 * n_seq_max)
        self._struct = ffi.new("struct llama_batch *")
        s = self._struct
        s.n_tokens = 0
        s.token = self._token_buf if not embd else ffi.NULL
        s.embd = self._embd_buf
        s.pos = self._pos_buf
        s.n_seq_id = self._nseq_buf
        s.seq_id = self._seq_ptrs
        s.logits = self._logits_buf
        self.tokens = np.frombuffer(ffi.buffer(self._token_buf), dtype=np.int32)
        self.pos = np.frombuffer(ffi.buffer(self._pos_buf), dtype=np.int32)
        self.n_seq_id = np.frombuffer(ffi.buffer(self._nseq_buf), dtype=np.int32)
        self.seq_ids = np.frombuffer(ffi.buffer(self._seq_block), dtype=np.int32).reshape(
            capacity, n_seq_max
        )
        self.logits = np.frombuffer(ffi.buffer(self._logits_buf), dtype=np.int8)
        self.embd: np.ndarray | None = (
            np.frombuffer(ffi.buffer(self._embd_buf), dtype=np.float32).reshape(capacity, embd)
            if embd
            else None
        )

    @property
    def n_tokens(self) -> int:
        """How many entries of the arrays the next decode reads."""
        return int(self._struct.n_tokens)

    @n_tokens.setter
    def n_tokens(self, value: int) -> None:
        if not 0 <= value <= self.capacity:
            raise ValueError(f"n_tokens must be in [0, {self.capacity}], got {value}")
        self._struct.n_tokens = value

    @property
    def struct(self) -> Any:
        """The ``struct llama_batch *`` (pass ``struct[0]`` by value)."""
        return self._struct

    def clear(self) -> None:
        """Forget all tokens (n_tokens = 0); arrays keep their old contents."""
        self._struct.n_tokens = 0

    def set(
        self,
        tokens: np.ndarray | Sequence[int],
        pos: np.ndarray | Sequence[int],
        seq: np.ndarray | Sequence[int] | int,
        logits: np.ndarray | Sequence[bool] | None = None,
    ) -> None:
        """Replace the batch with ``len(tokens)`` entries, each in one sequence.

        ``seq`` is one sequence id per token or one id for all; ``logits`` marks which tokens
        produce outputs (default: only the last one).
        """
        t = np.asarray(tokens)
        n = t.shape[0] if t.ndim == 1 else -1
        if n < 0 or n > self.capacity:
            raise ValueError(f"tokens must be 1-D with at most {self.capacity} entries")
        p = np.asarray(pos)
        if p.shape != (n,):
            raise ValueError(f"pos must have shape ({n},), got {p.shape}")
        self.tokens[:n] = t
        self.pos[:n] = p
        self.n_seq_id[:n] = 1
        if isinstance(seq, int):
            self.seq_ids[:n, 0] = seq
        else:
            s = np.asarray(seq)
            if s.shape != (n,):
                raise ValueError(f"seq must be an int or have shape ({n},), got {s.shape}")
            self.seq_ids[:n, 0] = s
        if logits is None:
            self.logits[:n] = 0
            if n:
                self.logits[n - 1] = 1
        else:
            lg = np.asarray(logits)
            if lg.shape != (n,):
                raise ValueError(f"logits must have shape ({n},), got {lg.shape}")
            self.logits[:n] = lg
        self._struct.n_tokens = n

    def add(self, token: int, pos: int, seq_ids: int | Sequence[int], logits: bool = False) -> int:
        """Append one token; returns its index in the batch."""
        i = int(self._struct.n_tokens)
        if i >= self.capacity:
            raise ValueError(f"batch is full ({self.capacity} tokens)")
        ids = (seq_ids,) if isinstance(seq_ids, int) else tuple(seq_ids)
        if not 1 <= len(ids) <= self.n_seq_max:
            raise ValueError(f"seq_ids must hold 1 to {self.n_seq_max} ids, got {len(ids)}")
        self._token_buf[i] = token
        self._pos_buf[i] = pos
        self._nseq_buf[i] = len(ids)
        for j, sid in enumerate(ids):
            self._seq_block[i * self.n_seq_max + j] = sid
        self._logits_buf[i] = 1 if logits else 0
        self._struct.n_tokens = i + 1
        return i

    def __len__(self) -> int:
        return self.n_tokens
