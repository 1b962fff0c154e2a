"""``continuous_batching=False`` (static batches) and adaptive prefill chunking."""

from __future__ import annotations

from sipp.scheduler import Request, Scheduler, SchedulerConfig


def req(rid: int, n: int = 4, max_tokens: int = 4) -> Request:
    return Request(rid, [rid % 50 + 1] * n, max_tokens=max_tokens)


def step(sched: Scheduler) -> set[int]:
    """Run one step, sampling token 7 for every sampled chunk; the ids that ran."""
    out = sched.schedule()
    sched.update_from_output({c.request.request_id: 7 for c in out.chunks if c.sample}, {})
    return {c.request.request_id for c in out.chunks}


def test_without_continuous_batching_no_request_joins_a_running_batch() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=2, cache_mode="disabled",
                                      continuous_batching=False))
    sched.add(req(1, max_tokens=5))
    assert step(sched) == {1}
    sched.add(req(2, max_tokens=2))  # a slot is free, but a batch is running
    seen: list[set[int]] = []
    while sched.has_work:
        seen.append(step(sched))
    assert all(ran in ({1}, {2}, set()) for ran in seen), seen
    assert {2} in seen


def test_without_continuous_batching_waiting_requests_start_together() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=2, cache_mode="disabled",
                                      continuous_batching=False))
    sched.add(req(1))
    sched.add(req(2))
    assert step(sched) == {1, 2}
    sched.add(req(3))
    while sched.num_running:
        assert 3 not in step(sched)
    assert step(sched) == {3}


def test_continuous_batching_admits_into_a_free_slot_at_once() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=2, cache_mode="disabled"))
    sched.add(req(1, max_tokens=5))
    step(sched)
    sched.add(req(2))
    assert step(sched) == {1, 2}


def test_adaptive_chunking_prefills_with_the_whole_budget_when_nothing_decodes() -> None:
    sched = Scheduler(SchedulerConfig(token_budget=64, prefill_chunk_size=8,
                                      cache_mode="disabled", adaptive_prefill_chunking=True))
    sched.add(req(1, n=40))
    out = sched.schedule()
    assert [c.n_tokens for c in out.chunks] == [40]  # prefill_chunk_size not applied


def test_adaptive_chunking_caps_prefill_while_requests_decode() -> None:
    cfg = SchedulerConfig(n_slots=3, token_budget=64, prefill_chunk_size=8,
                          cache_mode="disabled", adaptive_prefill_chunking=True)
    sched = Scheduler(cfg)
    sched.add(req(1, n=2, max_tokens=20))
    step(sched)  # request 1 is now decoding
    sched.add(req(2, n=40))
    sched.add(req(3, n=40))
    out = sched.schedule()
    prefill = [c.n_tokens for c in out.chunks if c.request.request_id != 1]
    assert sum(prefill) == 8 and sorted(prefill) == [4, 4]  # 8 in all, shared fairly


def test_adaptive_chunking_default_cap_is_an_eighth_of_the_budget() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=2, token_budget=512, cache_mode="disabled",
                                      adaptive_prefill_chunking=True))
    sched.add(req(1, n=2, max_tokens=20))
    step(sched)
    sched.add(req(2, n=300))
    out = sched.schedule()
    assert [c.n_tokens for c in out.chunks if c.request.request_id == 2] == [64]


def test_fixed_chunking_applies_even_when_nothing_decodes() -> None:
    sched = Scheduler(SchedulerConfig(token_budget=64, prefill_chunk_size=8,
                                      cache_mode="disabled"))
    sched.add(req(1, n=40))
    assert [c.n_tokens for c in sched.schedule().chunks] == [8]
