"""Run handles: blocking and asyncio consumers fed from another thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from sipp.errors import EngineDeadError
from sipp.runs import RunSink, SippTextRun
from sipp.types import EndpointRef

REF = EndpointRef("local", "test")


def _payload(text: str) -> dict[str, object]:
    return {"text": text, "finish_reason": "stop", "usage": None, "local_stats": None}


def _produce(sink: RunSink, pieces: list[str], delay: float = 0.01) -> threading.Thread:
    def work() -> None:
        for piece in pieces:
            time.sleep(delay)
            sink.push(piece, 1)
        sink.complete(_payload("".join(pieces)))

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_result_blocks_until_complete_and_adds_endpoint() -> None:
    sink = RunSink(REF, wants_tokens=False)
    run = SippTextRun(sink)
    thread = _produce(sink, ["a", "b"])
    response = run.result(timeout=5)
    thread.join()
    assert response["text"] == "ab"
    assert response["endpoint"] == {"kind": "local", "id": "test"}
    assert run.done()
    assert run.result() == response  # repeatable


def test_tokens_stream_in_order_with_sequence_positions() -> None:
    sink = RunSink(REF, wants_tokens=True, request_id="r1")
    run = SippTextRun(sink)
    thread = _produce(sink, ["x", "y", "z"])
    batches = list(run.tokens())
    thread.join()
    assert [b.text for b in batches] == ["x", "y", "z"]
    assert [b.sequence_start for b in batches] == [0, 1, 2]
    assert all(b.request_id == "r1" for b in batches)
    # a second iterator replays from the start
    assert [b.text for b in run.tokens()] == ["x", "y", "z"]


def test_tokens_are_dropped_when_not_streaming() -> None:
    sink = RunSink(REF, wants_tokens=False)
    run = SippTextRun(sink)
    _produce(sink, ["x"]).join()
    assert list(run.tokens()) == []
    assert run.result()["text"] == "x"


def test_failure_raises_from_result_and_iteration() -> None:
    sink = RunSink(REF, wants_tokens=True)
    run = SippTextRun(sink)
    sink.push("partial", 1)
    sink.fail(EngineDeadError("engine thread died"))
    with pytest.raises(EngineDeadError, match="died"):
        run.result()
    iterator = run.tokens()
    assert next(iterator).text == "partial"
    with pytest.raises(EngineDeadError):
        next(iterator)
    assert isinstance(run.exception(), EngineDeadError)


def test_result_timeout_leaves_run_going() -> None:
    sink = RunSink(REF, wants_tokens=False)
    run = SippTextRun(sink)
    with pytest.raises(TimeoutError):
        run.result(timeout=0.05)
    sink.complete(_payload("late"))
    assert run.result()["text"] == "late"


def test_cancel_calls_registered_canceller_once() -> None:
    sink = RunSink(REF, wants_tokens=False)
    run = SippTextRun(sink)
    reasons: list[str] = []
    sink.on_cancel(reasons.append)
    assert run.cancel("user_stop") is True
    assert run.cancel("again") is False
    assert reasons == ["user_stop"]
    assert sink.cancel_reason == "user_stop"
    sink.complete({**_payload("so far"), "finish_reason": "cancelled"})
    assert run.result()["finish_reason"] == "cancelled"
    assert run.cancel() is False


def test_cancel_before_producer_registers_is_delivered() -> None:
    sink = RunSink(REF, wants_tokens=False)
    run = SippTextRun(sink)
    run.cancel("early")
    reasons: list[str] = []
    sink.on_cancel(reasons.append)
    assert reasons == ["early"]


def test_late_producer_calls_are_ignored() -> None:
    sink = RunSink(REF, wants_tokens=True)
    run = SippTextRun(sink)
    sink.complete(_payload("done"))
    sink.push("ignored", 1)
    sink.fail(EngineDeadError("ignored"))
    assert run.result()["text"] == "done"
    assert list(run.tokens()) == []


def test_await_and_async_iteration_do_not_block_the_loop() -> None:
    async def main() -> tuple[list[str], str, int]:
        sink = RunSink(REF, wants_tokens=True)
        run = SippTextRun(sink)
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        tick_task = asyncio.create_task(ticker())
        thread = _produce(sink, ["a", "b", "c"], delay=0.03)
        texts = [batch.text async for batch in run.atokens()]
        response = await run
        stop.set()
        await tick_task
        thread.join()
        return texts, response["text"], ticks

    texts, text, ticks = asyncio.run(main())
    assert texts == ["a", "b", "c"]
    assert text == "abc"
    assert ticks >= 5  # the loop kept running while we waited


def test_await_raises_the_run_error() -> None:
    async def main() -> None:
        sink = RunSink(REF, wants_tokens=False)
        run = SippTextRun(sink)
        threading.Timer(0.02, lambda: sink.fail(EngineDeadError("boom"))).start()
        await run

    with pytest.raises(EngineDeadError, match="boom"):
        asyncio.run(main())


def test_done_callback_runs_once_with_the_run() -> None:
    sink = RunSink(REF, wants_tokens=False)
    run = SippTextRun(sink)
    seen: list[object] = []
    run.add_done_callback(seen.append)
    sink.complete(_payload("x"))
    run.add_done_callback(seen.append)  # already finished: called at once
    assert seen == [run, run]


def test_batch_groups_give_what_arrived_together() -> None:
    """The gateway's streams write a group of batches at once: each group holds every
    batch that arrived since the last one, in order; the run's error ends it."""

    async def main() -> list[list[str]]:
        sink = RunSink(REF, wants_tokens=True)
        run = SippTextRun(sink)
        for piece in ("a", "b", "c"):
            sink.push(piece, 1)
        groups = run._abatch_groups()
        seen = [[b.text for b in await groups.__anext__()]]
        threading.Timer(0.02, lambda: sink.push("d", 1)).start()
        seen.append([b.text for b in await groups.__anext__()])
        threading.Timer(0.02, lambda: sink.fail(EngineDeadError("gone"))).start()
        with pytest.raises(EngineDeadError):
            await groups.__anext__()
        return seen

    assert asyncio.run(main()) == [["a", "b", "c"], ["d"]]
