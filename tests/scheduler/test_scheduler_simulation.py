"""Seeded random simulation: 200 requests, random arrivals, cancels, stops and KV pressure.

The fake model's next token depends on every token in the sequence's KV, so a lost,
duplicated or misplaced token anywhere changes the output."""

from __future__ import annotations

import random

import pytest

from sipp.scheduler import Request, RequestStatus, Scheduler, SchedulerConfig
from tests.scheduler.sched_sim import FakeEngine, expected_output

MODES = ["disabled", "context_key", "live_slot_prefix", "state_snapshot", "live_slot_and_snapshot"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", [1, 2])
def test_200_random_requests_get_exactly_their_own_tokens(mode: str, seed: int) -> None:
    rng = random.Random(seed)
    cfg = SchedulerConfig(
        n_slots=rng.choice([3, 4, 6]),
        n_ctx_per_slot=160,
        token_budget=rng.choice([24, 48, 96]),
        prefill_chunk_size=rng.choice([0, 16]),
        max_queued_requests=500,
        mode=rng.choice(["latency_first", "balanced", "throughput_first"]),
        cache_mode=mode,  # type: ignore[arg-type]
        snapshot_interval_tokens=16,
        max_snapshot_entries=12,
        max_snapshot_bytes=4000,
        partial_kv_edits=seed == 2,
    )
    sched = Scheduler(cfg)
    eng = FakeEngine(sched, capacity=cfg.n_slots * 45 + 120, stops=True)
    shared = [rng.randrange(1, 500) for _ in range(80)]
    pending: list[Request] = []
    for i in range(200):
        kind = "embed" if rng.random() < 0.1 else "generate"
        head = shared[: rng.randrange(0, 80)] if rng.random() < 0.6 else []
        tail = [rng.randrange(1, 500) for _ in range(rng.randrange(1, 40))]
        pending.append(
            Request(
                i,
                (head + tail)[: cfg.token_budget] if kind == "embed" else head + tail,
                max_tokens=rng.randrange(1, 30),
                context_key=rng.choice([None, "a", "b", "c"]),
                kind=kind,  # type: ignore[arg-type]
            )
        )
    requests = list(pending)
    finished: dict[int, Request] = {}
    cancelled_ids: set[int] = set()
    steps = 0
    while pending or sched.has_work:
        for _ in range(rng.randrange(0, 4)):
            if pending:
                sched.add(pending.pop(0))
        if rng.random() < 0.08 and requests:
            victim = rng.choice(requests[: 200 - len(pending)])
            sched.cancel(victim.request_id, "random")
            cancelled_ids.add(victim.request_id)
        for r in eng.step():
            assert r.request_id not in finished, "a request finished twice"
            finished[r.request_id] = r
        for index, (state, _, _) in enumerate(sched.slot_states()):
            if state != "free":  # a freed slot's KvClear is applied at the next step
                assert sched.slot_tokens(index) == eng.kv[index]
        steps += 1
        assert steps < 20_000

    assert sorted(finished) == list(range(200))
    for r in requests:
        want = expected_output(r.prompt_tokens.tolist(), r.max_tokens, stop=True)  # type: ignore[union-attr]
        if r.kind == "embed":
            assert r.output_tokens == [] and r.status in (
                RequestStatus.FINISHED_STOPPED,
                RequestStatus.FINISHED_CANCELLED,
            )
        elif r.status is RequestStatus.FINISHED_CANCELLED:
            assert r.request_id in cancelled_ids
            assert r.output_tokens == want[: len(r.output_tokens)]
        else:
            assert r.output_tokens == want, f"request {r.request_id} ({r.status})"
            assert r.finish_reason == ("length" if len(want) == r.max_tokens else "stop")
    assert all(state != "busy" for state, _, _ in sched.slot_states())
    if mode in ("disabled", "state_snapshot"):
        assert all(state == "free" for state, _, _ in sched.slot_states())
    for index in range(cfg.n_slots):
        assert sched.slot_tokens(index) == eng.kv[index]
    assert sched.num_running == 0 and sched.num_waiting == 0
    assert sched.stats.cancelled > 0
    if mode != "disabled" and cfg.partial_kv_edits:
        assert sched.stats.cache_hits > 0
    if "snapshot" in mode:
        assert sched.stats.snapshot_hits > 0
