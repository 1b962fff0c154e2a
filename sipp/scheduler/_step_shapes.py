"""How one step's chunks are shaped: draft positions for speculative decoding and prefill
shares that end on image boundaries. Pure functions of the chunks;
:class:`~sipp.scheduler._scheduler.Scheduler` calls them."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sipp.scheduler._budget import fair_shares
from sipp.scheduler._ops import ScheduledChunk
from sipp.scheduler._request import Request
from sipp.scheduler._spans import cut_end
from sipp.scheduler._step_cost import StepCost, best_draft_count

__all__ = ["Drafter", "Pricing", "fit_media_shares", "paying_shares", "plan_drafts"]

Drafter = Callable[[Sequence[Request[Any]], Sequence[int]], Sequence[npt.NDArray[np.int32]]]
"""Proposes draft tokens: for each request (decoding, pending token last in
``all_tokens``), at most the given number of tokens likely to follow (may be empty)."""

Pricing = tuple[StepCost, Callable[[Request[Any]], float]]
"""Measured step costs and each request's draft acceptance rate."""


def plan_drafts(drafter: Drafter | None, limit: int, chunks: list[ScheduledChunk[Any]],
                spare: int, pricing: Pricing | None = None) -> int:
    """Give decode chunks draft positions from the ``spare`` budget (only asked when no
    prompt prefills this step, so drafts never take a prefill's tokens); returns the
    positions used. Each request asks for its adaptive ``_draft_k``, never past its
    ``max_tokens`` nor its window. Without ``pricing`` the spare budget is shared fairly;
    with it, the likeliest accepted positions are taken as far as they raise the step's
    expected tokens per second (:func:`paying_shares`)."""
    wanted: list[ScheduledChunk[Any]] = []
    caps: list[int] = []
    for chunk in chunks:
        request = chunk.request
        if request._draft_k <= 0:
            continue
        cap = min(request._draft_k, request.max_tokens - len(request.output_tokens) - 1,
                  limit - request.num_tokens)
        if cap > 0:
            wanted.append(chunk)
            caps.append(cap)
    if not wanted or spare <= 0:
        return 0
    if pricing is None:
        shares = fair_shares(spare, caps)
    else:
        cost, rate = pricing
        shares = paying_shares([rate(c.request) for c in wanted], caps, spare,
                               sum(c.n_tokens for c in chunks), len(chunks), cost)
    asked = [(c, n) for c, n in zip(wanted, shares, strict=True) if n > 0]
    if not asked:
        return 0
    assert drafter is not None
    drafts = drafter([c.request for c, _ in asked], [n for _, n in asked])
    used = 0
    for (chunk, n), draft in zip(asked, drafts, strict=True):
        d = min(int(draft.shape[0]), n)
        if d:
            chunk.tokens = np.concatenate((chunk.tokens, draft[:d].astype(np.int32)))
            chunk.n_draft = d
            used += d
    return used


def paying_shares(rates: Sequence[float], caps: Sequence[int], spare: int, n_tokens: int,
                  tokens: float, cost: StepCost) -> list[int]:
    """Draft positions per request: the ``j``-th draft of a request whose drafts are
    accepted at ``rate`` adds ``rate ** j`` expected tokens; candidates are ranked best
    first (at most ``caps[i]`` each, ``spare`` in all) and the leading ones kept that give
    the step the most expected tokens per second (``best_draft_count``). ``n_tokens`` /
    ``tokens``: the step's positions and expected output tokens before any draft."""
    order: list[int] = []
    gains: list[float] = []
    heap = [(-r, i) for i, r in enumerate(rates) if caps[i] > 0 and r > 0.0]
    heapq.heapify(heap)
    taken = [0] * len(caps)
    while heap and len(order) < spare:
        neg_gain, i = heapq.heappop(heap)
        order.append(i)
        gains.append(-neg_gain)
        taken[i] += 1
        if taken[i] < caps[i]:
            heapq.heappush(heap, (neg_gain * rates[i], i))
    shares = [0] * len(caps)
    for i in order[:best_draft_count(gains, n_tokens, tokens, cost)]:
        shares[i] += 1
    return shares


def fit_media_shares(order: list[Request[Any]], caps: list[int], shares: list[int]) -> list[int]:
    """Cut prefill shares that would end inside an image back to the image start, then
    hand the freed tokens, in order, to requests that can then take a whole image."""
    out: list[int] = []
    spare = 0
    for request, n in zip(order, shares, strict=True):
        pos = request.num_computed_tokens
        fitted = cut_end(request.media_spans, pos + n) - pos if request.media_spans else n
        spare += n - fitted
        out.append(fitted)
    for i, request in enumerate(order):
        if spare <= 0:
            break
        want = min(caps[i] - out[i], spare)
        if want <= 0 or not request.media_spans:
            continue
        pos = request.num_computed_tokens + out[i]
        gained = cut_end(request.media_spans, pos + want) - pos
        out[i] += gained
        spare -= gained
    return out
