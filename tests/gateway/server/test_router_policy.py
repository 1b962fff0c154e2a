"""The router's choices without a server: strategies, retry order, cooldowns, trials and
cancellation, on scripted endpoints."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from sipp.endpoints.base import Capability, Endpoint, Operation
from sipp.errors import (
    CancelledError,
    EndpointError,
    InvalidRequestError,
    ProviderError,
    RateLimitedError,
    SippError,
    TargetNotReadyError,
)
from sipp.gateway.server.config import Deployment, OpenAITarget, RoutedTarget
from sipp.gateway.server.router import Attribution, Member, RouterEndpoint, retryable
from sipp.requests import EmbedRequest, RunSink, TextRequest
from sipp.runs import RunSink as Sink
from sipp.runs import SippTextRun
from sipp.types import EndpointRef, SippTextOptions

Behaviour = Callable[[RunSink], None]


def ok(sink: RunSink) -> None:
    sink.push("hi", 1)
    sink.complete({"text": "hi", "finish_reason": "stop", "usage": None, "local_stats": None})


def failing(error: SippError) -> Behaviour:
    return lambda sink: sink.fail(error)


class Scripted(Endpoint):
    kind = "provider"

    def __init__(self, name: str, behaviour: Behaviour = ok) -> None:
        super().__init__(EndpointRef("provider", name))
        self.behaviour = behaviour
        self.calls = 0

    def capability(self, operation: Operation) -> Capability:
        return "supported"

    def start_text(self, request: TextRequest, sink: RunSink) -> None:
        self.calls += 1
        self.behaviour(sink)

    def start_embed(self, request: EmbedRequest, sink: RunSink) -> None:
        raise AssertionError("not used")


def router(endpoints: list[Scripted], fallbacks: dict[str, Endpoint] | None = None,
           clock: Callable[[], float] | None = None, weights: list[float] | None = None,
           **policy: Any) -> RouterEndpoint:
    target = RoutedTarget("chat", tuple(
        Deployment(e.ref.id, OpenAITarget(f"chat/{e.ref.id}", "m", "K", None, None))
        for e in endpoints), fallbacks=tuple(fallbacks or ()), **policy)
    members = [Member(f"chat/{e.ref.id}", e, (weights or [1.0] * len(endpoints))[i])
               for i, e in enumerate(endpoints)]
    return RouterEndpoint(EndpointRef("provider", "chat"), target, members,
                          (fallbacks or {}).get, Attribution(),
                          **({"clock": clock} if clock else {}))


def run(endpoint: RouterEndpoint, rid: str = "r", stream: bool = True) -> tuple[Any, str | None]:
    """Start one chat on the router; its response (or error) and who served it."""
    sink = Sink(endpoint.ref, wants_tokens=stream, request_id=rid)
    request = TextRequest("query", "hi", None, SippTextOptions(), None, None, None, stream, rid)
    endpoint.start_text(request, sink)
    try:
        result: Any = SippTextRun(sink).result(timeout=10)
    except SippError as exc:
        result = exc
    return result, endpoint.attribution.pop(rid)


def test_retryable_failures() -> None:
    assert retryable(EndpointError("x", kind="transport"))
    assert retryable(ProviderError("x", provider="openai", kind="http", status=502))
    assert retryable(ProviderError("x", provider="openai", kind="rate_limited", status=429))
    assert retryable(RateLimitedError("x")) and retryable(TargetNotReadyError("x"))
    assert not retryable(ProviderError("x", provider="openai", kind="http", status=400))
    assert not retryable(InvalidRequestError("x")) and not retryable(CancelledError("x"))


def test_round_robin_and_retry_order() -> None:
    a, b, c = Scripted("a"), Scripted("b"), Scripted("c")
    r = router([a, b, c], strategy="round_robin")
    assert [run(r, str(i))[1] for i in range(6)] == ["chat/b", "chat/c", "chat/a"] * 2
    b.behaviour = failing(ProviderError("down", provider="openai", kind="http", status=503))
    c.behaviour = b.behaviour
    result, served = run(r, "x")
    assert isinstance(result, ProviderError) and served is None  # retries = 0: one try
    r2 = router([a, b, c], strategy="round_robin", retries=2, retry_backoff_seconds=0)
    calls = (a.calls, b.calls, c.calls)
    result, served = run(r2, "y")
    assert served == "chat/a" and result["text"] == "hi"
    assert (a.calls, b.calls, c.calls) == (calls[0] + 1, calls[1] + 1, calls[2] + 1)


def test_weighted_and_lowest_latency() -> None:
    a, b = Scripted("a"), Scripted("b")
    r = router([a, b], strategy="weighted", weights=[9.0, 1.0])
    counts = Counter(run(r, str(i))[1] for i in range(400))
    assert 300 < counts["chat/a"] < 390
    slow = threading.Event()

    def late(sink: RunSink) -> None:
        slow.wait(0.05)
        ok(sink)

    fast, lagging = Scripted("fast"), Scripted("lagging", late)
    r = router([lagging, fast], strategy="lowest_latency")
    first = [run(r, f"w{i}")[1] for i in range(2)]
    assert sorted(first) == ["chat/fast", "chat/lagging"]  # each measured once
    assert {run(r, f"l{i}")[1] for i in range(5)} == {"chat/fast"}


def test_cooldown_trial_and_non_retryable_answers() -> None:
    now = [0.0]
    a = Scripted("a", failing(EndpointError("refused", kind="transport")))
    b = Scripted("b")
    r = router([a, b], clock=lambda: now[0], retries=1, retry_backoff_seconds=0,
               cooldown_after_failures=2, cooldown_window_seconds=10, cooldown_seconds=5)
    for i in range(4):
        assert run(r, str(i))[1] == "chat/b"
    assert a.calls == 2 and r.snapshot()["deployments"][0]["health"] == "cooling_down"
    now[0] = 6.0  # cooldown over: one trial, a refusal of the request counts as an answer
    a.behaviour = failing(InvalidRequestError("bad request"))
    results = [run(r, f"t{i}") for i in range(2)]
    assert any(isinstance(result, InvalidRequestError) for result, _ in results)
    assert r.snapshot()["deployments"][0]["health"] == "healthy"


def test_all_cooling_down_without_fallback_is_503() -> None:
    a = Scripted("a", failing(EndpointError("refused", kind="transport")))
    r = router([a], cooldown_after_failures=1)
    assert isinstance(run(r, "1")[0], EndpointError)
    result, _ = run(r, "2")
    assert isinstance(result, TargetNotReadyError) and "cooling down" in result.message
    assert a.calls == 1


def test_cancel_between_attempts_stops_the_retries() -> None:
    gate = threading.Event()

    def fail_later(sink: RunSink) -> None:
        threading.Thread(target=lambda: (gate.wait(5), sink.fail(
            EndpointError("refused", kind="transport")))).start()

    a, b = Scripted("a", fail_later), Scripted("b")
    r = router([b, a], strategy="round_robin", retries=1, retry_backoff_seconds=0.5)
    sink = Sink(r.ref, wants_tokens=True, request_id="c")
    r.start_text(TextRequest("query", "hi", None, SippTextOptions(), None, None, None, True,
                             "c"), sink)
    time.sleep(0.05)
    assert (a.calls, b.calls) == (1, 0)
    gate.set()  # a fails; the retry on b waits out its 0.5 s backoff ...
    time.sleep(0.15)
    SippTextRun(sink).cancel("client_disconnected")  # ... and is cancelled meanwhile
    with pytest.raises(CancelledError):
        SippTextRun(sink).result(timeout=5)
    time.sleep(0.5)
    assert b.calls == 0
