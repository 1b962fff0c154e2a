"""Admission: queue bound, size checks, running limit, FIFO order."""

from __future__ import annotations

import pytest

from sipp.errors import ConfigurationError, QueueFullError, RequestTooLargeError
from sipp.scheduler import Request, RequestStatus, Scheduler, SchedulerConfig
from tests.scheduler.sched_sim import FakeEngine, expected_output


def req(rid: int, n: int = 4, max_tokens: int = 4, **kw: object) -> Request:
    return Request(rid, [rid % 50 + 1] * n, max_tokens=max_tokens, **kw)  # type: ignore[arg-type]


def test_full_queue_raises_queue_full_immediately() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=1, max_queued_requests=2))
    sched.add(req(1))
    sched.add(req(2))
    with pytest.raises(QueueFullError, match=r"2 requests waiting \(max_queued_requests=2\)"):
        sched.add(req(3))
    assert sched.num_waiting == 2


def test_queue_frees_up_after_admission() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=1, max_queued_requests=1))
    sched.add(req(1))
    sched.schedule()  # admits request 1
    sched.update_from_output({1: 99}, {})
    sched.add(req(2))  # the queue has room again
    assert sched.num_waiting == 1 and sched.num_running == 1


def test_prompt_that_fills_the_window_is_refused_naming_n_ctx_per_slot() -> None:
    sched = Scheduler(SchedulerConfig(n_ctx_per_slot=100))
    with pytest.raises(RequestTooLargeError, match=r"100 tokens leaves no room.*=100"):
        sched.add(req(1, n=100, max_tokens=1))
    with pytest.raises(RequestTooLargeError, match=r"101 tokens leaves no room.*=100"):
        sched.add(req(2, n=101))
    sched.add(req(3, n=99, max_tokens=1))  # one cell left for the first decode
    sched.add(req(4, n=90, max_tokens=500))  # generation past the window shifts the context


def test_media_prompt_plus_max_tokens_must_fit_since_it_cannot_shift() -> None:
    sched = Scheduler(SchedulerConfig(n_ctx_per_slot=100))
    with pytest.raises(RequestTooLargeError, match=r"90 tokens plus max_tokens=20.*=100.*images"):
        sched.add(req(1, n=90, max_tokens=20, media_spans=((2, 10),)))
    sched.add(req(2, n=80, max_tokens=20, media_spans=((2, 10),)))  # exactly fits


def test_embed_larger_than_one_batch_is_refused() -> None:
    sched = Scheduler(SchedulerConfig(token_budget=32))
    with pytest.raises(RequestTooLargeError, match=r"40 tokens.*at most 32"):
        sched.add(Request(1, list(range(1, 41)), kind="embed"))


def test_bad_requests_name_the_field() -> None:
    with pytest.raises(ValueError, match="prompt_tokens must hold at least one token"):
        Request(1, [])
    with pytest.raises(ValueError, match="max_tokens must be a positive integer"):
        Request(1, [1], max_tokens=0)
    with pytest.raises(ValueError, match="kind must be one of"):
        Request(1, [1], kind="rank")  # type: ignore[arg-type]


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigurationError, match="n_slots must be an integer >= 1"):
        SchedulerConfig(n_slots=0)
    with pytest.raises(ConfigurationError, match="cache_mode must be one of"):
        SchedulerConfig(cache_mode="lru")  # type: ignore[arg-type]
    assert SchedulerConfig(cache_mode="off").cache_mode == "disabled"  # type: ignore[arg-type]


def test_duplicate_request_id_is_refused() -> None:
    sched = Scheduler(SchedulerConfig())
    sched.add(req(1))
    with pytest.raises(ValueError, match="already scheduled"):
        sched.add(req(1))


def test_max_running_requests_limits_admission() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=4, max_running_requests=2))
    for i in range(1, 5):
        sched.add(req(i))
    out = sched.schedule()
    assert sorted(c.request.request_id for c in out.chunks) == [1, 2]
    assert sched.num_running == 2 and sched.num_waiting == 2


def test_fifo_admits_in_arrival_order() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=1, cache_mode="disabled"))
    for i in (5, 3, 9):
        sched.add(req(i, max_tokens=1))
    order = [r.request_id for r in FakeEngine(sched).run()]
    assert order == [5, 3, 9]


def test_length_finish_gives_exactly_max_tokens() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=2))
    sched.add(req(1, n=5, max_tokens=6))
    (done,) = FakeEngine(sched).run()
    assert done.status is RequestStatus.FINISHED_LENGTH and done.finish_reason == "length"
    assert done.output_tokens == expected_output(done.prompt_tokens.tolist(), 6)  # type: ignore[union-attr]


def test_schedule_twice_without_update_is_an_error() -> None:
    sched = Scheduler(SchedulerConfig())
    sched.add(req(1))
    sched.schedule()
    with pytest.raises(RuntimeError, match="before update_from_output"):
        sched.schedule()
