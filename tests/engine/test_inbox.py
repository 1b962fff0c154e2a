"""The engine's inbox: submitting, cancelling and reading metrics never wait for a step.

The engine thread is held inside a step (in the scheduler's planning, or in its
``llama_decode``) by an event while another thread submits, reads ``metrics()`` /
``slot_states()`` and overfills the queue: if any of these waited for the step, the probe
thread could not finish before the step is released, so the check is deterministic, not a
matter of timing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from sipp.errors import QueueFullError
from sipp.runs import SippTextRun
from tests.engine.engine_helpers import query


def test_submit_metrics_and_a_full_queue_do_not_wait_for_step_planning(
    engine_factory: Any, tiny_llama_path: Path
) -> None:
    engine = engine_factory(tiny_llama_path, scheduler={"max_queued_requests": 2},
                            observability={"runtime_metrics": True})
    scheduler = engine.scheduler
    real_schedule = scheduler.schedule
    inside, release = threading.Event(), threading.Event()

    def held_schedule() -> Any:
        inside.set()
        release.wait(60)
        return real_schedule()

    scheduler.schedule = held_schedule
    first = query(engine, "The first request", max_tokens=3, ignore_eos=True)
    assert inside.wait(30), "the engine thread never started planning a step"
    seen: dict[str, Any] = {"accepted": []}

    def probe() -> None:
        seen["metrics"] = engine.metrics()
        seen["slots"] = engine.slot_states()
        with pytest.raises(QueueFullError, match="max_queued_requests=2"):
            for i in range(3):
                seen["accepted"].append(query(engine, f"queued {i}", max_tokens=2))
        seen["full"] = True

    thread = threading.Thread(target=probe)
    try:
        thread.start()
        thread.join(30)
        assert not thread.is_alive(), "a submit or metrics() waited for the engine's step"
    finally:
        scheduler.schedule = real_schedule
        release.set()
    thread.join(30)
    assert seen.get("full") is True
    # the first request still waits (its step is being planned): one more place was free
    accepted: list[SippTextRun] = seen["accepted"]
    assert len(accepted) == 1
    assert len(seen["slots"]) == engine.info.n_parallel
    assert "scheduler" in seen["metrics"] and "counters" in seen["metrics"]
    assert first.result(60)["usage"]["output_tokens"] == 3  # type: ignore[index]
    assert accepted[0].result(60)["finish_reason"] in ("stop", "length")
    after = engine.metrics()
    assert after["requests_running"] == 0 and after["requests_queued"] == 0
    assert after["counters"]["requests_completed"] == 2


def test_cancel_of_a_queued_request_goes_through_the_inbox(
    engine_factory: Any, tiny_llama_path: Path
) -> None:
    engine = engine_factory(tiny_llama_path)
    real_decode = engine.ctx.decode
    inside, release = threading.Event(), threading.Event()

    def held_decode(batch: Any) -> None:
        inside.set()
        release.wait(60)
        real_decode(batch)

    engine.ctx.decode = held_decode
    running = query(engine, "running", max_tokens=2, ignore_eos=True)
    assert inside.wait(30)
    waiting = query(engine, "waiting", max_tokens=50, ignore_eos=True)
    waiting.cancel()  # returns at once: the engine applies it between steps
    release.set()
    engine.ctx.decode = real_decode
    assert running.result(60)["finish_reason"] == "length"
    result = waiting.result(60)
    assert result["finish_reason"] == "cancelled"
    assert engine.metrics()["requests_queued"] == 0
