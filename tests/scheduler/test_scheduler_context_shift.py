"""Context shift: a generation longer than ``n_ctx_per_slot`` keeps ``retained_prefix_tokens``,
drops the oldest tokens after them and re-prefills the tail; the caller's tokens never change.

The fake model's next token depends on every token in the sequence's KV, so the outputs are
compared with a reference that applies the documented shift rule to a plain list."""

from __future__ import annotations

import random

import pytest

from sipp.scheduler import (
    KvClear,
    KvCopy,
    KvRemove,
    Request,
    RequestStatus,
    Scheduler,
    SchedulerConfig,
)
from tests.scheduler.sched_sim import FakeEngine, expected_output

MODES = ["disabled", "context_key", "live_slot_prefix", "state_snapshot", "live_slot_and_snapshot"]


def run_checked(eng: FakeEngine, max_steps: int = 20_000) -> list[Request]:
    """Run to the end, checking after every step that each slot's mirror is its KV."""
    sched = eng.sched
    done: list[Request] = []
    for _ in range(max_steps):
        if not sched.has_work:
            return done
        done.extend(eng.step())
        for index, (state, _, _) in enumerate(sched.slot_states()):
            if state != "free":  # a freed slot's KvClear is applied at the next step
                assert sched.slot_tokens(index) == eng.kv[index]
    raise AssertionError("scheduler did not finish")


def all_ops(eng: FakeEngine) -> list[object]:
    return [op for out in eng.batches for op in out.kv_ops]


def test_long_generation_keeps_the_prefix_and_drops_the_oldest_tokens() -> None:
    cfg = SchedulerConfig(n_ctx_per_slot=32, retained_prefix_tokens=4,
                          cache_mode="live_slot_prefix")
    sched = Scheduler(cfg)
    eng = FakeEngine(sched)
    prompt = list(range(1, 11))
    request = Request(1, prompt, max_tokens=100)
    sched.add(request)
    shifts_seen = []
    for _ in range(1000):
        if not sched.has_work:
            break
        out = sched.schedule()
        shifts_seen += out.shifted
        eng.execute(out)
    assert request.status is RequestStatus.FINISHED_LENGTH
    assert request.output_tokens == expected_output(prompt, 100, n_ctx=32, n_keep=4)
    assert len(request.output_tokens) == 100
    # 110 tokens through a window of 32 keeping 4: each shift drops (32 - 4) // 2 = 14
    assert request.num_context_shifts == len(shifts_seen) == sched.stats.context_shifts == 6
    assert request.num_discarded_tokens == sched.stats.discarded_tokens == 6 * 14
    assert request.num_tokens == 110 - 6 * 14
    removes = [op for out in eng.batches for op in out.kv_ops if isinstance(op, KvRemove)]
    assert removes == [KvRemove(0, 4, -1)] * 6
    # the KV view: the prompt's first 4 tokens, then the most recent ones
    assert request.all_tokens.tolist()[:4] == prompt[:4]
    assert request.all_tokens.tolist()[4:] == (prompt + request.output_tokens)[-(110 - 84 - 4):]
    assert sched.slot_tokens(0) == eng.kv[0]  # kept idle for reuse, mirror == KV


@pytest.mark.parametrize("mode", ["disabled", "state_snapshot"])
def test_without_a_live_mode_nothing_is_kept(mode: str) -> None:
    """As in the original runtime, n_keep is retained_prefix_tokens only in live modes."""
    cfg = SchedulerConfig(n_ctx_per_slot=24, retained_prefix_tokens=8, cache_mode=mode)  # type: ignore[arg-type]
    sched = Scheduler(cfg)
    eng = FakeEngine(sched)
    prompt = [5, 6, 7, 8, 9]
    request = Request(1, prompt, max_tokens=60)
    sched.add(request)
    run_checked(eng)
    assert request.output_tokens == expected_output(prompt, 60, n_ctx=24, n_keep=0)
    assert request.num_context_shifts > 0
    assert not any(isinstance(op, KvRemove) for op in all_ops(eng))
    assert sum(isinstance(op, KvClear) for op in all_ops(eng)) >= request.num_context_shifts


def test_nothing_discardable_clears_down_to_the_pending_token() -> None:
    cfg = SchedulerConfig(n_ctx_per_slot=16, retained_prefix_tokens=100,
                          cache_mode="live_slot_prefix")
    sched = Scheduler(cfg)
    eng = FakeEngine(sched)
    prompt = [3, 1, 4, 1, 5]
    request = Request(1, prompt, max_tokens=40)
    sched.add(request)
    run_checked(eng)
    assert request.output_tokens == expected_output(prompt, 40, n_ctx=16, n_keep=100)
    assert request.num_context_shifts > 0
    assert request.num_discarded_tokens == 16 * request.num_context_shifts  # all but pending


def test_exact_fit_does_not_shift() -> None:
    sched = Scheduler(SchedulerConfig(n_ctx_per_slot=20, retained_prefix_tokens=4))
    eng = FakeEngine(sched)
    request = Request(1, list(range(1, 11)), max_tokens=10)  # 10 + 10 = 20: fits exactly
    sched.add(request)
    run_checked(eng)
    assert request.num_context_shifts == 0 and len(request.output_tokens) == 10
    assert request.output_tokens == expected_output(list(range(1, 11)), 10)


def test_prompt_with_one_free_cell_generates_past_the_window() -> None:
    sched = Scheduler(SchedulerConfig(n_ctx_per_slot=12, retained_prefix_tokens=2))
    eng = FakeEngine(sched)
    prompt = list(range(1, 12))  # 11 of 12 cells
    request = Request(1, prompt, max_tokens=30)
    sched.add(request)
    run_checked(eng)
    assert request.output_tokens == expected_output(prompt, 30, n_ctx=12, n_keep=2)


def test_stop_token_after_a_shift() -> None:
    sched = Scheduler(SchedulerConfig(n_ctx_per_slot=16, retained_prefix_tokens=3))
    eng = FakeEngine(sched, stops=True)
    for rid in range(1, 30):
        prompt = [rid, rid + 1, rid + 2]
        request = Request(rid, prompt, max_tokens=200)
        sched.add(request)
        run_checked(eng)
        want = expected_output(prompt, 200, stop=True, n_ctx=16, n_keep=3)
        assert request.output_tokens == want
        if len(want) > 20:
            assert request.num_context_shifts > 0
            return
    pytest.skip("no seed made a long enough run")  # pragma: no cover


def test_recurrent_memory_clears_instead_of_a_partial_remove() -> None:
    cfg = SchedulerConfig(n_ctx_per_slot=20, retained_prefix_tokens=4, partial_kv_edits=False)
    sched = Scheduler(cfg)
    eng = FakeEngine(sched)  # asserts that no partial KvRemove / KvCopy is emitted
    prompt = list(range(1, 9))
    request = Request(1, prompt, max_tokens=50)
    sched.add(request)
    run_checked(eng)
    assert request.output_tokens == expected_output(prompt, 50, n_ctx=20, n_keep=4)
    assert request.num_context_shifts > 0


def test_shift_of_a_sequence_whose_prefix_another_slot_copied() -> None:
    """B copies A's prefix (KvCopy from a busy slot); both then shift. Each keeps its own
    tokens, and every remove touches only the shifting slot after the kept prefix."""
    cfg = SchedulerConfig(n_slots=2, n_ctx_per_slot=40, retained_prefix_tokens=6,
                          cache_mode="live_slot_prefix", token_budget=64)
    sched = Scheduler(cfg)
    eng = FakeEngine(sched)
    shared = list(range(100, 120))
    a = Request(1, [*shared, 1, 2], max_tokens=90)
    b = Request(2, [*shared, 3, 4, 5], max_tokens=70)
    sched.add(a)
    eng.step()
    eng.step()
    sched.add(b)
    run_checked(eng)
    assert b.num_cached_tokens >= 20 and b.cache_source == "live"
    assert any(isinstance(op, KvCopy) for op in all_ops(eng))
    for r in (a, b):
        want = expected_output(r.prompt_tokens.tolist(), r.max_tokens, n_ctx=40, n_keep=6)  # type: ignore[union-attr]
        assert r.output_tokens == want
        assert r.num_context_shifts > 0
    assert {op for op in all_ops(eng) if isinstance(op, KvRemove)} <= {KvRemove(0, 6, -1),
                                                                       KvRemove(1, 6, -1)}


def test_reuse_after_a_shift_matches_only_what_is_in_kv() -> None:
    """A conversation continued after a shifted turn reuses the kept prefix, not the
    discarded tokens the caller still sees."""
    cfg = SchedulerConfig(n_ctx_per_slot=30, retained_prefix_tokens=5, cache_mode="context_key")
    sched = Scheduler(cfg)
    eng = FakeEngine(sched)
    prompt = list(range(1, 13))
    first = Request(1, prompt, max_tokens=40, context_key="chat")
    sched.add(first)
    run_checked(eng)
    assert first.num_context_shifts > 0
    follow = Request(2, prompt + first.output_tokens[:10] + [9, 9], max_tokens=3,
                     context_key="chat")
    sched.add(follow)
    run_checked(eng)
    assert follow.num_cached_tokens == 5
    assert follow.output_tokens == expected_output(follow.prompt_tokens.tolist(), 3)  # type: ignore[union-attr]


def test_preempted_while_re_prefilling_after_a_shift() -> None:
    cfg = SchedulerConfig(n_slots=3, n_ctx_per_slot=30, retained_prefix_tokens=4,
                          token_budget=16, cache_mode="live_slot_prefix")
    sched = Scheduler(cfg)
    eng = FakeEngine(sched, capacity=60)
    requests = [Request(i, [i, i + 1, i + 2, i + 3, i + 4], max_tokens=70) for i in range(1, 4)]
    for r in requests:
        sched.add(r)
    run_checked(eng)
    assert sched.stats.preemptions > 0 and sched.stats.context_shifts > 0
    for r in requests:
        assert r.output_tokens == expected_output(r.prompt_tokens.tolist(), 70, n_ctx=30, n_keep=4)  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
def test_random_long_generations_get_exactly_their_own_tokens(mode: str) -> None:
    rng = random.Random(mode)
    cfg = SchedulerConfig(
        n_slots=3, n_ctx_per_slot=48, token_budget=rng.choice([16, 40]),
        prefill_chunk_size=rng.choice([0, 8]), max_queued_requests=100,
        cache_mode=mode, retained_prefix_tokens=rng.choice([0, 5, 30]),  # type: ignore[arg-type]
        snapshot_interval_tokens=8,
        partial_kv_edits=mode in ("disabled", "live_slot_prefix", "state_snapshot"),
    )
    sched = Scheduler(cfg)
    eng = FakeEngine(sched, capacity=110)  # no stop tokens: most runs outgrow the window
    shared = [rng.randrange(1, 500) for _ in range(30)]
    requests = []
    for i in range(40):
        head = shared[: rng.randrange(0, 30)] if rng.random() < 0.6 else []
        tail = [rng.randrange(1, 500) for _ in range(rng.randrange(1, 15))]
        requests.append(Request(i, head + tail, max_tokens=rng.randrange(1, 120),
                                context_key=rng.choice([None, "a", "b"])))
    pending = list(requests)
    cancelled: set[int] = set()
    finished: dict[int, Request] = {}
    steps = 0
    while pending or sched.has_work:
        if pending and rng.random() < 0.3:
            sched.add(pending.pop(0))
        if rng.random() < 0.01:
            victim = rng.choice(requests[: 40 - len(pending)])
            sched.cancel(victim.request_id)
            cancelled.add(victim.request_id)
        for r in eng.step():
            assert r.request_id not in finished
            finished[r.request_id] = r
        for index, (state, _, _) in enumerate(sched.slot_states()):
            if state != "free":
                assert sched.slot_tokens(index) == eng.kv[index]
        steps += 1
        assert steps < 50_000
    assert sorted(finished) == list(range(40))
    assert sched.stats.context_shifts > 0
    n_keep = cfg.shift_keep_tokens
    for r in requests:
        want = expected_output(r.prompt_tokens.tolist(), r.max_tokens,  # type: ignore[union-attr]
                               n_ctx=48, n_keep=n_keep)
        if r.status is RequestStatus.FINISHED_CANCELLED:
            assert r.output_tokens == want[: len(r.output_tokens)]
        else:
            assert r.output_tokens == want


def test_a_request_with_images_that_outgrows_the_window_fails_clearly() -> None:
    """Admission refuses these; if one still overflows (here: max_tokens raised after
    admission) it fails instead of shifting across an image."""
    sched = Scheduler(SchedulerConfig(n_ctx_per_slot=16, retained_prefix_tokens=2))
    eng = FakeEngine(sched)
    request = Request(1, list(range(1, 9)), max_tokens=8, media_spans=((2, 6),))
    sched.add(request)
    request.max_tokens = 50
    done = run_checked(eng)
    assert done == [request] and request.status is RequestStatus.FINISHED_ERROR
    assert request.error is not None and "images cannot shift" in request.error
    assert len(request.output_tokens) == 9 and request.num_context_shifts == 0  # 16 - 8 + 1
