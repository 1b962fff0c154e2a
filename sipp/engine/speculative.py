"""Draft proposals for speculative decoding (engine thread only).

The scheduler decides how many draft positions each decoding request gets this step and
asks :class:`Speculator` (its ``drafter``) for the tokens: ``ngram`` requests look up the
longest recent n-gram of their own text (:func:`ngram_draft`, prompt lookup), ``draft``
requests ask the draft model (:class:`sipp.engine.draft_model.DraftModel`), batched.
Verification and acceptance happen in :mod:`sipp.engine.output`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from sipp.engine.runstate import EngineRequest

if TYPE_CHECKING:
    from sipp.engine.draft_model import DraftModel

__all__ = ["Speculator", "ngram_draft"]

Tokens = npt.NDArray[np.int32]
_EMPTY: Tokens = np.empty(0, dtype=np.int32)


def ngram_draft(tokens: Tokens, n_min: int, n_max: int, k: int) -> Tokens:
    """Up to ``k`` tokens that followed the most recent earlier occurrence of the longest
    suffix of ``tokens`` (``n_max`` down to ``n_min`` tokens long); empty when none.
    Vectorized: one comparison pass per suffix length over the candidate positions."""
    size = tokens.shape[0]
    for n in range(min(n_max, size - 1), n_min - 1, -1):
        key = tokens[size - n:]
        # ends j of an earlier occurrence (j + 1 < size leaves a continuation)
        ends = np.flatnonzero(tokens[n - 1:size - 1] == key[-1]) + (n - 1)
        for m in range(1, n):
            if not ends.shape[0]:
                break
            ends = ends[tokens[ends - m] == key[n - 1 - m]]
        if ends.shape[0]:
            j = int(ends[-1]) + 1
            return tokens[j:j + k]
    return _EMPTY


class Speculator:
    """The scheduler's drafter: n-gram lookup per request, or the draft model."""

    def __init__(self, draft: DraftModel | None) -> None:
        self.draft = draft

    def __call__(self, requests: Sequence[EngineRequest],
                 limits: Sequence[int]) -> list[Tokens]:
        out: list[Tokens] = []
        batch: list[int] = []
        for i, (request, k) in enumerate(zip(requests, limits, strict=True)):
            run = request.payload
            spec = run.spec if run is not None else None
            if spec is None:
                out.append(_EMPTY)
            elif spec.mode == "ngram":
                out.append(ngram_draft(request.all_tokens.view(), spec.ngram_min,
                                       spec.ngram_max, k))
            else:
                out.append(_EMPTY)
                batch.append(i)
        if batch and self.draft is not None:
            drafts = self.draft.propose([requests[i] for i in batch], [limits[i] for i in batch])
            for i, draft in zip(batch, drafts, strict=True):
                out[i] = draft
        return out
