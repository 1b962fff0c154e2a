"""The FastAPI and Flask examples serve the gateway profile: a ``GatewayDescriptor`` client
(and the gateway example scripts) talk to them, finite and streaming, with a provider
target (loopback OpenAI-compatible mock) and with tiny local models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sipp import ChatMessage, EndpointRef, GatewayDescriptor, SippClient, SippTextOptions
from sipp.errors import AuthenticationError, InvalidRequestError, TargetNotFoundError
from tests.examples.helpers import (
    OPENAI_KEY,
    AppServer,
    gguf_int,
    openai_compatible,
    request_bodies,
    run_example,
)
from tests.providers.loopback import LoopbackServer

APP_TOKEN = "app-secret-token"
APPS = ["fastapi_app.py", "flask_app.py"]


@pytest.fixture(scope="module", params=APPS)
def app_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    framework = "fastapi" if name.startswith("fastapi") else "flask"
    pytest.importorskip(framework, reason=f"{name} needs {framework} (pip install fastapi "
                                          "uvicorn flask)")
    return name


def gateway(client: SippClient, url: str, target: str = "default",
            token: str = APP_TOKEN) -> EndpointRef:
    return client.add(f"gw-{target}-{token}", GatewayDescriptor(
        target, url, authentication_kind="bearer", authentication_value=token, timeout_ms=30_000))


@pytest.fixture(scope="module")
def provider_app(app_name: str) -> Iterator[tuple[AppServer, LoopbackServer]]:
    with LoopbackServer(openai_compatible) as provider, AppServer(app_name, {
        "SIPP_APP_PROVIDER_URL": provider.url + "/v1", "SIPP_APP_PROVIDER_KEY": OPENAI_KEY,
        "SIPP_APP_PROVIDER_MODEL": "mock-model", "SIPP_APP_TOKEN": APP_TOKEN,
    }) as app:
        assert app.targets == ["default"]
        yield app, provider
        status = app.stop()
        assert app.stopped_gracefully(status), (status, app.lines)


def test_provider_backed_app_answers_finite_and_streaming_calls(
    provider_app: tuple[AppServer, LoopbackServer],
) -> None:
    app, provider = provider_app
    seen = len(provider.requests)
    with SippClient() as client:
        ref = gateway(client, app.url)
        query = client.query("Once", endpoint=ref, options=SippTextOptions(max_tokens=5)).result()
        assert query["text"] == "completion of Once"
        assert query["finish_reason"] == "length"
        assert query["usage"] == {"input_tokens": 4, "output_tokens": 2, "total_tokens": 6}

        run = client.chat([ChatMessage("user", "hi")], endpoint=ref, emit_tokens=True)
        assert [batch.text for batch in run.tokens()] == ["Hel", "lo"]
        assert run.result()["text"] == "Hello"
        assert run.result()["finish_reason"] == "length"

        embedding = client.embed("vector", endpoint=ref).result()
        assert embedding["values"] == [0.25, -0.5, 0.75]

    bodies = request_bodies(provider.requests[seen:])
    assert [path for path, _ in bodies] == [
        "/v1/completions", "/v1/chat/completions", "/v1/embeddings"]
    assert bodies[0][1]["max_tokens"] == 5


def test_app_errors_cross_the_wire_as_the_same_error_classes(
    provider_app: tuple[AppServer, LoopbackServer],
) -> None:
    app, provider = provider_app
    seen = len(provider.requests)
    with SippClient() as client:
        bad_token = gateway(client, app.url, token="wrong-token")
        with pytest.raises(AuthenticationError, match="missing or invalid bearer token"):
            client.query("x", endpoint=bad_token).result()
        unknown = gateway(client, app.url, target="nope")
        with pytest.raises(TargetNotFoundError, match=r"unknown target 'nope' \(known: default\)"):
            client.query("x", endpoint=unknown).result()
        extra = gateway(client, app.url)
        with pytest.raises(InvalidRequestError, match="unknown field 'seed'"):
            client.query("x", endpoint=extra, endpoint_options={"seed": 1}).result()
    assert provider.requests[seen:] == []  # refused before reaching the provider


def test_gateway_examples_run_against_the_app(
    provider_app: tuple[AppServer, LoopbackServer],
) -> None:
    app, _ = provider_app
    env = {"SIPP_GATEWAY_URL": app.url, "SIPP_GATEWAY_TARGET": "default",
           "SIPP_GATEWAY_TOKEN": APP_TOKEN}
    chat = run_example("gateway_chat.py", env=env)
    assert chat.stdout == "provider says: Explain gateway inference.\n"
    query = run_example("gateway_query.py", "Hi", env=env).stdout.splitlines()
    assert query[:2] == ["finite: 'completion of Hi' (length)", "streamed: Hello"]
    assert query[2].startswith("[2 batches, finish_reason=length")


def test_local_model_app_serves_query_chat_embed(
    app_name: str, native_backend: None, tiny_llama_path: Path, tiny_bert_path: Path,
) -> None:
    env = {"SIPP_APP_MODEL": str(tiny_llama_path), "SIPP_APP_EMBED_MODEL": str(tiny_bert_path)}
    with AppServer(app_name, env) as app, SippClient() as client:
        assert app.targets == ["default", "embed"]
        text = client.add("text", GatewayDescriptor("default", app.url, timeout_ms=30_000))
        options = SippTextOptions(max_tokens=8, temperature=0)
        finite = client.query("Hello", endpoint=text, options=options).result()
        assert finite["finish_reason"] == "length"
        assert finite["usage"] is not None and finite["usage"]["output_tokens"] == 8

        run = client.query("Hello", endpoint=text, options=options, emit_tokens=True)
        streamed = "".join(batch.text for batch in run.tokens())
        assert streamed == run.result()["text"] == finite["text"]  # greedy: same text

        chat = client.chat([ChatMessage("user", "Hi")], endpoint=text, options=options).result()
        assert chat["usage"] is not None and chat["usage"]["output_tokens"] == 8

        embed = client.add("embed", GatewayDescriptor("embed", app.url, timeout_ms=30_000))
        vector = client.embed("hello world", endpoint=embed).result()["values"]
        assert len(vector) == gguf_int(tiny_bert_path, "bert.embedding_length")
        status = app.stop()
        assert app.stopped_gracefully(status), (status, app.lines)
