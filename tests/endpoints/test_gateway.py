"""Gateway endpoints against a real loopback server speaking the Sipp gateway profile."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from sipp import (
    ChatMessage,
    GatewayDescriptor,
    LocalTextOptions,
    SippClient,
    SippTextOptions,
    TimeoutPolicy,
)
from sipp.errors import (
    AdmissionError,
    AuthenticationError,
    AuthorizationError,
    BlockedError,
    EndpointError,
    EngineDeadError,
    InvalidRequestError,
    QueueFullError,
    RateLimitedError,
    RemoteCallError,
    RequestTooLargeError,
    SippError,
    TargetNotFoundError,
    TargetNotReadyError,
)
from sipp.gateway import profile
from sipp.types import EndpointRef
from tests.providers.loopback import BlackholeListener, Exchange, LoopbackServer

Handler = Callable[[Exchange], None]


def finite(text: str = "hello", *, usage: bool = True) -> Handler:
    def handle(ex: Exchange) -> None:
        body = ex.json()
        if ex.path.endswith("/embed"):
            ex.send_json(200, {"id": "e1", "model": body["model"], "embedding": [0.5, -1, 2]})
            return
        reply = {"id": "r1", "model": body["model"], "text": text, "finish_reason": "length"}
        if usage:
            reply["usage"] = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
        ex.send_json(200, reply)

    return handle


def streaming(pieces: list[str], *, delay: float = 0.0, gate: threading.Event | None = None,
              done: bool = True, chunked: bool = True) -> Handler:
    def handle(ex: Exchange) -> None:
        ex.start_stream(chunked=chunked)
        for index, piece in enumerate(pieces):
            if index == len(pieces) - 1 and gate is not None:
                assert gate.wait(5), "client never saw the first batch"
            ex.write(profile.token_event(piece, index))
            time.sleep(delay)
        ex.write(profile.usage_event({"input_tokens": 1, "output_tokens": len(pieces),
                                      "total_tokens": 1 + len(pieces)}))
        if done:
            ex.write(profile.done_event("stop"))
        ex.end_stream()

    return handle


@pytest.fixture
def client() -> Iterator[SippClient]:
    with SippClient() as c:
        yield c


def add(client: SippClient, url: str, **kwargs: object) -> EndpointRef:
    return client.add("gw", GatewayDescriptor("my-target", url, **kwargs))  # type: ignore[arg-type]


def test_query_sends_profile_body_and_returns_text(client: SippClient) -> None:
    with LoopbackServer(finite("hi there")) as server:
        ref = add(client, server.url, authentication_kind="bearer", authentication_value="tok",
                  static_headers={"X-App": "demo"}, protocol_options={"tenant": "a"})
        run = client.query("Say hi", endpoint=ref,
                           options=SippTextOptions(max_tokens=8, temperature=0.5, stop=["\n"]))
        result = run.result(timeout=10)
    assert result["text"] == "hi there"
    assert result["finish_reason"] == "length"
    assert result["usage"] == {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
    assert result["endpoint"] == {"kind": "gateway", "id": "gw"}
    sent = server.requests[0]
    assert sent.path == "/v1/query"
    assert sent.headers["authorization"] == "Bearer tok"
    assert sent.headers["x-app"] == "demo"
    assert sent.json() == {"model": "my-target", "prompt": "Say hi", "max_tokens": 8,
                           "temperature": 0.5, "top_p": None, "stop": ["\n"], "stream": False,
                           "tenant": "a"}


def test_chat_and_embed_use_their_routes_and_shapes(client: SippClient) -> None:
    with LoopbackServer(finite()) as server:
        ref = add(client, server.url + "/base/", chat_route="/c", embed_route="/e/embed",
                  authentication_kind="header", authentication_header="X-Key",
                  authentication_value=lambda: "fresh")
        chat = client.chat([ChatMessage("system", "be brief"), ChatMessage("user", "hi")],
                           endpoint=ref).result(timeout=10)
        emb = client.embed("vector me", endpoint=ref).result(timeout=10)
    assert chat["text"] == "hello"
    assert emb["values"] == [0.5, -1.0, 2.0]
    assert [r.path for r in server.requests] == ["/base/c", "/base/e/embed"]
    assert server.requests[0].json()["messages"] == [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert server.requests[1].json() == {"model": "my-target", "input": "vector me"}
    assert server.requests[1].headers["x-key"] == "fresh"


def test_stream_delivers_batches_before_the_server_finishes(client: SippClient) -> None:
    gate = threading.Event()
    with LoopbackServer(streaming(["Hel", "lo", "!"], gate=gate)) as server:
        ref = add(client, server.url)
        run = client.query("x", endpoint=ref, emit_tokens=True)
        seen = []
        for batch in run.tokens():
            seen.append(batch.text)
            gate.set()  # the server sends its last token only after we saw the first
        result = run.result(timeout=10)
    assert seen == ["Hel", "lo", "!"]
    assert result["text"] == "Hello!"
    assert result["finish_reason"] == "stop"
    assert result["usage"] == {"input_tokens": 1, "output_tokens": 3, "total_tokens": 4}
    assert server.requests[0].json()["stream"] is True


def test_close_delimited_stream_is_parsed(client: SippClient) -> None:
    with LoopbackServer(streaming(["a", "b"], chunked=False)) as server:
        run = client.query("x", endpoint=add(client, server.url), emit_tokens=True)
        assert run.result(timeout=10)["text"] == "ab"


def test_async_await_and_atokens(client: SippClient) -> None:
    with LoopbackServer(streaming(["x", "y", "z"], delay=0.01)) as server:
        ref = add(client, server.url)

        async def main() -> tuple[list[str], str]:
            run = client.query("p", endpoint=ref, emit_tokens=True)
            texts = [batch.text async for batch in run.atokens()]
            return texts, (await run)["text"]

        texts, text = asyncio.run(main())
    assert texts == ["x", "y", "z"]
    assert text == "xyz"


def test_cancel_mid_stream_closes_connection_and_keeps_text(client: SippClient) -> None:
    def handle(ex: Exchange) -> None:
        ex.start_stream()
        ex.write(profile.token_event("partial", 0))
        for _ in range(200):  # keep the stream open until the client goes away
            time.sleep(0.025)
            if not ex.write(b": ping\n\n"):
                return

    with LoopbackServer(handle) as server:
        run = client.query("x", endpoint=add(client, server.url), emit_tokens=True)
        first = next(iter(run.tokens()))
        assert first.text == "partial"
        assert run.cancel() is True
        result = run.result(timeout=5)
        assert server.disconnected.wait(5), "server never saw the connection close"
    assert result["finish_reason"] == "cancelled"
    assert result["text"] == "partial"


def test_cancel_of_finite_call_does_not_wait_for_the_server(client: SippClient) -> None:
    release = threading.Event()

    def handle(ex: Exchange) -> None:
        release.wait(5)
        finite()(ex)

    with LoopbackServer(handle) as server:
        run = client.query("x", endpoint=add(client, server.url))
        time.sleep(0.2)
        started = time.monotonic()
        run.cancel()
        result = run.result(timeout=5)
        release.set()
    assert time.monotonic() - started < 1
    assert result["finish_reason"] == "cancelled"
    assert result["text"] == ""


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "invalid_request", InvalidRequestError),
        (401, "authentication", AuthenticationError),
        (403, "authorization", AuthorizationError),
        (404, "target_not_found", TargetNotFoundError),
        (404, "resolution", TargetNotFoundError),
        (413, "request_too_large", RequestTooLargeError),
        (403, "blocked", BlockedError),
        (429, "admission", AdmissionError),
        (429, "queue_full", QueueFullError),
        (503, "target_not_ready", TargetNotReadyError),
        (503, "target_disabled", TargetNotReadyError),
        (500, "engine_dead", EngineDeadError),
    ],
)
def test_profile_error_bodies_come_back_as_the_same_class(
    client: SippClient, status: int, code: str, expected: type[Exception]
) -> None:
    def handle(ex: Exchange) -> None:
        ex.send_json(status, {"error": {"code": code, "message": f"nope {code}"}})

    with LoopbackServer(handle) as server:
        run = client.query("x", endpoint=add(client, server.url))
        with pytest.raises(expected, match=f"nope {code}"):
            run.result(timeout=10)


def _codes() -> list[tuple[type[SippError], str]]:
    """Every (public class, code) a Sipp gateway can put in an error body: each class's
    default code and the variant codes it is raised with. (Private subclasses elsewhere
    share their public base's code and come back as that base.)"""
    found: list[tuple[type[SippError], str]] = []
    todo = list(SippError.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__ == "sipp.errors" and not issubclass(cls, RemoteCallError):
            found.append((cls, cls.default_code))
    return [*found, (TargetNotReadyError, "target_disabled")]


@pytest.mark.parametrize(("cls", "code"), _codes(), ids=lambda v: getattr(v, "__name__", v))
def test_every_gateway_error_code_rebuilds_its_class(cls: type[SippError], code: str) -> None:
    status, body = profile.error_response(cls("m", code=code))
    rebuilt = profile.decode_error_body(status, json.dumps(body).encode())
    assert type(rebuilt) is cls and rebuilt.code == code


def test_rate_limit_carries_retry_after(client: SippClient) -> None:
    def handle(ex: Exchange) -> None:
        ex.send_json(429, {"error": {"code": "rate_limited", "message": "slow down"}},
                     headers={"Retry-After": "7"})

    with LoopbackServer(handle) as server:
        run = client.query("x", endpoint=add(client, server.url))
        with pytest.raises(RateLimitedError) as info:
            run.result(timeout=10)
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("status", [500, 502, 413])
def test_status_without_profile_body_is_http_endpoint_error(
    client: SippClient, status: int
) -> None:
    def handle(ex: Exchange) -> None:
        ex.send_bytes(status, b"<html>upstream broke</html>", "text/html")

    with LoopbackServer(handle) as server:
        run = client.query("x", endpoint=add(client, server.url))
        with pytest.raises(EndpointError) as info:
            run.result(timeout=10)
    assert info.value.kind == "http"
    assert info.value.status == status
    assert f"HTTP {status}" in str(info.value)
    assert info.value.raw_body == "<html>upstream broke</html>"


def test_error_event_mid_stream_raises_from_iteration(client: SippClient) -> None:
    def handle(ex: Exchange) -> None:
        ex.start_stream()
        ex.write(profile.token_event("so far", 0))
        ex.write(profile.error_event(AuthorizationError("target revoked")))
        ex.end_stream()

    with LoopbackServer(handle) as server:
        run = client.query("x", endpoint=add(client, server.url), emit_tokens=True)
        texts = []
        with pytest.raises(AuthorizationError, match="target revoked"):
            for batch in run.tokens():
                texts.append(batch.text)
    assert texts == ["so far"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"event: token\ndata: {not json\n\n", "not valid JSON"),
        (b"event: mystery\ndata: {}\n\n", "unsupported SSE event: mystery"),
        (b"event: token\ndata: {\"text\": \"a\"}\n\n", "stream ended before a done event"),
        (b"event: token\ndata: \xff\xfe\n\n", "not valid UTF-8"),
    ],
)
def test_malformed_streams_fail_clearly(client: SippClient, payload: bytes, message: str) -> None:
    def handle(ex: Exchange) -> None:
        ex.start_stream()
        ex.write(payload)
        ex.end_stream()

    with LoopbackServer(handle) as server:
        run = client.query("x", endpoint=add(client, server.url), emit_tokens=True)
        with pytest.raises(EndpointError, match=message) as info:
            run.result(timeout=10)
    assert info.value.kind == "protocol"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b'{"text": "x"}', "response missing finish_reason"),
        (b'{"finish_reason": "stop"}', "response missing text"),
    ],
)
def test_invalid_finite_json_is_protocol_error(
    client: SippClient, body: bytes, message: str
) -> None:
    with LoopbackServer(lambda ex: ex.send_bytes(200, body)) as server:
        run = client.query("x", endpoint=add(client, server.url))
        with pytest.raises(EndpointError, match=message) as info:
            run.result(timeout=10)
    assert info.value.kind == "protocol"


def test_connection_reset_mid_stream_is_transport_error(client: SippClient) -> None:
    def handle(ex: Exchange) -> None:
        ex.start_stream()
        ex.write(profile.token_event("a", 0))
        time.sleep(0.05)
        ex.reset()

    with LoopbackServer(handle) as server:
        run = client.query("x", endpoint=add(client, server.url), emit_tokens=True)
        with pytest.raises(EndpointError) as info:
            run.result(timeout=10)
    assert info.value.kind in ("transport", "protocol")


def test_read_timeout(client: SippClient) -> None:
    release = threading.Event()

    def handle(ex: Exchange) -> None:
        release.wait(5)

    with LoopbackServer(handle) as server:
        ref = add(client, server.url, timeout=TimeoutPolicy(connect=1, request=0.3,
                                                             stream_read=0.3))
        started = time.monotonic()
        with pytest.raises(EndpointError, match="timed out") as info:
            client.query("x", endpoint=ref).result(timeout=10)
        with pytest.raises(EndpointError, match="timed out"):
            client.query("x", endpoint=ref, emit_tokens=True).result(timeout=10)
        release.set()
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 3


def test_request_deadline_covers_a_slow_trickling_body(client: SippClient) -> None:
    def handle(ex: Exchange) -> None:
        ex.start_stream(content_type="application/json")
        for _ in range(40):  # each piece arrives within the read timeout, the whole does not
            if not ex.write(b" "):
                return
            time.sleep(0.05)

    with LoopbackServer(handle) as server:
        ref = add(client, server.url, timeout=TimeoutPolicy(connect=1, request=0.5,
                                                             stream_read=0.4))
        started = time.monotonic()
        with pytest.raises(EndpointError, match=r"timed out after 0\.5 s"):
            client.query("x", endpoint=ref).result(timeout=10)
    assert time.monotonic() - started < 1.5


def test_connect_timeout(client: SippClient) -> None:
    hole = BlackholeListener()
    try:
        ref = add(client, hole.url, timeout_ms=300)
        with pytest.raises(EndpointError, match="connect timed out") as info:
            client.query("x", endpoint=ref).result(timeout=10)
    finally:
        hole.close()
    assert info.value.kind == "timeout"


def test_connection_refused_is_transport_error(client: SippClient) -> None:
    hole = BlackholeListener()
    url = hole.url
    hole.close()
    with pytest.raises(EndpointError) as info:
        client.query("x", endpoint=add(client, url)).result(timeout=10)
    assert info.value.kind == "transport"


def test_local_and_provider_options_are_refused_before_sending(client: SippClient) -> None:
    with LoopbackServer(finite()) as server:
        ref = add(client, server.url)
        attempts: list[Callable[[], object]] = [
            lambda: client.query("x", endpoint=ref, local=LocalTextOptions(context_key="k")),
            lambda: client.query("x", endpoint=ref, provider_options={"reasoning_effort": "low"}),
            lambda: client.query("x", endpoint=ref, endpoint_options={"json_schema": {}}),
            lambda: client.query("x", endpoint=ref, endpoint_options={"prompt": "override"}),
        ]
        for attempt in attempts:
            with pytest.raises(InvalidRequestError):
                attempt().result(timeout=10)  # type: ignore[attr-defined]
    assert server.requests == []


def test_close_fails_in_flight_runs(client: SippClient) -> None:
    release = threading.Event()
    with LoopbackServer(lambda ex: release.wait(5)) as server:
        ref = add(client, server.url)
        run = client.query("x", endpoint=ref)
        time.sleep(0.2)
        client.remove(ref)
        with pytest.raises(EndpointError, match="closed"):
            run.result(timeout=5)
        release.set()


def test_secret_not_in_repr() -> None:
    d = GatewayDescriptor("t", "https://gw.example", authentication_kind="bearer",
                          authentication_value="super-secret")
    assert "super-secret" not in repr(d)
    assert json.dumps(d.timeouts.__dict__)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((" t", "http://h"), {}, "gateway target must be a non-empty trimmed value"),
        (("t", "ftp://h"), {}, "absolute HTTP"),
        (("t", "/relative"), {}, "absolute HTTP"),
        (("t", "http://h"), {"authentication_kind": "basic"},
         "authentication kind must be none, bearer, or header"),
        (("t", "http://h"), {"authentication_kind": "bearer"}, "authentication value is required"),
        (("t", "http://h"), {"authentication_kind": "header", "authentication_value": "v"},
         "authentication headerName is required"),
        (("t", "http://h"), {"authentication_kind": "header", "authentication_value": "v",
                             "authentication_header": "bad header"}, "valid HTTP header name"),
        (("t", "http://h"), {"timeout_ms": 0}, "timeout_ms must be a positive integer"),
        (("t", "http://h"), {"timeout_ms": 5, "timeout": TimeoutPolicy()}, "either timeout_ms"),
        (("t", "http://h"), {"query_route": "v1/query"}, "query_route must be an absolute path"),
        (("t", "http://h"), {"chat_route": "/c?x=1"}, "chat_route must be an absolute path"),
        (("t", "http://h"), {"static_headers": {"X-A": "a\nb"}}, "line breaks"),
        (("t", "http://h"), {"static_headers": {"Content-Type": "x"}}, "cannot set"),
        (("t", "http://h"), {"protocol_options": {"x": float("nan")}}, "finite"),
    ],
)
def test_descriptor_validation(args: tuple[str, str], kwargs: dict[str, object],
                               message: str) -> None:
    from sipp.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=message):
        GatewayDescriptor(*args, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"timeout\.connect"):
        TimeoutPolicy(connect=0)


def test_provider_failure_of_auth_callable_fails_the_run(client: SippClient) -> None:
    def broken() -> str:
        raise RuntimeError("vault down")

    with LoopbackServer(finite()) as server:
        ref = add(client, server.url, authentication_kind="bearer", authentication_value=broken)
        with pytest.raises(EndpointError, match="authentication value provider failed") as info:
            client.query("x", endpoint=ref).result(timeout=10)
    assert info.value.kind == "configuration"
    assert server.requests == []
