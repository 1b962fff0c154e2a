"""Run factories of local targets start on submission threads: errors reach the request as
before, and a request cancelled while its run is still starting leaves no run generating.
Provider targets' factories (no CPU work) start inline on the event loop."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from sipp.client import SippClient
from sipp.errors import BackendError, InvalidRequestError
from sipp.gateway.server.submission import Submitter
from sipp.native import backend_info
from sipp.runs import SippTextRun
from tests.gateway.server.conftest import BASE_CONFIG, ENV, RunningGateway, auth
from tests.gateway.server.upstream import MockOpenAI


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


def test_a_cheap_factory_runs_inline_without_the_pool() -> None:
    submitter = Submitter(2)

    async def main() -> _Run:
        return await submitter.start(_Run, off_loop=False)

    try:
        assert asyncio.run(main()).thread is threading.current_thread()
    finally:
        submitter.close()


class _ThreadRecordingClient(SippClient):
    """The gateway's client; records on which thread each run of a target was started."""

    def __init__(self) -> None:
        super().__init__()
        self.started_on: dict[str, threading.Thread] = {}

    def chat(self, messages: Any, **kwargs: Any) -> SippTextRun:  # type: ignore[override]
        self.started_on[kwargs["endpoint"].id] = threading.current_thread()
        return super().chat(messages, **kwargs)


def test_provider_runs_start_on_the_loop_and_local_runs_off_it(tiny_llama_path: Path) -> None:
    """A provider target's run start is only a JSON body for the I/O loop: it skips the
    submission threads. A local target's (template, tokenizer) still leaves the loop."""
    try:
        backend_info()
    except BackendError as exc:
        pytest.skip(f"no usable native backend: {exc.message.splitlines()[0]}")
    upstream = MockOpenAI()
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["tokens"] = cfg["tokens"][:1]
    cfg["targets"] = [
        {"name": "remote", "type": "openai", "model": "up-model", "api_key_env": "KEY_A",
         "base_url": upstream.url},
        {"name": "local", "type": "local", "model": str(tiny_llama_path), "backend": "cpu"}]
    client = _ThreadRecordingClient()
    gw = RunningGateway(cfg, ENV, client)
    try:
        for name in ("remote", "local"):
            r = requests.post(gw.url + "/v1/chat/completions", headers=auth(), timeout=60,
                              json={"model": name, "max_tokens": 2,
                                    "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text
        assert client.started_on["remote"] is gw.thread
        assert client.started_on["local"] is not gw.thread
        assert client.started_on["local"].name.startswith("sipp-gateway-submit")
    finally:
        gw.stop()
        upstream.stop()
