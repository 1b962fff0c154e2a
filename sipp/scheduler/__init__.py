"""Pure-Python scheduling for one loaded model (no native imports; tested without a model).

The engine thread owns the ``llama_context`` and drives one :class:`Scheduler` (only that
thread calls it; other threads reach it through the engine's inbox)::

    sched = Scheduler(SchedulerConfig(n_slots=4, n_ctx_per_slot=2048, token_budget=512))
    sched.add(Request(request_id=7, prompt_tokens=ids, max_tokens=64, context_key="chat-1"))
    # raises QueueFullError (queue at max_queued_requests) or RequestTooLargeError
    # (prompt >= n_ctx_per_slot; with media spans prompt + max_tokens > n_ctx_per_slot;
    # an embed prompt > token_budget)
    while sched.has_work:
        out = sched.schedule()
        for op in out.kv_ops:            # apply IN ORDER before the decode
            ...                          # KvRemove / KvCopy / KvClear / SnapshotRestore /
                                         # SnapshotSave (then sched.snapshot_saved(key, n, data))
        for req in out.finished:         # ended by the scheduler (cancelled, error): notify
            ...
        out.shifted                      # requests whose context shifted (count them)
        if not out.chunks:
            continue
        # one llama_batch: for chunk in out.chunks, tokens at positions
        # chunk.start_pos + i in seq chunk.slot; logits only on the last token of a
        # chunk with chunk.sample
        rc = llama_decode(...)
        while rc == 1:                   # KV cache full
            retry = sched.handle_kv_full(out)  # frees idle KV, else preempts newest running
            if retry is None: fail the chunks' requests (update_from_output with "error")
            out = retry; apply retry.kv_ops; rebuild the batch from retry.chunks; decode
        sampled = {req_id: token}        # for every chunk with sample=True (generate only)
        finished = {req_id: "stop"}      # EOG / stop string (engine sees text); omit the
                                         # EOG token from `sampled` if it must not be output
        done = sched.update_from_output(sampled, finished)  # also "length" by max_tokens
                                         # and embed requests after their single chunk

Other API: ``cancel(request_id, reason)`` (effective at the next ``schedule()``),
``check(request)`` (the ``RequestTooLargeError`` checks alone; any thread), ``stats``
(:class:`SchedulerStats`), ``num_waiting``, ``num_running``,
``slot_states()``, ``snapshot_store`` (:class:`SnapshotStore`), ``snapshot_saved``.

Step planning: every running decode gets one token each step (round-robin if the budget is
smaller than the number of decodes); prefill chunks share the rest fairly (water-filling
across prefilling requests, capped by ``prefill_chunk_size``). ``mode``: ``latency_first``
and ``balanced`` give decodes priority (balanced keeps >= 1 prefill token when prefill is
pending); ``throughput_first`` gives prefill up to 3/4 of the budget but never fewer than
``decode_token_reserve`` decode tokens. Embed requests run their whole prompt in one chunk.

Cache modes: ``disabled``; ``context_key`` (idle slot last used by the same key);
``live_slot_prefix`` (longest common prefix over all slots: an idle slot is taken over, a
busy one is copied with ``KvCopy``); ``state_snapshot`` (host-memory states saved at
multiples of ``snapshot_interval_tokens`` and at the prompt end, restored for the longest
stored prefix); ``live_slot_and_snapshot`` (the longer of both). A full-prompt hit leaves
the last prompt token to decode. Idle slots keep their KV until needed (LRU eviction).
Positions equal token indexes: ``Request.all_tokens[:num_computed_tokens]`` is the KV.

Context shift: when a generation's pending token would not fit ``n_ctx_per_slot``, the
request's KV view (``all_tokens``) becomes its first ``config.shift_keep_tokens`` tokens
(``retained_prefix_tokens`` in live modes, else 0) plus the newer half of the rest; the
slot loses ``[n_keep, end)`` (``KvRemove``; ``KvClear`` when nothing is kept) and the tail is
re-prefilled at its new positions. No cell is ever position-shifted, so KV shared with
other sequences is untouched and slot mirrors stay exact. ``output_tokens`` are unchanged.
With ``partial_kv_edits=False`` (recurrent/hybrid memories) only a whole cached sequence
that prefixes the prompt is reused, so no partial ``KvRemove``/``KvCopy`` is ever emitted:
the engine must not "fall back" to clearing a slot behind the scheduler's back.
More: ``get(id)``, ``slot_tokens(slot)`` (the mirror), ``abort_all(status)`` (shutdown),
``running_requests()``, ``waiting_requests()``.
"""

from sipp.scheduler._budget import fair_shares, split_budget
from sipp.scheduler._config import CACHE_MODES, CacheMode, SchedulerConfig, SchedulerMode
from sipp.scheduler._ops import (
    KvClear,
    KvCopy,
    KvOp,
    KvRemove,
    ScheduledChunk,
    SchedulerOutput,
    SnapshotRestore,
    SnapshotSave,
)
from sipp.scheduler._request import CacheSource, Request, RequestKind, RequestStatus
from sipp.scheduler._scheduler import Drafter, Scheduler, SchedulerStats
from sipp.scheduler._slots import SlotState
from sipp.scheduler._snapshots import SnapshotEntry, SnapshotStore

__all__ = [
    "CACHE_MODES",
    "CacheMode",
    "CacheSource",
    "Drafter",
    "KvClear",
    "KvCopy",
    "KvOp",
    "KvRemove",
    "Request",
    "RequestKind",
    "RequestStatus",
    "ScheduledChunk",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerMode",
    "SchedulerOutput",
    "SchedulerStats",
    "SlotState",
    "SnapshotEntry",
    "SnapshotRestore",
    "SnapshotSave",
    "SnapshotStore",
    "fair_shares",
    "split_budget",
]
