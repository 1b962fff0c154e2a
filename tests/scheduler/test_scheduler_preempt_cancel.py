"""KV-full preemption and cancellation of waiting and running requests."""

from __future__ import annotations

from sipp.scheduler import KvClear, Request, RequestStatus, Scheduler, SchedulerConfig
from tests.scheduler.sched_sim import FakeEngine, expected_output


def prompt(n: int, base: int = 1) -> list[int]:
    return [base + i % 97 for i in range(n)]


def test_kv_full_evicts_idle_slots_before_preempting() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=3, cache_mode="live_slot_prefix"))
    eng = FakeEngine(sched)
    sched.add(Request(1, prompt(30, 5), max_tokens=2))
    eng.run()
    sched.add(Request(2, prompt(20, 50), max_tokens=3))
    out = sched.schedule()
    eng.apply(out.kv_ops)
    retry = sched.handle_kv_full(out)
    assert retry is not None and retry.kv_ops == [KvClear(0)] and not retry.preempted
    assert [c.request.request_id for c in retry.chunks] == [2]
    assert sched.stats.preemptions == 0 and sched.stats.idle_evictions == 1


def test_kv_full_preempts_newest_and_it_resumes_without_loss_or_duplication() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=3, token_budget=64, cache_mode="disabled"))
    eng = FakeEngine(sched, capacity=90)
    reqs = [Request(i, prompt(20, 10 * i), max_tokens=15) for i in (1, 2, 3)]
    for r in reqs:
        sched.add(r)
    done = eng.run()
    assert sched.stats.preemptions >= 1
    assert sum(r.num_preemptions for r in reqs) == sched.stats.preemptions
    assert reqs[0].num_preemptions == 0  # the oldest is never the victim
    for r in reqs:
        assert r.output_tokens == expected_output(prompt(20, 10 * r.request_id), 15)
    assert sorted(r.request_id for r in done) == [1, 2, 3]
    assert all(state == "free" for state, _, _ in sched.slot_states())


def test_preempted_request_is_requeued_at_the_front() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=2, cache_mode="disabled"))
    eng = FakeEngine(sched)
    sched.add(Request(1, prompt(10), max_tokens=5))
    sched.add(Request(2, prompt(10, 3), max_tokens=5))
    eng.step()
    sched.add(Request(3, prompt(10, 4), max_tokens=5))
    out = sched.schedule()
    eng.apply(out.kv_ops)
    retry = sched.handle_kv_full(out)
    assert retry is not None and [r.request_id for r in retry.preempted] == [2]
    assert KvClear(1) in retry.kv_ops
    assert [r.request_id for r in sched.waiting_requests()] == [2, 3]
    assert sched.get(2) is not None and sched.get(2).status is RequestStatus.PREEMPTED  # type: ignore[union-attr]


def test_kv_full_with_a_single_request_returns_none() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=1, cache_mode="disabled"))
    sched.add(Request(1, prompt(10), max_tokens=5))
    out = sched.schedule()
    assert sched.handle_kv_full(out) is None
    (failed,) = sched.update_from_output({}, {1: "error"})
    assert failed.finish_reason == "error"
    assert sched.slot_states() == [("free", 0, None)]


def test_cancel_waiting_request_is_reported_at_next_schedule() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=1))
    sched.add(Request(1, prompt(10), max_tokens=5))
    sched.add(Request(2, prompt(10), max_tokens=5))
    sched.cancel(2, "user")
    out = sched.schedule()
    assert [r.request_id for r in out.finished] == [2]
    assert out.finished[0].status is RequestStatus.FINISHED_CANCELLED
    assert out.finished[0].error == "user"
    assert sched.num_waiting == 0


def test_cancel_running_request_frees_its_slot_at_next_schedule() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=1, cache_mode="disabled"))
    eng = FakeEngine(sched)
    sched.add(Request(1, prompt(10), max_tokens=50))
    sched.add(Request(2, prompt(10, 7), max_tokens=3))
    eng.step()
    eng.step()
    sched.cancel(1)
    out = sched.schedule()
    assert [r.request_id for r in out.finished] == [1]
    assert out.kv_ops[0] == KvClear(0)
    assert [c.request.request_id for c in out.chunks] == [2]  # the slot is reused at once
    eng.execute(out)
    eng.run()
    assert sched.get(1) is None and sched.stats.cancelled == 1


def test_cancelled_request_keeps_its_valid_kv_in_live_modes() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=1, cache_mode="live_slot_prefix"))
    eng = FakeEngine(sched)
    first = Request(1, prompt(10), max_tokens=50)
    sched.add(first)
    eng.step()
    eng.step()
    sched.cancel(1)
    eng.step()
    assert sched.slot_states() == [("idle", 11, None)]
    again = Request(2, [*first.all_tokens.tolist()[:11], 3], max_tokens=2)
    sched.add(again)
    eng.run()
    assert again.num_cached_tokens == 11


def test_cancel_unknown_or_finished_request_is_ignored() -> None:
    sched = Scheduler(SchedulerConfig())
    sched.cancel(42)
    assert sched.schedule().finished == []


def test_engine_stop_finish_and_error_free_the_slot() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=2, cache_mode="live_slot_prefix"))
    sched.add(Request(1, prompt(10), max_tokens=5))
    sched.add(Request(2, prompt(10, 4), max_tokens=5))
    sched.schedule()
    done = sched.update_from_output({1: 20}, {1: "stop", 2: "error"})
    assert [(r.request_id, r.finish_reason) for r in done] == [(1, "stop"), (2, "error")]
    assert [s for s, _, _ in sched.slot_states()] == ["idle", "free"]  # errors drop the KV
    assert sched.schedule().kv_ops == [KvClear(1)]


def test_abort_all_finishes_everything() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=1))
    sched.add(Request(1, prompt(10), max_tokens=5))
    sched.add(Request(2, prompt(10), max_tokens=5))
    sched.schedule()
    aborted = sched.abort_all()
    assert sorted(r.request_id for r in aborted) == [1, 2]
    assert sched.num_running == 0 and sched.num_waiting == 0
