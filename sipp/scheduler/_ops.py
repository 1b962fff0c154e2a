"""What one scheduler step asks the engine to do: KV operations, then one batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic

import numpy as np
import numpy.typing as npt

from sipp.scheduler._request import P

if TYPE_CHECKING:
    from sipp.scheduler._request import Request

__all__ = [
    "KvClear",
    "KvCopy",
    "KvOp",
    "KvRemove",
    "ScheduledChunk",
    "SchedulerOutput",
    "SnapshotRestore",
    "SnapshotSave",
]


@dataclass(frozen=True, slots=True)
class KvRemove:
    """``llama_memory_seq_rm(mem, slot, p0, p1)``; ``p1 = -1`` means to the end."""

    slot: int
    p0: int
    p1: int = -1


@dataclass(frozen=True, slots=True)
class KvCopy:
    """``llama_memory_seq_cp(mem, src_slot, dst_slot, p0, p1)``."""

    src_slot: int
    dst_slot: int
    p0: int
    p1: int


@dataclass(frozen=True, slots=True)
class KvClear:
    """Remove the whole sequence: ``llama_memory_seq_rm(mem, slot, -1, -1)``."""

    slot: int


@dataclass(frozen=True, slots=True)
class SnapshotRestore:
    """``llama_state_seq_set_data(ctx, data, slot)``: the slot then holds ``n_tokens`` tokens."""

    slot: int
    key: bytes
    n_tokens: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SnapshotSave:
    """Save ``slot`` (it holds exactly ``n_tokens`` tokens now) with
    ``llama_state_seq_get_data`` and hand the bytes to ``Scheduler.snapshot_saved(key, ...)``."""

    slot: int
    key: bytes
    n_tokens: int


KvOp = KvRemove | KvCopy | KvClear | SnapshotRestore | SnapshotSave


@dataclass(slots=True, eq=False)
class ScheduledChunk(Generic[P]):
    """Tokens of one request in this step's batch, at positions ``start_pos ...``.

    ``sample`` is True when the last token needs logits (a decode token or the final
    prompt chunk); for an embed request it means "read the pooled embedding".
    ``n_draft`` > 0: a decode chunk whose pending token is followed by that many draft
    tokens; every one of its positions needs logits (verification).
    """

    request: Request[P]
    slot: int
    start_pos: int
    tokens: npt.NDArray[np.int32]
    sample: bool
    n_draft: int = 0

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])


@dataclass(slots=True, eq=False)
class SchedulerOutput(Generic[P]):
    """One step: apply ``kv_ops`` in order, then decode ``chunks`` in one batch.

    ``finished`` lists requests the scheduler ended itself (cancelled, failed) that the
    engine must notify; ``preempted`` lists requests sent back to the queue (their KV is
    already covered by a ``KvClear`` in ``kv_ops``); ``shifted`` lists requests whose
    context window overflowed this step: old tokens were dropped from their KV view (the
    ``KvRemove`` / ``KvClear`` is in ``kv_ops``) and the recent tail is re-prefilled.
    """

    kv_ops: list[KvOp] = field(default_factory=list)
    chunks: list[ScheduledChunk[P]] = field(default_factory=list)
    finished: list[Request[P]] = field(default_factory=list)
    preempted: list[Request[P]] = field(default_factory=list)
    shifted: list[Request[P]] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        """Tokens in this step's batch."""
        return sum(c.n_tokens for c in self.chunks)

    @property
    def is_empty(self) -> bool:
        """True when there is nothing for the engine to do."""
        return not (
            self.kv_ops or self.chunks or self.finished or self.preempted or self.shifted
        )
