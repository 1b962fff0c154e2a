"""Run factories start on submission threads: errors reach the request as before, and a
request cancelled while its run is still starting leaves no run generating."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from sipp.errors import InvalidRequestError
from sipp.gateway.server.submission import Submitter


class _Run:
    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.thread = threading.current_thread()

    def cancel(self, reason: str = "caller_cancelled") -> bool:
        self.cancelled.append(reason)
        return True


def test_factories_run_off_the_loop_thread_and_errors_propagate() -> None:
    submitter = Submitter(2)

    async def main() -> None:
        run = await submitter.start(_Run)
        assert run.thread is not threading.current_thread()

        def bad() -> _Run:
            raise InvalidRequestError("field 'prompt' is bad")

        with pytest.raises(InvalidRequestError, match="prompt"):
            await submitter.start(bad)

    try:
        asyncio.run(main())
    finally:
        submitter.close()


def test_zero_workers_start_on_the_loop() -> None:
    submitter = Submitter(0)

    async def main() -> _Run:
        return await submitter.start(_Run)

    assert asyncio.run(main()).thread is threading.current_thread()


def test_a_run_whose_request_was_cancelled_while_starting_is_cancelled() -> None:
    submitter = Submitter(1)
    release = threading.Event()
    made: list[_Run] = []

    def slow() -> _Run:
        release.wait(5)
        made.append(_Run())
        return made[-1]

    async def main() -> None:
        task = asyncio.ensure_future(submitter.start(slow))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
        release.set()
        deadline = time.monotonic() + 5
        while not (made and made[0].cancelled) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert made and made[0].cancelled == ["client_disconnected"]
    finally:
        submitter.close()


def test_negative_workers_are_refused() -> None:
    with pytest.raises(ValueError, match="workers"):
        Submitter(-1)
