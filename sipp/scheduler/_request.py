"""Scheduler-side state of one sequence."""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from sipp.scheduler._tokens import TokenBuffer, as_token_array
from sipp.types import FinishReason

__all__ = ["CacheSource", "P", "Request", "RequestKind", "RequestStatus"]

_MAX_EXTRA_CAPACITY = 4096

P = TypeVar("P")  # what the engine hangs on a request (its ``payload``)
RequestKind = Literal["generate", "embed"]
CacheSource = Literal["none", "live", "snapshot"]


class RequestStatus(enum.Enum):
    """Life cycle: WAITING → RUNNING (→ PREEMPTED → RUNNING …) → one FINISHED_* state."""

    WAITING = "waiting"
    RUNNING = "running"
    PREEMPTED = "preempted"
    FINISHED_STOPPED = "finished_stopped"
    FINISHED_LENGTH = "finished_length"
    FINISHED_CANCELLED = "finished_cancelled"
    FINISHED_ERROR = "finished_error"

    @property
    def is_finished(self) -> bool:
        return self.value.startswith("finished")

    @property
    def finish_reason(self) -> FinishReason | None:
        """The client-facing finish reason, or None while not finished."""
        return _REASONS.get(self)

    @classmethod
    def from_reason(cls, reason: FinishReason) -> RequestStatus:
        """The finished status for a client finish reason."""
        for status, name in _REASONS.items():
            if name == reason:
                return status
        raise ValueError(
            f"finish reason must be one of: stop, length, cancelled, error; got {reason!r}"
        )


_REASONS: dict[RequestStatus, FinishReason] = {
    RequestStatus.FINISHED_STOPPED: "stop",
    RequestStatus.FINISHED_LENGTH: "length",
    RequestStatus.FINISHED_CANCELLED: "cancelled",
    RequestStatus.FINISHED_ERROR: "error",
}


@dataclass(eq=False)
class Request(Generic[P]):
    """One generate or embed sequence as the scheduler sees it.

    ``prompt_tokens`` is stored as an int32 array. The sequence the slot's KV must hold is
    ``all_tokens``: ``prompt + output_tokens`` until a context shift, then the kept prefix
    plus the most recent tokens (``num_context_shifts`` shifts so far, ``num_discarded_tokens``
    dropped in all); ``num_computed_tokens`` of them are in KV, at positions equal to their
    index. ``output_tokens`` (what the caller sees) never changes on a shift.
    While decoding, exactly one token (the last sampled) is pending. ``num_cached_tokens``
    counts prompt tokens reused from a cache at (the last) admission. The engine may hang its
    own per-request state on ``payload`` (of type ``P``). ``media_spans`` are sorted
    ``(start, end)`` prompt ranges (images) that a chunk or a reused prefix must never split.
    ``max_draft_tokens`` > 0 lets the request speculate: a decode step may carry up to that
    many draft tokens after the pending one (see ``Scheduler.drafter``);
    ``num_draft_tokens`` / ``num_accepted_tokens`` count them and those kept.
    """

    request_id: int
    prompt_tokens: npt.NDArray[np.int32] | Sequence[int]
    max_tokens: int = 16
    context_key: str | None = None
    kind: RequestKind = "generate"
    arrival_time: float = field(default_factory=time.monotonic)
    payload: P | None = None
    output_tokens: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0
    num_cached_tokens: int = 0
    slot: int | None = None
    status: RequestStatus = RequestStatus.WAITING
    cache_source: CacheSource = "none"
    num_preemptions: int = 0
    num_context_shifts: int = 0
    num_discarded_tokens: int = 0
    error: str | None = None
    media_spans: tuple[tuple[int, int], ...] = ()
    max_draft_tokens: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.request_id, bool) or not isinstance(self.request_id, int):
            raise ValueError(f"request_id must be an int, got {self.request_id!r}")
        self.prompt_tokens = as_token_array(self.prompt_tokens, "prompt_tokens")
        if self.prompt_tokens.shape[0] == 0:
            raise ValueError("prompt_tokens must hold at least one token")
        if self.kind not in ("generate", "embed"):
            raise ValueError(f"kind must be one of: generate, embed; got {self.kind!r}")
        if self.kind == "embed":
            self.max_tokens = 0
        elif (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or (self.max_tokens < 1)
        ):
            raise ValueError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if self.context_key is not None and not isinstance(self.context_key, str):
            raise ValueError(f"context_key must be a str or None, got {self.context_key!r}")
        last = 0
        for start, end in self.media_spans:
            if not last <= start < end <= self.prompt_tokens.shape[0]:
                raise ValueError(
                    f"media_spans must be sorted, disjoint ranges inside the prompt, got "
                    f"{self.media_spans!r}"
                )
            last = end
        # max_tokens may exceed the window (context shift): grow on demand past a cap
        extra = min(self.max_tokens, _MAX_EXTRA_CAPACITY) + 1
        self.all_tokens = TokenBuffer(self.prompt_tokens, extra_capacity=extra)
        for token in self.output_tokens:
            self.all_tokens.append(token)
        # scheduler bookkeeping
        self._admit_seq = 0
        self._queue_seq = 0
        self._snapshot_plan: list[tuple[int, bytes]] = []
        self._pending_save: tuple[int, bytes] | None = None
        self._skipped_steps = 0
        self._draft_k = self.max_draft_tokens  # adapts to how many drafts are accepted
        self._draft_hits = 0.0  # accepted draft positions, recent ones weighing more
        self._draft_trials = 0.0  # verified positions: accepted ones and first rejections

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_tokens)

    @property
    def num_tokens(self) -> int:
        """Prompt plus generated tokens."""
        return len(self.all_tokens)

    @property
    def num_pending_tokens(self) -> int:
        """Tokens not in KV yet (1 while decoding)."""
        return len(self.all_tokens) - self.num_computed_tokens

    @property
    def is_prefilling(self) -> bool:
        """More than one token to compute, or an embed request not yet run."""
        return self.num_pending_tokens > 1 or self.kind == "embed"

    @property
    def is_finished(self) -> bool:
        return self.status.is_finished

    @property
    def finish_reason(self) -> FinishReason | None:
        return self.status.finish_reason
