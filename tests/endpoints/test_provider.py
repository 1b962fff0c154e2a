"""Provider endpoints against loopback servers speaking OpenAI's and Anthropic's wire formats."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sipp import ChatMessage, ProviderDescriptor, SippClient, SippTextOptions, TimeoutPolicy
from sipp.errors import (
    ConfigurationError,
    InvalidRequestError,
    ProviderError,
    UnsupportedOperationError,
)
from sipp.types import EndpointRef
from tests.providers.loopback import BlackholeListener, Exchange, LoopbackServer

KEY = "sk-test-secret-123"


def sse(ex: Exchange, events: list[tuple[str | None, Any]], delay: float = 0.0,
        gate: threading.Event | None = None) -> None:
    ex.start_stream()
    for index, (name, data) in enumerate(events):
        if gate is not None and index == len(events) - 1:
            assert gate.wait(5)
        text = data if isinstance(data, str) else json.dumps(data)
        frame = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
        ex.write(frame.encode())
        time.sleep(delay)
    ex.end_stream()


def openai_handler(ex: Exchange) -> None:
    body = ex.json()
    usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    if ex.path.endswith("/embeddings"):
        ex.send_json(200, {"object": "list", "model": body["model"], "usage":
                           {"prompt_tokens": 3, "total_tokens": 3},
                           "data": [{"object": "embedding", "index": 0,
                                     "embedding": [0.25, -0.5]}]},
                     headers={"x-request-id": "req_1"})
    elif body.get("stream"):
        chat = ex.path.endswith("/chat/completions")
        chunks: list[tuple[str | None, Any]] = []
        for piece in ["Hel", "lo"]:
            choice = {"index": 0, "delta": {"content": piece}} if chat else {
                "index": 0, "text": piece}
            chunks.append((None, {"id": "c1", "model": body["model"], "choices": [
                {**choice, "finish_reason": None}]}))
        end = {"index": 0, "delta": {}} if chat else {"index": 0, "text": ""}
        chunks.append((None, {"id": "c1", "model": body["model"],
                              "choices": [{**end, "finish_reason": "length"}]}))
        chunks.append((None, {"id": "c1", "model": body["model"], "choices": [],
                              "usage": usage}))
        chunks.append((None, "[DONE]"))
        sse(ex, chunks)
    elif ex.path.endswith("/chat/completions"):
        ex.send_json(200, {"id": "chatcmpl-1", "model": body["model"], "usage": usage,
                           "choices": [{"index": 0, "finish_reason": "stop", "message":
                                        {"role": "assistant", "content": "chat reply"}}]})
    else:
        ex.send_json(200, {"id": "cmpl-1", "model": body["model"], "usage": usage,
                           "choices": [{"index": 0, "text": "completion", "finish_reason":
                                        "length"}]})


def anthropic_handler(ex: Exchange) -> None:
    body = ex.json()
    if body.get("stream"):
        sse(ex, [
            ("message_start", {"type": "message_start", "message": {
                "id": "msg_1", "model": body["model"], "content": [],
                "usage": {"input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": "Bon"}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": "jour"}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                               "usage": {"output_tokens": 2}}),
            ("message_stop", {"type": "message_stop"}),
        ])
    else:
        ex.send_json(200, {"id": "msg_1", "type": "message", "model": body["model"],
                           "stop_reason": "end_turn",
                           "content": [{"type": "text", "text": "Hi "},
                                       {"type": "tool_use", "id": "t", "name": "x", "input": {}},
                                       {"type": "text", "text": "there"}],
                           "usage": {"input_tokens": 7, "output_tokens": 3}})


@pytest.fixture
def client() -> Iterator[SippClient]:
    with SippClient() as c:
        yield c


def add_openai(client: SippClient, url: str, **kw: Any) -> EndpointRef:
    return client.add("oa", ProviderDescriptor("openai", "gpt-test", api_key=KEY,
                                               base_url=url + "/v1", **kw))


def add_anthropic(client: SippClient, url: str, **kw: Any) -> EndpointRef:
    return client.add("an", ProviderDescriptor("anthropic", "claude-test", api_key=KEY,
                                               base_url=url + "/v1", **kw))


def test_openai_query_maps_to_completions(client: SippClient) -> None:
    with LoopbackServer(openai_handler) as server:
        ref = add_openai(client, server.url)
        result = client.query("Once", endpoint=ref, options=SippTextOptions(
            max_tokens=5, temperature=0.1, top_p=0.9, stop=["."])).result(timeout=10)
    assert result["text"] == "completion"
    assert result["finish_reason"] == "length"
    assert result["usage"] == {"input_tokens": 4, "output_tokens": 2, "total_tokens": 6}
    sent = server.requests[0]
    assert sent.path == "/v1/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json() == {"model": "gpt-test", "prompt": "Once", "max_tokens": 5,
                           "temperature": 0.1, "top_p": 0.9, "stop": ["."]}


def test_openai_chat_and_embed(client: SippClient) -> None:
    with LoopbackServer(openai_handler) as server:
        ref = add_openai(client, server.url)
        chat = client.chat([ChatMessage("system", "s"), ChatMessage("user", "u")],
                           endpoint=ref, provider_options={"reasoning_effort": "low"})
        emb = client.embed("text", endpoint=ref).result(timeout=10)
        assert chat.result(timeout=10)["text"] == "chat reply"
    assert emb["values"] == [0.25, -0.5]
    assert emb["usage"] == {"input_tokens": 3, "output_tokens": 0, "total_tokens": 3}
    by_path = {r.path: r.json() for r in server.requests}
    assert by_path["/v1/chat/completions"] == {
        "model": "gpt-test", "reasoning_effort": "low",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}
    assert by_path["/v1/embeddings"] == {"model": "gpt-test", "input": "text",
                                         "encoding_format": "float"}


@pytest.mark.parametrize("operation", ["query", "chat"])
def test_openai_streams(client: SippClient, operation: str) -> None:
    with LoopbackServer(openai_handler) as server:
        ref = add_openai(client, server.url)
        if operation == "query":
            run = client.query("p", endpoint=ref, emit_tokens=True)
        else:
            run = client.chat([ChatMessage("user", "p")], endpoint=ref, emit_tokens=True)
        texts = [batch.text for batch in run.tokens()]
        result = run.result(timeout=10)
    assert texts == ["Hel", "lo"]
    assert result["text"] == "Hello"
    assert result["finish_reason"] == "length"
    assert result["usage"] == {"input_tokens": 4, "output_tokens": 2, "total_tokens": 6}
    assert server.requests[0].json()["stream"] is True


def test_openai_compatible_custom_header_and_static_headers(client: SippClient) -> None:
    with LoopbackServer(openai_handler) as server:
        ref = client.add("c", ProviderDescriptor(
            "openai_compatible", "local-model", base_url=server.url,
            auth_header_name="X-Token", auth_header_value="tok-abcdef",
            static_headers=[("X-Org", "o1")]))
        assert client.chat([ChatMessage("user", "u")], endpoint=ref).result(timeout=10)[
            "text"] == "chat reply"
    sent = server.requests[0]
    assert sent.path == "/chat/completions"
    assert sent.headers["x-token"] == "tok-abcdef"
    assert sent.headers["x-org"] == "o1"
    assert "authorization" not in sent.headers


def test_anthropic_chat_mapping(client: SippClient) -> None:
    with LoopbackServer(anthropic_handler) as server:
        ref = add_anthropic(client, server.url, version="2024-01-01")
        result = client.chat(
            [ChatMessage("system", "Be kind."), ChatMessage("system", "  "),
             ChatMessage("system", "Be brief."), ChatMessage("user", "hi"),
             ChatMessage("assistant", "hello"), ChatMessage("user", "bye")],
            endpoint=ref, options=SippTextOptions(stop=["END"], temperature=0.3),
        ).result(timeout=10)
    assert result["text"] == "Hi there"
    assert result["finish_reason"] == "stop"
    assert result["usage"] == {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    sent = server.requests[0]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2024-01-01"
    assert sent.json() == {
        "model": "claude-test", "max_tokens": 1024, "system": "Be kind.\n\nBe brief.",
        "temperature": 0.3, "stop_sequences": ["END"],
        "messages": [{"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "hello"},
                     {"role": "user", "content": "bye"}]}


def test_anthropic_query_wraps_prompt_and_streams(client: SippClient) -> None:
    with LoopbackServer(anthropic_handler) as server:
        ref = add_anthropic(client, server.url)
        run = client.query("Say hi", endpoint=ref, options=SippTextOptions(max_tokens=9),
                           emit_tokens=True)
        texts = [batch.text for batch in run.tokens()]
        result = run.result(timeout=10)
    assert texts == ["Bon", "jour"]
    assert result["text"] == "Bonjour"
    assert result["finish_reason"] == "length"
    assert result["usage"] == {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}
    body = server.requests[0].json()
    assert body["messages"] == [{"role": "user", "content": "Say hi"}]
    assert body["max_tokens"] == 9
    assert server.requests[0].headers["anthropic-version"] == "2023-06-01"


def test_anthropic_embed_is_refused_without_network(client: SippClient) -> None:
    with LoopbackServer(anthropic_handler) as server:
        ref = add_anthropic(client, server.url)
        with pytest.raises(UnsupportedOperationError, match="does not expose embeddings"):
            client.embed("x", endpoint=ref).result(timeout=10)
    assert server.requests == []


@pytest.mark.parametrize("key", ["model", "messages", "temperature", "top_p", "stream"])
def test_provider_options_cannot_override_typed_fields(client: SippClient, key: str) -> None:
    with LoopbackServer(openai_handler) as server:
        ref = add_openai(client, server.url)
        run = client.chat([ChatMessage("user", "u")], endpoint=ref, provider_options={key: 1})
        with pytest.raises(ProviderError, match=f"cannot override typed field: {key}") as info:
            run.result(timeout=10)
    assert info.value.kind == "invalid_request"
    assert server.requests == []


@pytest.mark.parametrize("key", ["model", "prompt", "max_tokens", "temperature", "top_p",
                                 "stop", "stream"])
def test_provider_options_cannot_override_typed_query_fields(
    client: SippClient, key: str
) -> None:
    with LoopbackServer(openai_handler) as server:
        ref = add_openai(client, server.url)
        run = client.query("p", endpoint=ref, provider_options={key: "x"})
        with pytest.raises(ProviderError, match=f"cannot override typed field: {key}") as info:
            run.result(timeout=10)
    assert info.value.kind == "invalid_request"
    assert server.requests == []


@pytest.mark.parametrize("key", ["model", "messages", "system", "max_tokens", "stop_sequences",
                                 "stream"])
@pytest.mark.parametrize("operation", ["query", "chat"])
def test_anthropic_provider_options_cannot_override_typed_fields(
    client: SippClient, key: str, operation: str
) -> None:
    with LoopbackServer(anthropic_handler) as server:
        ref = add_anthropic(client, server.url)
        if operation == "query":
            run = client.query("p", endpoint=ref, provider_options={key: "x"})
        else:
            run = client.chat([ChatMessage("user", "u")], endpoint=ref,
                              provider_options={key: "x"})
        with pytest.raises(ProviderError, match=f"cannot override typed field: {key}"):
            run.result(timeout=10)
    assert server.requests == []


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, {"error": {"message": "bad param", "type": "invalid_request_error"}},
         "invalid_request"),
        (401, {"error": {"message": f"Incorrect API key provided: {KEY}",
                         "code": "invalid_api_key"}}, "authentication"),
        (403, {"error": {"message": "no access"}}, "authorization"),
        (404, {"error": {"message": "no model", "code": "model_not_found"}}, "model_not_found"),
        (413, "request entity too large", "invalid_request"),
        (429, {"error": {"message": "quota", "code": "insufficient_quota"}}, "quota_exceeded"),
        (500, {"error": {"message": "boom"}}, "overloaded"),
    ],
)
def test_openai_http_errors_keep_status_kind_and_body(
    client: SippClient, status: int, body: Any, kind: str
) -> None:
    def handle(ex: Exchange) -> None:
        if isinstance(body, str):
            ex.send_bytes(status, body.encode(), "text/plain")
        else:
            ex.send_json(status, body, headers={"x-request-id": "req_9"})

    with LoopbackServer(handle) as server:
        ref = add_openai(client, server.url)
        with pytest.raises(ProviderError) as info:
            client.query("x", endpoint=ref).result(timeout=10)
    err = info.value
    assert (err.provider, err.kind, err.status) == ("openai", kind, status)
    assert KEY not in str(err) and KEY not in json.dumps(err.raw_body)
    if isinstance(body, dict):
        assert err.raw_body["error"]["message"].startswith(body["error"]["message"][:10])
        assert err.request_id == "req_9"
    else:
        assert err.raw_body == body


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "3"}, 3.0), ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5)],
)
def test_rate_limit_surfaces_retry_after(
    client: SippClient, headers: dict[str, str], expected: float
) -> None:
    def handle(ex: Exchange) -> None:
        ex.send_json(429, {"type": "error", "error": {"type": "rate_limit_error",
                                                      "message": "slow"}}, headers=headers)

    with LoopbackServer(handle) as server:
        ref = add_anthropic(client, server.url)
        with pytest.raises(ProviderError) as info:
            client.query("x", endpoint=ref).result(timeout=10)
    assert info.value.kind == "rate_limited"
    assert info.value.retry_after == expected


def test_in_stream_error_event(client: SippClient) -> None:
    def handle(ex: Exchange) -> None:
        sse(ex, [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": "a"}}),
                 ("error", {"type": "error", "error": {"type": "overloaded_error",
                                                       "message": "Overloaded"}})])

    with LoopbackServer(handle) as server:
        ref = add_anthropic(client, server.url)
        run = client.query("x", endpoint=ref, emit_tokens=True)
        with pytest.raises(ProviderError, match="Overloaded") as info:
            run.result(timeout=10)
    assert info.value.kind == "overloaded"


@pytest.mark.parametrize(
    "events",
    [
        [(None, "{broken")],
        [(None, {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "a"},
                                                       "finish_reason": None}]})],
    ],
)
def test_malformed_or_truncated_openai_stream(client: SippClient, events: Any) -> None:
    with LoopbackServer(lambda ex: sse(ex, events)) as server:
        ref = add_openai(client, server.url)
        run = client.chat([ChatMessage("user", "u")], endpoint=ref, emit_tokens=True)
        with pytest.raises(ProviderError, match="invalid response") as info:
            run.result(timeout=10)
    assert info.value.kind == "provider"


def _anthropic_delta(text: str) -> tuple[str, Any]:
    return ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "text_delta", "text": text}})


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([("content_block_delta", "{broken")], "not valid JSON"),
        ([("content_block_delta", "[1, 2]")], "must be a JSON object"),
        ([("content_block_delta", {"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta"}})], "missing text"),
        ([_anthropic_delta("a")], "message_stop"),  # the stream ends without message_stop
        ([("message_start", {"type": "message_start", "message": {
            "usage": {"input_tokens": "many"}}})], "input_tokens"),
    ],
)
def test_malformed_anthropic_stream(client: SippClient, events: Any, message: str) -> None:
    with LoopbackServer(lambda ex: sse(ex, events)) as server:
        ref = add_anthropic(client, server.url)
        run = client.query("x", endpoint=ref, emit_tokens=True)
        with pytest.raises(ProviderError, match="invalid response") as info:
            run.result(timeout=10)
    assert message in str(info.value)
    assert info.value.kind == "provider"


def _reset_after_first_event(first: bytes) -> Callable[[Exchange], None]:
    def handle(ex: Exchange) -> None:
        ex.start_stream()
        ex.write(first)
        time.sleep(0.1)
        ex.reset()

    return handle


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_connection_reset_mid_stream(client: SippClient, provider: str) -> None:
    if provider == "openai":
        first = b'data: {"id":"c","model":"m","choices":[{"index":0,"text":"par"}]}\n\n'
        add = add_openai
    else:
        first = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                 b'"delta":{"type":"text_delta","text":"par"}}\n\n')
        add = add_anthropic
    with LoopbackServer(_reset_after_first_event(first)) as server:
        ref = add(client, server.url)
        run = client.query("x", endpoint=ref, emit_tokens=True)
        batches: list[str] = []
        started = time.monotonic()
        with pytest.raises(ProviderError, match="connection") as info:
            for batch in run.tokens():
                batches.append(batch.text)
        assert time.monotonic() - started < 5
        with pytest.raises(ProviderError):
            run.result(timeout=5)
    assert batches == ["par"]
    assert (info.value.provider, info.value.kind) == (provider, "transport")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_stream_read_timeout(client: SippClient, provider: str) -> None:
    release = threading.Event()

    def handle(ex: Exchange) -> None:
        ex.start_stream()
        if provider == "openai":
            ex.write(b'data: {"id":"c","model":"m","choices":[{"index":0,"text":"a"}]}\n\n')
        else:
            ex.write(b'event: ping\ndata: {"type":"ping"}\n\n')
        release.wait(5)  # then silence: longer than stream_read

    with LoopbackServer(handle) as server:
        policy = TimeoutPolicy(connect=2, request=30, stream_read=0.3)
        ref = (add_openai if provider == "openai" else add_anthropic)(
            client, server.url, timeout=policy)
        started = time.monotonic()
        run = client.query("x", endpoint=ref, emit_tokens=True)
        with pytest.raises(ProviderError, match="read timed out") as info:
            run.result(timeout=10)
        elapsed = time.monotonic() - started
        release.set()
    assert info.value.kind == "timeout"
    assert 0.25 < elapsed < 5  # the read deadline, not the 30 s request deadline


def test_correlation_header_is_off_by_default_and_carries_the_request_id(
    client: SippClient,
) -> None:
    from sipp.endpoints.provider import ProviderEndpoint

    with LoopbackServer(openai_handler) as server:
        ref = add_openai(client, server.url)
        client.query("x", endpoint=ref, request_id="rid-1").result(timeout=10)
        endpoint = client.endpoint(ref)
        assert isinstance(endpoint, ProviderEndpoint)
        endpoint.set_correlation_header("X-Client-Request-Id")
        client.query("x", endpoint=ref, request_id="rid-2").result(timeout=10)
        run = client.chat([ChatMessage("user", "u")], endpoint=ref, request_id="rid-3",
                          emit_tokens=True)
        run.result(timeout=10)
        client.embed("x", endpoint=ref, request_id="rid-4").result(timeout=10)
        endpoint.set_correlation_header(None)
        client.query("x", endpoint=ref, request_id="rid-5").result(timeout=10)
    sent = [r.headers.get("x-client-request-id") for r in server.requests]
    assert sent == [None, "rid-2", "rid-3", "rid-4", None]


@pytest.mark.parametrize("name", ["Authorization", "content-type", "bad header", ""])
def test_correlation_header_cannot_replace_transport_or_auth_headers(
    client: SippClient, name: str
) -> None:
    from sipp.endpoints.provider import ProviderEndpoint

    ref = add_openai(client, "http://127.0.0.1:9")
    endpoint = client.endpoint(ref)
    assert isinstance(endpoint, ProviderEndpoint)
    with pytest.raises(ConfigurationError, match="correlation_header"):
        endpoint.set_correlation_header(name)
    assert endpoint.correlation_header is None


def test_invalid_json_finite_response(client: SippClient) -> None:
    with LoopbackServer(lambda ex: ex.send_bytes(200, b"<html>")) as server:
        ref = add_openai(client, server.url)
        with pytest.raises(ProviderError, match="not valid JSON"):
            client.query("x", endpoint=ref).result(timeout=10)


def test_cancel_mid_stream_closes_connection(client: SippClient) -> None:
    def handle(ex: Exchange) -> None:
        ex.start_stream()
        ex.write(b'data: {"id":"c","model":"m","choices":[{"index":0,"text":"par"}]}\n\n')
        for _ in range(200):
            time.sleep(0.025)
            if not ex.write(b": keep-alive\n\n"):
                return

    with LoopbackServer(handle) as server:
        ref = add_openai(client, server.url)
        run = client.query("x", endpoint=ref, emit_tokens=True)
        assert next(iter(run.tokens())).text == "par"
        run.cancel()
        result = run.result(timeout=5)
        assert server.disconnected.wait(5)
    assert (result["text"], result["finish_reason"]) == ("par", "cancelled")


def test_timeouts(client: SippClient) -> None:
    release = threading.Event()
    with LoopbackServer(lambda ex: release.wait(5)) as server:
        ref = add_openai(client, server.url, timeout_ms=300)
        with pytest.raises(ProviderError, match="timed out") as info:
            client.query("x", endpoint=ref).result(timeout=10)
        release.set()
    assert info.value.kind == "timeout"
    hole = BlackholeListener()
    try:
        ref = client.add("c", ProviderDescriptor(
            "openai_compatible", "m", base_url=hole.url, api_key="k",
            timeout=TimeoutPolicy(connect=0.3)))
        with pytest.raises(ProviderError, match="connect timed out") as info:
            client.query("x", endpoint=ref).result(timeout=10)
    finally:
        hole.close()
    assert info.value.kind == "timeout"


def test_provider_rejects_endpoint_and_local_options(client: SippClient) -> None:
    with LoopbackServer(openai_handler) as server:
        ref = add_openai(client, server.url)
        attempts: list[Callable[[], Any]] = [
            lambda: client.query("x", endpoint=ref, endpoint_options={"a": 1}),
        ]
        for attempt in attempts:
            with pytest.raises(InvalidRequestError):
                attempt().result(timeout=10)
    assert server.requests == []


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("bogus", "m"), {"api_key": "k"}, "provider must be one of"),
        (("openai", " m"), {"api_key": "k"}, "model must be a non-empty trimmed"),
        (("openai", "m"), {}, "api_key is required"),
        (("openai", "m"), {"api_key": "k", "version": "v"}, "version is not valid for OpenAI"),
        (("anthropic", "m"), {"api_key": "k", "static_headers": {"a": "b"}},
         "static_headers is not valid for Anthropic"),
        (("openai_compatible", "m"), {"api_key": "k"}, "base_url is required"),
        (("openai_compatible", "m"), {"base_url": "https://x.example"},
         "requires either api_key or auth_header_name"),
        (("openai_compatible", "m"), {"base_url": "https://x.example", "api_key": "k",
                                      "auth_header_name": "X", "auth_header_value": "v"},
         "requires either api_key or auth_header_name"),
        (("openai", "m"), {"api_key": "k", "base_url": "http://api.example.com/v1"},
         "must use https unless the host is loopback"),
        (("openai", "m"), {"api_key": "k", "base_url": "https://u:p@x.example"},
         "must not contain user credentials"),
        (("openai", "m"), {"api_key": "k", "base_url": "https://x.example/v1?a=1"},
         "must not contain a query"),
        (("openai", "m"), {"api_key": "k e"}, "must not contain whitespace"),
        (("openai", "m"), {"api_key": "k", "timeout_ms": 0}, "timeout_ms must be a positive"),
    ],
)
def test_descriptor_validation(args: tuple[str, str], kwargs: dict[str, Any],
                               message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ProviderDescriptor(*args, **kwargs)


def test_descriptor_defaults_and_secret_free_repr() -> None:
    d = ProviderDescriptor("openai-compatible", "m", base_url="http://localhost:8000/v1/",
                           api_key=KEY)
    assert d.provider == "openai_compatible"
    assert d.base_url == "http://localhost:8000/v1"
    assert d.timeouts == TimeoutPolicy(connect=10, request=60, stream_read=60)
    assert KEY not in repr(d)


def test_stream_end_arriving_late_keeps_the_connection(client: SippClient) -> None:
    """The chunked end of a stream often arrives after its final event: the run answers
    at once, and the connection still goes back to the pool for the next request."""
    release = threading.Event()

    def handle(ex: Exchange) -> None:
        ex.start_stream()
        ex.write(b'data: {"id":"c","model":"m","choices":[{"index":0,"text":"hi",'
                 b'"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
        release.wait(5)
        ex.end_stream()

    with LoopbackServer(handle) as server:
        ref = add_openai(client, server.url)
        for _ in range(2):
            release.clear()
            run = client.query("x", endpoint=ref, emit_tokens=True)
            assert run.result(timeout=5)["text"] == "hi"  # before the stream's end came
            release.set()
            time.sleep(0.2)  # the end arrives; the connection is released
        assert not server.errors
    assert len(server.requests) == 2
    assert server.requests[0].peer == server.requests[1].peer  # one connection for both


def test_stream_that_goes_on_after_its_final_event_is_closed(client: SippClient) -> None:
    def handle(ex: Exchange) -> None:
        ex.start_stream()
        ex.write(b'data: {"id":"c","model":"m","choices":[{"index":0,"text":"hi",'
                 b'"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
        for _ in range(400):
            time.sleep(0.01)
            if not ex.write(b": trailing\n\n"):
                return

    with LoopbackServer(handle) as server:
        ref = add_openai(client, server.url)
        started = time.monotonic()
        assert client.query("x", endpoint=ref, emit_tokens=True).result(timeout=5)[
            "text"] == "hi"
        assert time.monotonic() - started < 1.0
        assert server.disconnected.wait(4)  # given up on after a short wait, not kept
