"""The scheduler: admission, step planning, KV reuse bookkeeping, preemption, cancel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic

import numpy as np

from sipp.errors import QueueFullError, RequestTooLargeError
from sipp.scheduler._budget import fair_shares, split_budget
from sipp.scheduler._config import SchedulerConfig
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
from sipp.scheduler._queue import WaitQueue
from sipp.scheduler._request import P, Request, RequestStatus
from sipp.scheduler._slots import Slot, SlotState
from sipp.scheduler._snapshots import SnapshotEntry, SnapshotStore
from sipp.scheduler._spans import cut_end, fit_end
from sipp.scheduler._stats import SchedulerStats
from sipp.scheduler._step_cost import StepCost
from sipp.scheduler._step_shapes import (
    Drafter,
    fit_media_shares,
    plan_drafts,
)
from sipp.scheduler._tokens import TokenBuffer, common_prefix_len, prefix_hashes
from sipp.types import FinishReason

__all__ = ["Drafter", "Scheduler", "SchedulerStats"]

_STARVED_EMBED_STEPS = 2
_ACCEPT_DECAY = 0.9  # a request's acceptance rate follows its last ten or so verifications



@dataclass(frozen=True)
class _Reuse:
    tokens: int = 0
    live_slot: Slot | None = None
    snapshot: SnapshotEntry | None = None


class Scheduler(Generic[P]):
    """Decides, step by step, what the engine decodes; see :mod:`sipp.scheduler`.

    Not thread-safe: one thread (the engine's) makes every call; other threads hand it
    requests and cancels through the engine's inbox. :meth:`check` alone only reads the
    immutable config and may be called from any thread.
    """

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.stats = SchedulerStats()
        self.snapshot_store = SnapshotStore(config.max_snapshot_entries, config.max_snapshot_bytes)
        self._slots = [Slot(i) for i in range(config.n_slots)]
        self._queue: WaitQueue[P] = WaitQueue()
        self._running: dict[int, Request[P]] = {}
        self._ops: list[KvOp] = []
        self._finished_out: list[Request[P]] = []
        self._shifted: list[Request[P]] = []
        self._inflight: SchedulerOutput[P] | None = None
        self._cancels: dict[int, str] = {}
        self._tick = 0
        self._admit_counter = 0
        self._decode_rr = 0
        self._prefill_rr = 0
        self._admission_blocked = False
        # Speculative decoding: set by the engine; requests with max_draft_tokens > 0 then
        # get draft positions from the step's spare budget (see _step_shapes.plan_drafts).
        self.drafter: Drafter | None = None
        # What a decode step costs by size (measured in observe_step) and how often drafts
        # are accepted overall (the prior of a request's own rate): how many drafts pay.
        self.step_cost = StepCost()
        self._decode_only = False
        self._draft_hits = 0.0
        self._draft_trials = 0.0

    # ------------------------------------------------------------------ queries
    @property
    def num_waiting(self) -> int:
        return len(self._queue)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def has_work(self) -> bool:
        """True while anything is queued, running, or waiting to be applied."""
        return bool(self._queue or self._running or self._ops or self._cancels)

    def running_requests(self) -> list[Request[P]]:
        """Running requests in admission order."""
        return list(self._running.values())

    def waiting_requests(self) -> list[Request[P]]:
        """Waiting requests in admission order."""
        return self._queue.requests()

    def get(self, request_id: int) -> Request[P] | None:
        """A waiting or running request by id."""
        return self._running.get(request_id) or self._queue.get(request_id)

    def slot_states(self) -> list[tuple[SlotState, int, str | None]]:
        """``(state, cached tokens, context_key)`` for every slot."""
        return [(s.state, s.mirror().shape[0], s.context_key) for s in self._slots]

    def slot_tokens(self, slot: int) -> list[int]:
        """The token ids whose KV ``slot`` holds, as the scheduler believes (for checks)."""
        return [int(t) for t in self._slots[slot].mirror()]

    # ------------------------------------------------------------------ requests in
    def add(self, request: Request[P], *, reserved: bool = False) -> None:
        """Queue a request; raises ``QueueFullError`` or ``RequestTooLargeError`` at once.
        ``reserved``: the caller already took a queue place for it (the engine counts
        places when requests are submitted), so the queue length is not checked again."""
        if request.status is not RequestStatus.WAITING:
            raise ValueError(
                f"request {request.request_id} is {request.status.value}, "
                "only new (waiting) requests can be added"
            )
        if request.request_id in self._running or request.request_id in self._queue:
            raise ValueError(f"request_id {request.request_id} is already scheduled")
        self.check(request)
        cfg = self.config
        if not reserved and len(self._queue) >= cfg.max_queued_requests:
            raise QueueFullError(
                f"request queue is full: {len(self._queue)} requests waiting "
                f"(max_queued_requests={cfg.max_queued_requests})"
            )
        self._queue.push(request)

    def check(self, request: Request[P]) -> None:
        """Raise ``RequestTooLargeError`` if ``request`` can never fit a slot or a batch.
        Reads only the (immutable) config: safe from any thread."""
        cfg = self.config
        n_prompt = request.num_prompt_tokens
        if request.kind == "embed":
            limit = min(cfg.n_ctx_per_slot, cfg.token_budget)
            if n_prompt > limit:
                raise RequestTooLargeError(
                    f"embedding input has {n_prompt} tokens but one batch holds at most "
                    f"{limit} (n_ctx_per_slot={cfg.n_ctx_per_slot}, "
                    f"token_budget={cfg.token_budget})"
                )
        elif request.media_spans and n_prompt + request.max_tokens > cfg.n_ctx_per_slot:
            raise RequestTooLargeError(
                f"prompt of {n_prompt} tokens plus max_tokens={request.max_tokens} needs "
                f"{n_prompt + request.max_tokens} tokens but a sequence holds "
                f"n_ctx_per_slot={cfg.n_ctx_per_slot} (a prompt with images cannot shift "
                "its context)"
            )
        elif n_prompt >= cfg.n_ctx_per_slot:
            raise RequestTooLargeError(
                f"prompt of {n_prompt} tokens leaves no room to generate: a sequence holds "
                f"n_ctx_per_slot={cfg.n_ctx_per_slot} tokens, and a prompt must be shorter "
                "(generation past the window shifts the context; the prompt cannot)"
            )

    def cancel(self, request_id: int, reason: str = "cancelled") -> None:
        """Cancel a waiting or running request at the next :meth:`schedule` (an unknown or
        finished id is ignored then)."""
        self._cancels.setdefault(request_id, reason)

    # ------------------------------------------------------------------ planning
    def schedule(self) -> SchedulerOutput[P]:
        """Plan one step: cancellations, admissions, KV operations and the batch."""
        if self._inflight is not None:
            raise RuntimeError("schedule() called again before update_from_output()")
        self._tick += 1
        self._apply_cancels()
        self._shift_overflowing()
        self._admit()
        out: SchedulerOutput[P] = SchedulerOutput(
            finished=self._finished_out, shifted=self._shifted)
        self._finished_out = []
        self._shifted = []
        self._plan(out)
        out.kv_ops = self._ops
        self._ops = []
        if out.chunks:
            self._inflight = out
            self._record_step(out)
        return out

    def _apply_cancels(self) -> None:
        if not self._cancels:
            return
        cancels, self._cancels = self._cancels, {}
        for request_id, reason in cancels.items():
            request = self._queue.remove(request_id) or self._running.get(request_id)
            if request is None or request.is_finished:
                continue
            request.error = reason
            self._finish(request, RequestStatus.FINISHED_CANCELLED)
            self._finished_out.append(request)

    def _admit(self) -> None:
        cfg = self.config
        if self._admission_blocked and self._running:
            return
        self._admission_blocked = False
        if not cfg.continuous_batching and self._running:
            return  # static batching: the next batch starts once this one has finished
        while len(self._running) < cfg.running_limit:
            request = self._queue.peek()
            if request is None or not self._place(request):
                return
            self._queue.pop()

    def _place(self, request: Request[P]) -> bool:
        """Give ``request`` a slot, reusing cached KV where the cache mode allows."""
        free = [s for s in self._slots if s.owner is None]
        if not free:
            return False
        if request.num_tokens > self.config.n_ctx_per_slot:  # defensive: shift before reuse
            self._shift_context(request)
        reuse = self._find_reuse(request)
        ops = self._ops
        source = reuse.live_slot
        if source is not None and source.owner is None:
            slot = source
            if reuse.tokens == 0:
                ops.append(KvClear(slot.index))
            elif reuse.tokens < slot.n_tokens:
                ops.append(KvRemove(slot.index, reuse.tokens, -1))
        else:
            empty = [s for s in free if s.n_tokens == 0]
            slot = empty[0] if empty else min(free, key=lambda s: s.last_used)
            if slot.n_tokens:
                ops.append(KvClear(slot.index))
                self.stats.idle_evictions += 1
            if source is not None and reuse.tokens:
                ops.append(KvCopy(source.index, slot.index, 0, reuse.tokens))
            elif reuse.snapshot is not None:
                snap = reuse.snapshot
                ops.append(SnapshotRestore(slot.index, snap.key, snap.n_tokens, snap.data))
                if reuse.tokens < snap.n_tokens:
                    ops.append(KvRemove(slot.index, reuse.tokens, -1))
                self.stats.snapshot_hits += 1
        slot.assign(request, self._tick)
        self._admit_counter += 1
        request._admit_seq = self._admit_counter
        request.slot = slot.index
        request.status = RequestStatus.RUNNING
        request.num_computed_tokens = reuse.tokens
        request.num_cached_tokens = reuse.tokens
        request.cache_source = (
            "none" if not reuse.tokens else "snapshot" if reuse.snapshot else "live"
        )
        request._skipped_steps = 0
        if reuse.tokens:
            self.stats.cache_hits += 1
            self.stats.reused_tokens += reuse.tokens
        self._plan_snapshots(request)
        self._running[request.request_id] = request
        self.stats.admitted += 1
        return True

    def _find_reuse(self, request: Request[P]) -> _Reuse:
        cfg = self.config
        if request.kind == "embed" or cfg.cache_mode == "disabled":
            return _Reuse()
        tokens = request.all_tokens.view()
        limit = tokens.shape[0] - 1  # leave one token to compute, so there are logits
        whole = not cfg.partial_kv_edits  # only a whole cached sequence can be reused
        best = _Reuse()
        best_score = (0, False)
        if cfg.cache_mode == "context_key":
            if request.context_key is not None:
                for slot in self._slots:
                    if slot.state == "idle" and slot.context_key == request.context_key:
                        mirror = slot.mirror()
                        n = min(common_prefix_len(mirror, tokens), limit)
                        best = _Reuse(0 if whole and n < mirror.shape[0] else n, slot)
                        break
        elif cfg.live_reuse:
            for slot in self._slots:
                if slot.owner is not None and not cfg.cross_slot_copy:
                    continue  # separate KV streams: no prefix copy out of a busy slot
                mirror = slot.mirror()
                if not mirror.shape[0]:
                    continue
                n = min(common_prefix_len(mirror, tokens), limit)
                if whole and n < mirror.shape[0]:
                    continue
                score = (n, slot.owner is None)  # on a tie, taking over beats copying
                if n and score > best_score:
                    best, best_score = _Reuse(n, slot), score
        if cfg.snapshots:
            entry = self.snapshot_store.find_longest(tokens, limit if whole else tokens.shape[0])
            if entry is not None and min(entry.n_tokens, limit) > best.tokens:
                best = _Reuse(min(entry.n_tokens, limit), None, entry)
        spans = request.media_spans
        if spans and best.tokens and cut_end(spans, best.tokens) != best.tokens:
            cut = cut_end(spans, best.tokens)  # never resume inside an image
            if whole:
                return _Reuse()
            best = _Reuse(cut, best.live_slot, best.snapshot) if cut else _Reuse()
        return best

    def _plan_snapshots(self, request: Request[P]) -> None:
        request._snapshot_plan = []
        cfg = self.config
        n_prompt = request.num_prompt_tokens
        start = request.num_computed_tokens
        if (
            not cfg.snapshots
            or request.kind != "generate"
            or start >= n_prompt
            or request.num_context_shifts  # the KV view no longer starts with the prompt
        ):
            return
        step = cfg.snapshot_interval_tokens
        bounds = [*range((start // step + 1) * step, n_prompt, step), n_prompt]
        if request.media_spans:
            bounds = [b for b in bounds if cut_end(request.media_spans, b) == b]
        digests = prefix_hashes(request.all_tokens.view(0, n_prompt), bounds)
        store = self.snapshot_store
        request._snapshot_plan = [(b, digests[b]) for b in bounds if digests[b] not in store]

    # ------------------------------------------------------------------ context shift
    def _shift_overflowing(self) -> None:
        """Shift every running request whose pending token would not fit in its window."""
        limit = self.config.n_ctx_per_slot
        for request in list(self._running.values()):
            if request.kind == "generate" and request.num_tokens > limit:
                self._shift_context(request)

    def _shift_context(self, request: Request[P]) -> None:
        """Drop old tokens from ``request``'s KV view until it fits ``n_ctx_per_slot``.

        Keeps ``shift_keep_tokens`` at the start and discards half of the rest (the oldest
        first, as llama.cpp's server does); nothing discardable clears the view down to the
        pending token. The slot's KV loses ``[n_keep, end)`` (``KvRemove``, or ``KvClear``
        when nothing is kept or the memory cannot remove part of a sequence) and the tail is
        re-prefilled at its new positions, so a cell that another sequence shares (live
        prefix reuse) is never edited and the slot's mirror stays exactly the KV. Positions
        are never shifted in place (``llama_memory_seq_add`` would move shared cells too).
        Requests with media spans cannot shift: they fail.
        """
        cfg = self.config
        limit = cfg.n_ctx_per_slot
        if request.media_spans:
            request.error = (
                f"context window full: {request.num_tokens} tokens do not fit "
                f"n_ctx_per_slot={limit}, and a prompt with images cannot shift its context"
            )
            self._finish(request, RequestStatus.FINISHED_ERROR)
            self._finished_out.append(request)
            return
        view = request.all_tokens.view()
        n_same = view.shape[0]  # leading tokens the shift leaves in place
        while view.shape[0] > limit:
            n_past = view.shape[0] - 1  # all but the pending token
            n_keep = min(cfg.shift_keep_tokens, n_past)
            n_discard = (n_past - n_keep) // 2
            if n_discard == 0:  # nothing discardable: clear the sequence
                n_keep, n_discard = 0, n_past
            n_same = min(n_same, n_keep)
            view = np.concatenate([view[:n_keep], view[n_keep + n_discard :]])
            request.num_discarded_tokens += n_discard
            self.stats.discarded_tokens += n_discard
        left = request.max_tokens - len(request.output_tokens)
        request.all_tokens = TokenBuffer(view, extra_capacity=min(max(left, 0), limit) + 1)
        request.num_context_shifts += 1
        request._snapshot_plan = []
        self.stats.context_shifts += 1
        self._shifted.append(request)
        kept = min(request.num_computed_tokens, n_same)
        if request.slot is not None and kept < request.num_computed_tokens:
            if kept == 0 or not cfg.partial_kv_edits:
                self._ops.append(KvClear(request.slot))
                kept = 0
            else:
                self._ops.append(KvRemove(request.slot, kept, -1))
        request.num_computed_tokens = kept

    def _plan(self, out: SchedulerOutput[P]) -> None:
        cfg = self.config
        decodes: list[Request[P]] = []
        embeds: list[Request[P]] = []
        prefills: list[Request[P]] = []
        for request in self._running.values():
            if request.kind == "embed":
                embeds.append(request)
            elif request.num_pending_tokens > 1:
                prefills.append(request)
            else:
                decodes.append(request)
        budget = cfg.token_budget
        n_dec = split_budget(
            budget, len(decodes), bool(prefills or embeds), cfg.mode, cfg.decode_token_reserve
        )
        starved = [r for r in embeds if r._skipped_steps >= _STARVED_EMBED_STEPS]
        if starved:
            n_dec = min(n_dec, max(budget - starved[0].num_prompt_tokens, 0))
        decoding = len(decodes)
        if n_dec < len(decodes):
            start = self._decode_rr % len(decodes)
            decodes = (decodes[start:] + decodes[:start])[:n_dec]
            self._decode_rr += n_dec
        chunks = out.chunks
        for request in decodes:
            pos = request.num_computed_tokens
            chunks.append(
                ScheduledChunk(
                    request, request.slot or 0, pos, request.all_tokens.view(pos, pos + 1), True
                )
            )
        remaining = budget - len(decodes)
        self._decode_only = not prefills and not embeds
        if self.drafter is not None and decodes and not prefills and not embeds:
            if self.step_cost.known:
                # priced: drafts only as far as they raise the step's expected tokens/s
                remaining -= plan_drafts(self.drafter, self.config.n_ctx_per_slot, chunks,
                                         remaining, (self.step_cost, self._accept_rate))
            elif cfg.running_limit == 1 or len(self._running) < cfg.running_limit:
                # no step costs measured yet: a full batch (every slot running) gets no
                # drafts, verification positions would compete with the decodes for compute
                remaining -= plan_drafts(self.drafter, self.config.n_ctx_per_slot, chunks,
                                         remaining)
        for request in sorted(embeds, key=lambda r: -r._skipped_steps):
            n = request.num_prompt_tokens
            if n <= remaining:
                chunks.append(
                    ScheduledChunk(
                        request, request.slot or 0, 0, request.all_tokens.view(0, n), True
                    )
                )
                remaining -= n
            else:
                request._skipped_steps += 1
        if not prefills or remaining <= 0:
            return
        start = self._prefill_rr % len(prefills)
        self._prefill_rr += 1
        order = prefills[start:] + prefills[:start]
        chunk = cfg.prefill_chunk_size
        if cfg.adaptive_prefill_chunking:
            if decoding:  # protect the decoding requests: a small shared prefill slice
                remaining = min(remaining, chunk or max(16, budget // 8))
            chunk = 0  # otherwise nothing to protect: the whole budget goes to prefill
        caps = [self._prefill_cap(r, chunk) for r in order]
        shares = fair_shares(remaining, caps)
        if any(r.media_spans for r in order):
            shares = fit_media_shares(order, caps, shares)
        for request, n in zip(order, shares, strict=True):
            if n:
                pos = request.num_computed_tokens
                chunks.append(
                    ScheduledChunk(
                        request,
                        request.slot or 0,
                        pos,
                        request.all_tokens.view(pos, pos + n),
                        pos + n == request.num_tokens,
                    )
                )

    def _prefill_cap(self, request: Request[P], chunk: int) -> int:
        cap = request.num_pending_tokens
        if chunk:
            cap = min(cap, chunk)
        if request._snapshot_plan:
            cap = min(cap, request._snapshot_plan[0][0] - request.num_computed_tokens)
        if request.media_spans:
            pos = request.num_computed_tokens
            cap = fit_end(request.media_spans, pos, pos + cap) - pos
        return cap

    def _record_step(self, out: SchedulerOutput[P]) -> None:
        stats = self.stats
        n_tokens = out.n_tokens
        stats.steps += 1
        stats.scheduled_tokens += n_tokens
        stats.last_batch_tokens = n_tokens
        stats.last_batch_requests = len(out.chunks)
        stats.batch_sizes[len(out.chunks)] = stats.batch_sizes.get(len(out.chunks), 0) + 1
        for chunk in out.chunks:
            if chunk.n_draft:
                stats.decode_tokens += 1
                if chunk.request.max_draft_tokens:
                    stats.draft_tokens += chunk.n_draft
            elif chunk.request.kind == "generate" and chunk.n_tokens == 1 and chunk.sample:
                stats.decode_tokens += 1
            else:
                stats.prefill_tokens += chunk.n_tokens

    # ------------------------------------------------------------------ results in
    def update_from_output(
        self,
        sampled: Mapping[int, int],
        finished: Mapping[int, FinishReason],
        accepted: Mapping[int, int] | None = None,
    ) -> list[Request[P]]:
        """Apply a decoded step: advance computed tokens, append sampled tokens, finish.

        ``sampled`` maps request ids to the token sampled for chunks with ``sample``;
        ``finished`` maps ids the engine ends (``stop`` on EOG or a stop string, ``error``).
        ``accepted`` maps ids of chunks with drafts to how many leading draft tokens were
        kept (they come before the sampled token); the rejected draft positions leave the
        slot's KV (a ``KvRemove`` applied before the next batch).
        Returns every request that finished here, including ``length`` (max_tokens reached)
        and embed requests after their single chunk.
        """
        out, self._inflight = self._inflight, None
        done: list[Request[P]] = []
        if out is not None:
            for chunk in out.chunks:
                request = chunk.request
                if request.is_finished or request.status is not RequestStatus.RUNNING:
                    continue
                if chunk.n_draft:
                    self._settle_drafts(chunk, accepted.get(request.request_id, 0)
                                        if accepted else 0)
                else:
                    request.num_computed_tokens += chunk.n_tokens
                plan = request._snapshot_plan
                if plan and plan[0][0] == request.num_computed_tokens:
                    self._ops.append(SnapshotSave(chunk.slot, plan[0][1], plan[0][0]))
                    plan.pop(0)
                if not chunk.sample:
                    continue
                if request.kind == "embed":
                    self._finish(request, RequestStatus.FINISHED_STOPPED)
                    done.append(request)
                    continue
                token = sampled.get(request.request_id)
                if token is not None:
                    request.output_tokens.append(int(token))
                    request.all_tokens.append(int(token))
                elif request.request_id not in finished:
                    request.error = "the engine returned no sampled token"
                    self._finish(request, RequestStatus.FINISHED_ERROR)
                    done.append(request)
                    continue
                if (
                    request.request_id not in finished
                    and len(request.output_tokens) >= request.max_tokens
                ):
                    self._finish(request, RequestStatus.FINISHED_LENGTH)
                    done.append(request)
        for request_id, reason in finished.items():
            ended = self._running.get(request_id) or self._queue.remove(request_id)
            if ended is None or ended.is_finished:
                continue
            self._finish(ended, RequestStatus.from_reason(reason))
            done.append(ended)
        return done

    def observe_step(self, n_tokens: int, seconds: float) -> None:
        """The engine measured the last step (decode and sampling): a decode-only step
        (no prompt prefill) feeds the step costs that price draft positions."""
        if self._decode_only:
            self.step_cost.observe(n_tokens, seconds)

    def _accept_rate(self, request: Request[P]) -> float:
        """How likely ``request``'s next draft position is accepted: its own recent
        verifications, starting from the rate over all requests."""
        prior = (self._draft_hits + 1.0) / (self._draft_trials + 2.0)
        return (request._draft_hits + 2.0 * prior) / (request._draft_trials + 2.0)

    def _settle_drafts(self, chunk: ScheduledChunk[P], n_accepted: int) -> None:
        """Keep the pending token and ``n_accepted`` drafts of a verified chunk; drop the
        rest from the slot's KV so the mirror stays exactly the KV."""
        request = chunk.request
        d = chunk.n_draft
        a = max(0, min(n_accepted, d))
        request.num_computed_tokens += 1 + a
        for token in chunk.tokens[1:1 + a].tolist():
            request.output_tokens.append(token)
            request.all_tokens.append(token)
        if a < d:
            self._ops.append(KvRemove(chunk.slot, chunk.start_pos + 1 + a, -1))
        top = request.max_draft_tokens
        request.num_draft_tokens += d
        request.num_accepted_tokens += a
        self.stats.accepted_tokens += a
        trials = a + (1 if a < d else 0)  # each accepted position, then the first rejected
        request._draft_hits = request._draft_hits * _ACCEPT_DECAY + a
        request._draft_trials = request._draft_trials * _ACCEPT_DECAY + trials
        self._draft_hits = self._draft_hits * _ACCEPT_DECAY + a
        self._draft_trials = self._draft_trials * _ACCEPT_DECAY + trials
        if a == d:
            request._draft_k = min(top, max(request._draft_k, 1) * 2)
        elif a == 0:
            request._draft_k = max(1, request._draft_k // 2)

    def _finish(self, request: Request[P], status: RequestStatus) -> None:
        request.status = status
        self._running.pop(request.request_id, None)
        self._queue.remove(request.request_id)
        request._snapshot_plan = []
        stats = self.stats
        stats.finished += 1
        if status is RequestStatus.FINISHED_CANCELLED:
            stats.cancelled += 1
        elif status is RequestStatus.FINISHED_ERROR:
            stats.failed += 1
        if request.slot is None:
            return
        slot = self._slots[request.slot]
        request.slot = None
        keep = (
            self.config.live_reuse
            and request.kind == "generate"
            and status is not RequestStatus.FINISHED_ERROR
            and request.num_computed_tokens > 0
        )
        if keep:
            slot.keep_idle(request, self._tick)
        else:
            self._ops.append(KvClear(slot.index))
            slot.clear()
        self._admission_blocked = False

    # ------------------------------------------------------------------ recovery
    def handle_kv_full(self, output: SchedulerOutput[P]) -> SchedulerOutput[P] | None:
        """``llama_decode`` returned 1 for ``output``: free KV and return a plan to retry.

        First evicts the least recently used idle slot; else preempts the newest running
        request: its KV is cleared and it is requeued at the front keeping its generated
        tokens, so it resumes by re-prefilling prompt + output. Returns None when only one
        request is running and nothing can be freed (fail it with
        ``update_from_output({}, {id: "error"})``).
        Apply the returned ``kv_ops`` and decode its ``chunks`` (skip the decode if empty).
        """
        if output is not self._inflight:
            raise RuntimeError("handle_kv_full() expects the output of the last schedule()")
        self.stats.kv_full_events += 1
        idle = [s for s in self._slots if s.state == "idle"]
        retry: SchedulerOutput[P] = SchedulerOutput()
        if idle:
            victim_slot = min(idle, key=lambda s: s.last_used)
            retry.kv_ops.append(KvClear(victim_slot.index))
            victim_slot.clear()
            self.stats.idle_evictions += 1
            retry.chunks = list(output.chunks)
        else:
            if len(self._running) <= 1:
                return None
            victim = max(self._running.values(), key=self._victim_key)
            self._preempt(victim)
            retry.kv_ops, self._ops = self._ops, []
            retry.preempted.append(victim)
            retry.chunks = [c for c in output.chunks if c.request is not victim]
        self._inflight = retry if retry.chunks else None
        return retry

    @staticmethod
    def _victim_key(request: Request[P]) -> int:
        return request._admit_seq

    def _preempt(self, request: Request[P]) -> None:
        assert request.slot is not None
        slot = self._slots[request.slot]
        self._ops.append(KvClear(slot.index))
        slot.clear()
        del self._running[request.request_id]
        request.slot = None
        request.status = RequestStatus.PREEMPTED
        request.num_computed_tokens = 0
        request.num_cached_tokens = 0
        request.cache_source = "none"
        request.num_preemptions += 1
        request._snapshot_plan = []
        self._queue.push_front(request)
        self._admission_blocked = True
        self.stats.preemptions += 1

    def snapshot_saved(self, key: bytes, n_tokens: int, data: bytes) -> bool:
        """Store the state bytes the engine saved for a :class:`SnapshotSave` op.

        Returns False when the state is larger than ``max_snapshot_bytes`` (not stored).
        """
        stored = self.snapshot_store.put(key, n_tokens, data)
        if stored:
            self.stats.snapshot_saves += 1
        return stored

    def abort_all(self, status: RequestStatus = RequestStatus.FINISHED_ERROR) -> list[Request[P]]:
        """Finish every waiting and running request (engine shutdown); returns them."""
        requests = [*self._running.values(), *self._queue.requests()]
        for request in requests:
            self._finish(request, status)
        self._inflight = None
        return requests

