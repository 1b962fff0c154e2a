"""A fake engine for scheduler tests: a KV model that checks every operation and a
deterministic "model" whose next token depends on the whole KV content of the sequence,
so any lost, duplicated or misplaced token changes the output."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sipp.scheduler import (
    KvClear,
    KvCopy,
    KvRemove,
    Request,
    Scheduler,
    SchedulerOutput,
    SnapshotRestore,
    SnapshotSave,
)
from sipp.types import FinishReason

STOP_TOKEN = 7


def next_token(sequence: Sequence[int]) -> int:
    """The fake model: a function of every token in the sequence and its length."""
    acc = len(sequence)
    for t in sequence:
        acc = (acc * 1_000_003 + int(t)) % 2_147_483_647
    return 10 + acc % 5000


def shifted(seq: list[int], n_ctx: int, n_keep: int) -> list[int]:
    """The reference context shift: while the sequence (its last token pending) does not
    fit ``n_ctx``, keep ``n_keep`` tokens and drop half of the others before the pending
    one; with nothing to drop keep only the pending token."""
    while len(seq) > n_ctx:
        n_past = len(seq) - 1
        keep = min(n_keep, n_past)
        drop = (n_past - keep) // 2
        if drop == 0:
            keep, drop = 0, n_past
        seq = seq[:keep] + seq[keep + drop :]
    return seq


def expected_output(
    prompt: Sequence[int],
    max_tokens: int,
    stop: bool = False,
    n_ctx: int | None = None,
    n_keep: int = 0,
) -> list[int]:
    """What a request produces when run alone (in a window of ``n_ctx`` that shifts)."""
    seq = list(prompt)
    out: list[int] = []
    while len(out) < max_tokens:
        if n_ctx is not None:
            seq = shifted(seq, n_ctx, n_keep)
        tok = next_token(seq)
        if stop and tok % 13 == 0:
            break
        out.append(tok)
        seq.append(tok)
    return out


class FakeEngine:
    """Applies a SchedulerOutput to a simulated KV cache, checking positions exactly."""

    def __init__(self, sched: Scheduler, capacity: int | None = None, stops: bool = False):
        self.sched = sched
        self.partial = sched.config.partial_kv_edits
        self.kv: dict[int, list[int]] = {s: [] for s in range(sched.config.n_slots)}
        self.capacity = capacity
        self.stops = stops
        self.decode_calls = 0
        self.batches: list[SchedulerOutput] = []
        self.saved: list[SnapshotSave] = []

    def apply(self, ops: Sequence[object]) -> None:
        kv = self.kv
        for op in ops:
            if isinstance(op, KvRemove):
                end = len(kv[op.slot]) if op.p1 < 0 else op.p1
                assert self.partial or (op.p0 <= 0 and end >= len(kv[op.slot])), (
                    "partial KvRemove on a memory that cannot do it"
                )
                del kv[op.slot][op.p0 : end]
            elif isinstance(op, KvClear):
                kv[op.slot] = []
            elif isinstance(op, KvCopy):
                assert kv[op.dst_slot] == [], "KvCopy into a non-empty sequence"
                assert op.p0 == 0 and op.p1 <= len(kv[op.src_slot])
                assert self.partial or op.p1 == len(kv[op.src_slot]), "partial KvCopy"
                kv[op.dst_slot] = kv[op.src_slot][op.p0 : op.p1]
            elif isinstance(op, SnapshotSave):
                assert len(kv[op.slot]) == op.n_tokens, "snapshot of the wrong length"
                self.saved.append(op)
                data = np.asarray(kv[op.slot], dtype=np.int32).tobytes()
                self.sched.snapshot_saved(op.key, op.n_tokens, data)
            elif isinstance(op, SnapshotRestore):
                kv[op.slot] = np.frombuffer(op.data, dtype=np.int32).tolist()
                assert len(kv[op.slot]) == op.n_tokens
            else:  # pragma: no cover - a new op type the fake does not know
                raise AssertionError(f"unknown op {op!r}")

    def _fits(self, out: SchedulerOutput) -> bool:
        if self.capacity is None:
            return True
        used = sum(len(v) for v in self.kv.values())
        return used + out.n_tokens <= self.capacity

    def step(self) -> list[Request]:
        """One engine step; returns the requests that finished."""
        return self.execute(self.sched.schedule())

    def execute(self, out: SchedulerOutput | None) -> list[Request]:
        """Apply an output of ``schedule()``, decode it and report back."""
        assert out is not None
        finished_early = list(out.finished)
        self.apply(out.kv_ops)
        while out.chunks and not self._fits(out):
            out = self.sched.handle_kv_full(out)
            if out is None:
                raise AssertionError("kv full with nothing to free")
            self.apply(out.kv_ops)
        if not out.chunks:
            return finished_early
        self.decode_calls += 1
        self.batches.append(out)
        sampled: dict[int, int] = {}
        finished: dict[int, FinishReason] = {}
        for chunk in out.chunks:
            seq = self.kv[chunk.slot]
            assert chunk.start_pos == len(seq), (
                f"request {chunk.request.request_id}: chunk at {chunk.start_pos} "
                f"but the sequence holds {len(seq)} tokens"
            )
            seq.extend(int(t) for t in chunk.tokens)
            assert len(seq) <= self.sched.config.n_ctx_per_slot, (
                f"slot {chunk.slot} holds {len(seq)} tokens, more than n_ctx_per_slot"
            )
            if chunk.sample and chunk.request.kind == "generate":
                tok = next_token(seq)
                if self.stops and tok % 13 == 0:
                    finished[chunk.request.request_id] = "stop"
                else:
                    sampled[chunk.request.request_id] = tok
        return finished_early + self.sched.update_from_output(sampled, finished)

    def run(self, max_steps: int = 100_000) -> list[Request]:
        done: list[Request] = []
        for _ in range(max_steps):
            if not self.sched.has_work:
                return done
            done.extend(self.step())
        raise AssertionError("scheduler did not finish")
