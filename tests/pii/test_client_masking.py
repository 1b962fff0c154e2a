"""PII masking through SippClient: a provider behind a loopback upstream that echoes what it
received never sees an original value, and the caller gets the originals back in finite
and streamed answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from sipp import ChatMessage, PiiBlockedError, PiiPolicy, ProviderDescriptor, SippClient
from sipp.types import EndpointRef
from tests.pii.samples import COUNTRIES, SAMPLES
from tests.providers.loopback import Exchange, LoopbackServer

POLICY = PiiPolicy(countries=COUNTRIES)
TEXT = "Contact sheet: " + "; ".join(f"{entity}={value}" for entity, value in SAMPLES)
VALUES = [value for _, value in SAMPLES]


def _sse(ex: Exchange, frames: list[Any]) -> None:
    ex.start_stream()
    for frame in frames:
        data = frame if isinstance(frame, str) else json.dumps(frame)
        ex.write(f"data: {data}\n\n".encode())
    ex.end_stream()


def echo_openai(ex: Exchange) -> None:
    """Answers with what it received: the last message, the prompt or the input."""
    body = ex.json()
    if ex.path.endswith("/embeddings"):
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        ex.send_json(200, {"object": "list", "model": body["model"], "data": [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0]}
            for i, t in enumerate(inputs)]})
        return
    chat = ex.path.endswith("/chat/completions")
    text = body["messages"][-1]["content"] if chat else body["prompt"]
    if body.get("stream"):
        size = int(ex.headers.get("x-piece-size", "3"))
        frames: list[Any] = []
        for start in range(0, len(text), size):
            piece = text[start:start + size]
            choice = {"index": 0, "delta": {"content": piece}} if chat else {
                "index": 0, "text": piece}
            frames.append({"id": "c", "model": body["model"],
                           "choices": [{**choice, "finish_reason": None}]})
        end = {"index": 0, "delta": {}} if chat else {"index": 0, "text": ""}
        frames += [{"id": "c", "model": body["model"],
                    "choices": [{**end, "finish_reason": "stop"}]}, "[DONE]"]
        _sse(ex, frames)
    elif chat:
        ex.send_json(200, {"id": "c", "model": body["model"], "choices": [
            {"index": 0, "finish_reason": "stop",
             "message": {"role": "assistant", "content": text}}]})
    else:
        ex.send_json(200, {"id": "c", "model": body["model"], "choices": [
            {"index": 0, "finish_reason": "stop", "text": text}]})


@pytest.fixture
def upstream() -> Iterator[LoopbackServer]:
    with LoopbackServer(echo_openai) as server:
        yield server


def _provider(client: SippClient, server: LoopbackServer, piece: int = 3,
              **kw: Any) -> EndpointRef:
    return client.add("oa", ProviderDescriptor(
        "openai_compatible", "gpt-test", api_key="k", base_url=server.url + "/v1",
        static_headers={"x-piece-size": str(piece)}), **kw)


def _assert_never_sent(server: LoopbackServer) -> None:
    assert server.requests
    for exchange in server.requests:
        body = exchange.body.decode()
        for value in VALUES:
            assert value not in body and json.dumps(value)[1:-1] not in body, value


@pytest.mark.parametrize("operation", ["query", "chat"])
def test_finite_answers_are_restored(upstream: LoopbackServer, operation: str) -> None:
    with SippClient(pii=POLICY) as client:
        ref = _provider(client, upstream)
        if operation == "chat":
            run = client.chat([ChatMessage("system", "Be brief."), ChatMessage("user", TEXT)],
                              endpoint=ref)
        else:
            run = client.query(TEXT, endpoint=ref)
        assert run.result(10)["text"] == TEXT
    _assert_never_sent(upstream)
    sent = upstream.requests[0].json()
    masked = sent["messages"][-1]["content"] if operation == "chat" else sent["prompt"]
    assert "<EMAIL_1>" in masked and "<IBAN_3>" in masked and "<NATIONAL_ID_5>" in masked


@pytest.mark.parametrize("piece", [1, 2, 3, 5, 8, 13])
def test_streamed_answers_are_restored(upstream: LoopbackServer, piece: int) -> None:
    with SippClient(pii=POLICY) as client:
        ref = _provider(client, upstream, piece)
        run = client.chat([ChatMessage("user", TEXT)], endpoint=ref, emit_tokens=True)
        streamed = "".join(batch.text for batch in run.tokens())
        assert run.result(10)["text"] == TEXT
    assert streamed == TEXT
    _assert_never_sent(upstream)


def test_embeddings_get_masked_inputs(upstream: LoopbackServer) -> None:
    with SippClient(pii=POLICY) as client:
        ref = _provider(client, upstream)
        client.embed(["mail a@example.com", TEXT], endpoint=ref).result(10)
    _assert_never_sent(upstream)
    assert {r.json()["input"] for r in upstream.requests} >= {"mail <EMAIL_1>"}


def test_block_mode_refuses_before_sending(upstream: LoopbackServer) -> None:
    with SippClient(pii=PiiPolicy(mode="block")) as client:
        ref = _provider(client, upstream)
        with pytest.raises(PiiBlockedError, match="contains EMAIL, IP_ADDRESS") as info:
            client.chat([ChatMessage("user", "a@example.com from 10.0.0.1")], endpoint=ref)
        assert "a@example.com" not in str(info.value)
        assert client.query("nothing personal", endpoint=ref).result(10)["text"] == (
            "nothing personal")
    assert len(upstream.requests) == 1


def test_policy_per_endpoint_overrides_the_client(upstream: LoopbackServer) -> None:
    with SippClient(pii=POLICY) as client:
        ref = _provider(client, upstream, pii=PiiPolicy(mode="off"))
        client.query("a@example.com", endpoint=ref).result(10)
    assert upstream.requests[0].json()["prompt"] == "a@example.com"


def test_documents_reach_the_provider_as_a_masked_system_block(
    upstream: LoopbackServer,
) -> None:
    documents = [{"id": "kb-1", "text": "Write to help@example.com.", "title": "Support"}]
    with SippClient(pii=POLICY) as client:
        ref = _provider(client, upstream)
        client.chat([ChatMessage("user", "Who do I write to?")], endpoint=ref,
                    documents=documents).result(10)
    system = upstream.requests[0].json()["messages"][0]
    assert system["role"] == "system"
    assert '<document id="kb-1" title="Support">\nWrite to <EMAIL_1>.\n</document>' in (
        system["content"])
