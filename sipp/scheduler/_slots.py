"""KV slots (llama sequence ids) and the mirror of the tokens each one holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from sipp.scheduler._request import Request
from sipp.scheduler._tokens import TokenBuffer

__all__ = ["Slot", "SlotState"]

SlotState = Literal["free", "idle", "busy"]
_EMPTY = np.empty(0, dtype=np.int32)


@dataclass(eq=False)
class Slot:
    """One sequence id. ``busy``: owned by a running request whose computed tokens are the
    KV; ``idle``: no owner, KV kept (``tokens[:n_tokens]``) for reuse; ``free``: empty KV."""

    index: int
    owner: Request[Any] | None = None
    tokens: TokenBuffer | None = None
    n_tokens: int = 0
    context_key: str | None = None
    last_used: int = 0

    @property
    def state(self) -> SlotState:
        if self.owner is not None:
            return "busy"
        return "idle" if self.n_tokens > 0 else "free"

    def mirror(self) -> npt.NDArray[np.int32]:
        """The token ids whose KV this slot holds, position by position."""
        if self.owner is not None:
            return self.owner.all_tokens.view(0, self.owner.num_computed_tokens)
        if self.tokens is None:
            return _EMPTY
        return self.tokens.view(0, self.n_tokens)

    def assign(self, request: Request[Any], tick: int) -> None:
        self.owner = request
        self.tokens = None
        self.n_tokens = 0
        self.context_key = request.context_key
        self.last_used = tick

    def keep_idle(self, request: Request[Any], tick: int) -> None:
        self.owner = None
        self.tokens = request.all_tokens
        self.n_tokens = request.num_computed_tokens
        self.context_key = request.context_key
        self.last_used = tick

    def clear(self) -> None:
        self.owner = None
        self.tokens = None
        self.n_tokens = 0
        self.context_key = None
