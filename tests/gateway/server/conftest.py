"""A real gateway on loopback ports, with scriptable fake endpoints behind its targets.

The fake endpoint reads its script from the prompt (or last chat message):
``hello`` → tokens "Hel", "lo"; ``fail-early`` → fails before any token; ``fail-mid`` →
one token then an engine error; ``block`` → one token then waits for cancel; ``slow`` →
answers after 0.4 s; ``burst`` → six one-letter tokens pushed back to back.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import pytest

from sipp.client import SippClient
from sipp.descriptors import LocalModelDescriptor, ProviderDescriptor
from sipp.endpoints.base import Capability, Endpoint, Operation
from sipp.endpoints.kinds import EndpointEntry
from sipp.endpoints.local import LocalEndpoint
from sipp.endpoints.provider import ProviderEndpoint
from sipp.errors import EngineError
from sipp.gateway.server.config import parse_config
from sipp.gateway.server.secrets import read_secrets
from sipp.gateway.server.serve import GatewayServer
from sipp.gateway.server.submission import DEFAULT_SUBMIT_WORKERS
from sipp.requests import EmbedRequest, TextRequest
from sipp.runs import RunSink
from sipp.types import EndpointRef

TOKEN = "tok-all"
LIMITED_TOKEN = "tok-limited"
ENV = {"ADMIN_PW": "pw", "TOKEN_ALL": TOKEN, "TOKEN_LIMITED": LIMITED_TOKEN, "KEY_A": "sk-a",
       "KEY_B": "sk-b"}

BASE_CONFIG: dict[str, Any] = {
    "public_bind": "127.0.0.1:0",
    "management_bind": "127.0.0.1:0",
    "max_request_bytes": 4096,
    "admin_password_env": "ADMIN_PW",
    "security": {
        "client_ip": {"source": "peer", "trusted_proxy_cidrs": []},
        "rate_limit": {"enabled": False, "requests_per_minute": 60, "burst": 60},
    },
    "tokens": [
        {"env": "TOKEN_ALL", "caller": "all", "targets": []},
        {"env": "TOKEN_LIMITED", "caller": "limited", "targets": ["alpha"]},
    ],
    "targets": [
        {"name": "alpha", "type": "openai", "model": "m-a", "api_key_env": "KEY_A",
         "base_url": "http://127.0.0.1:9/v1"},
        {"name": "beta", "type": "anthropic", "model": "m-b", "api_key_env": "KEY_B",
         "base_url": "http://127.0.0.1:9/v1"},
    ],
}


class Script:
    """Shared state between a test and its fake endpoints."""

    def __init__(self) -> None:
        self.cancels: list[str] = []
        self.load_gate = threading.Event()
        self.load_gate.set()
        self.requests: list[TextRequest | EmbedRequest] = []


class FakeEndpoint(Endpoint):
    kind = "provider"

    def __init__(self, ref: EndpointRef, script: Script) -> None:
        super().__init__(ref)
        self.script = script
        script.load_gate.wait(30)

    def capability(self, operation: Operation) -> Capability:
        return "supported"

    def start_text(self, request: TextRequest, sink: RunSink) -> None:
        self.script.requests.append(request)
        text = request.prompt if request.prompt is not None else request.messages[-1].content  # type: ignore[index]
        threading.Thread(target=self._run, args=(text, sink), daemon=True).start()

    def _run(self, text: str, sink: RunSink) -> None:
        usage = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
        if "fail-early" in text:
            sink.fail(EngineError("engine exploded"))
            return
        if "slow" in text:
            time.sleep(0.4)
        if "burst" in text:  # six batches back to back (they reach the gateway together)
            for piece in "abcdef":
                sink.push(piece, 1)
            sink.complete({"text": "abcdef", "finish_reason": "stop", "local_stats": None,
                           "usage": {"input_tokens": 3, "output_tokens": 6, "total_tokens": 9}})
            return
        sink.push("Hel", 1)
        if "fail-mid" in text:
            time.sleep(0.05)
            sink.fail(EngineError("engine exploded mid-stream"))
            return
        if "block" in text:
            cancelled = threading.Event()

            def on_cancel(reason: str) -> None:
                self.script.cancels.append(reason)
                cancelled.set()

            sink.on_cancel(on_cancel)
            cancelled.wait(10)
            sink.complete({"text": "Hel", "finish_reason": "cancelled", "usage": None,
                           "local_stats": None})
            return
        sink.push("lo", 1)
        reason = "length" if "long" in text else "stop"
        sink.complete({"text": "Hello", "finish_reason": reason, "usage": usage,
                       "local_stats": None})

    def start_embed(self, request: EmbedRequest, sink: RunSink) -> None:
        self.script.requests.append(request)
        sink.complete({"values": [0.25, -0.5, float(len(request.input))],
                       "usage": {"input_tokens": 2, "output_tokens": 0, "total_tokens": 2},
                       "local_stats": None, "pooling": "mean", "normalized": False})


class FakeLocalEndpoint(FakeEndpoint):
    kind = "local"
    accepts = LocalEndpoint.accepts


class FakeProviderEndpoint(FakeEndpoint):
    accepts = ProviderEndpoint.accepts


def fake_client(script: Script) -> SippClient:
    """A client whose local and provider targets are scripted fakes (same option groups)."""

    class FakeClient(SippClient):
        endpoint_kinds: ClassVar[Mapping[type, EndpointEntry]] = {
            LocalModelDescriptor: EndpointEntry(
                "local", lambda ref, _d: FakeLocalEndpoint(ref, script)),
            ProviderDescriptor: EndpointEntry(
                "provider", lambda ref, _d: FakeProviderEndpoint(ref, script)),
        }

    return FakeClient()


class RunningGateway:
    """A GatewayServer on its own event loop thread."""

    def __init__(self, config: dict[str, Any], env: dict[str, str], client: SippClient,
                 clock: Callable[[], float] = time.monotonic, wait_ready: bool = True,
                 submit_workers: int = DEFAULT_SUBMIT_WORKERS) -> None:
        parsed = parse_config(config)
        self.loop = asyncio.new_event_loop()
        self.server = GatewayServer(parsed, read_secrets(parsed, env), client=client,
                                    drain_timeout=5, clock=clock,
                                    submit_workers=submit_workers)
        self.exit_code: int | None = None
        started = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self.server.start())
            except BaseException as exc:
                self.error = exc
                started.set()
                return
            started.set()
            self.exit_code = self.loop.run_until_complete(self.server.wait())

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        started.wait(10)
        if self.error is not None:
            raise self.error
        self.url = f"http://127.0.0.1:{self.server.public_port}"
        self.management_url = f"http://127.0.0.1:{self.server.management_port}"
        if wait_ready:
            deadline = time.monotonic() + 10
            while not self.server.state.targets.ready:
                if self.server.state.targets.failed or time.monotonic() > deadline:
                    self.stop()
                    errors = [s.error for s in self.server.state.targets.states.values()
                              if s.error]
                    raise AssertionError(f"targets did not load: {errors}")
                time.sleep(0.01)

    def stop(self) -> int | None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.shutdown)
            self.thread.join(15)
        if not self.loop.is_closed():
            self.loop.close()
        return self.exit_code


@pytest.fixture(scope="session")
def native_backend() -> None:
    """Skip (with the reason) when no native backend can be opened."""
    from sipp.errors import BackendError
    from sipp.native._lib import get_native

    try:
        get_native()
    except BackendError as exc:
        pytest.skip(f"no native backend: {exc}")


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def start_gateway(script: Script) -> Iterator[Callable[..., RunningGateway]]:
    running: list[RunningGateway] = []

    def start(config: dict[str, Any] | None = None, *, env: dict[str, str] | None = None,
              clock: Callable[[], float] = time.monotonic, wait_ready: bool = True,
              **overrides: Any) -> RunningGateway:
        cfg = copy.deepcopy(config if config is not None else BASE_CONFIG)
        cfg.update(overrides)
        gateway = RunningGateway(cfg, env or ENV, fake_client(script), clock, wait_ready)
        running.append(gateway)
        return gateway

    yield start
    for gateway in running:
        script.load_gate.set()
        gateway.stop()


@pytest.fixture
def gateway(start_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return start_gateway()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
