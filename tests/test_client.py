"""SippClient registry and dispatch, with fake endpoints (no model, no network)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from sipp.client import SippClient
from sipp.descriptors import ProviderDescriptor
from sipp.endpoints.base import Capability, Endpoint, Operation
from sipp.endpoints.gateway import GatewayEndpoint
from sipp.endpoints.kinds import EndpointEntry
from sipp.endpoints.local import LocalEndpoint
from sipp.endpoints.provider import ProviderEndpoint
from sipp.errors import (
    AmbiguousEndpointError,
    ConfigurationError,
    EndpointNotFoundError,
    InvalidRequestError,
    QueueFullError,
    UnsupportedOperationError,
)
from sipp.requests import EmbedRequest, TextRequest
from sipp.runs import RunSink
from sipp.types import (
    ChatMessage,
    EndpointRef,
    LocalEmbedOptions,
    LocalTextOptions,
    SippTextOptions,
)


@dataclass
class FakeLocal:
    caps: tuple[str, ...] = ("query", "chat", "embed")
    fail_with: Exception | None = None


class FakeGateway(FakeLocal):
    pass


class FakeProvider(FakeLocal):
    pass


class FakeEndpoint(Endpoint):
    instances: ClassVar[list[FakeEndpoint]] = []

    def __init__(self, ref: EndpointRef, descriptor: FakeLocal) -> None:
        super().__init__(ref)
        self.kind = ref.kind
        self.descriptor = descriptor
        self.closed = False
        self.requests: list[Any] = []
        FakeEndpoint.instances.append(self)

    def capability(self, operation: Operation) -> Capability:
        if self.ref.kind != "local":
            return "unknown"
        return "supported" if operation in self.descriptor.caps else "unsupported"

    def start_text(self, request: TextRequest, sink: RunSink) -> None:
        if self.descriptor.fail_with is not None:
            raise self.descriptor.fail_with
        self.requests.append(request)
        text = request.prompt if request.prompt is not None else request.messages[-1].content  # type: ignore[index]
        sink.push(text, 1)
        sink.complete({"text": text, "finish_reason": "stop", "usage": None, "local_stats": None})

    def start_embed(self, request: EmbedRequest, sink: RunSink) -> None:
        self.requests.append(request)
        sink.complete({"values": [float(len(request.input))], "usage": {"input_tokens": 1,
                       "output_tokens": 0, "total_tokens": 1}, "local_stats": None,
                       "pooling": "mean", "normalized": True})

    def close(self) -> None:
        self.closed = True


class FakeLocalEndpoint(FakeEndpoint):
    accepts = LocalEndpoint.accepts


class FakeGatewayEndpoint(FakeEndpoint):
    accepts = GatewayEndpoint.accepts
    refused_option_keys = GatewayEndpoint.refused_option_keys


class FakeProviderEndpoint(FakeEndpoint):
    accepts = ProviderEndpoint.accepts


# The client's descriptor table, with fakes that take the real endpoints' option groups.
FAKE_KINDS = {
    FakeLocal: EndpointEntry("local", FakeLocalEndpoint),
    FakeGateway: EndpointEntry("gateway", FakeGatewayEndpoint),
    FakeProvider: EndpointEntry("provider", FakeProviderEndpoint),
}


@pytest.fixture()
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[SippClient]:
    FakeEndpoint.instances = []
    monkeypatch.setattr(SippClient, "endpoint_kinds", FAKE_KINDS)
    with SippClient() as c:
        yield c


def test_add_returns_ref_and_query_runs(client: SippClient) -> None:
    ref = client.add("m", FakeLocal())
    assert ref == EndpointRef("local", "m")
    run = client.query("hello", endpoint=ref, emit_tokens=True)
    assert run.result()["text"] == "hello"
    assert [b.text for b in run.tokens()] == ["hello"]


def test_reusing_an_id_replaces_and_closes_the_old_endpoint(client: SippClient) -> None:
    client.add("m", FakeLocal())
    first = FakeEndpoint.instances[0]
    client.add("m", FakeGateway())
    assert first.closed
    assert client.endpoints() == [EndpointRef("gateway", "m")]
    with pytest.raises(EndpointNotFoundError):
        client.query("x", endpoint=EndpointRef("local", "m"))


def test_register_takes_an_endpoint_built_elsewhere(client: SippClient) -> None:
    built = FakeProviderEndpoint(EndpointRef("provider", "routed"), FakeProvider())
    ref = client.register(built)
    assert ref == EndpointRef("provider", "routed") and client.endpoint(ref) is built
    assert client.query("hi", endpoint=ref).result()["text"] == "hi"
    client.register(FakeProviderEndpoint(EndpointRef("provider", "routed"), FakeProvider()))
    assert built.closed  # replaced, like add
    with pytest.raises(ConfigurationError, match="endpoint must be an Endpoint"):
        client.register(FakeProvider())  # type: ignore[arg-type]


def test_close_closes_every_endpoint_and_refuses_new_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SippClient, "endpoint_kinds", FAKE_KINDS)
    FakeEndpoint.instances = []
    client = SippClient()
    client.add("a", FakeLocal())
    client.add("b", FakeProvider())
    client.close()
    assert all(e.closed for e in FakeEndpoint.instances)
    with pytest.raises(ConfigurationError, match="closed"):
        client.add("c", FakeLocal())


def test_unclosed_client_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SippClient, "endpoint_kinds", FAKE_KINDS)
    client = SippClient()
    client.add("a", FakeLocal())
    with pytest.warns(ResourceWarning, match="not closed"):
        del client
        gc.collect()


def test_bad_ids_and_descriptors_are_rejected(client: SippClient) -> None:
    with pytest.raises(ConfigurationError, match="non-empty"):
        client.add("", FakeLocal())
    with pytest.raises(ConfigurationError, match="whitespace"):
        client.add(" m", FakeLocal())
    with pytest.raises(ConfigurationError, match="descriptor must be"):
        client.add("m", object())


def test_descriptors_dispatch_by_class_including_subclasses() -> None:
    class MyProvider(ProviderDescriptor):
        pass

    with SippClient() as client:
        ref = client.add("p", MyProvider("openai", "gpt-test", api_key="sk-test",
                                         base_url="http://127.0.0.1:9/v1"))
        assert ref == EndpointRef("provider", "p")
        assert isinstance(client.endpoint(ref), ProviderEndpoint)


def test_implicit_endpoint_only_when_exactly_one_local_supports_it(client: SippClient) -> None:
    with pytest.raises(AmbiguousEndpointError, match="no supported endpoint for query"):
        client.query("x")
    client.add("remote", FakeGateway())
    with pytest.raises(AmbiguousEndpointError, match="no supported endpoint"):
        client.query("x")  # gateway endpoints are never chosen implicitly
    client.add("text", FakeLocal(caps=("query", "chat")))
    client.add("vec", FakeLocal(caps=("embed",)))
    assert client.query("x").result()["endpoint"] == {"kind": "local", "id": "text"}
    assert client.embed("abc").result()["endpoint"] == {"kind": "local", "id": "vec"}
    client.add("text2", FakeLocal(caps=("query",)))
    with pytest.raises(AmbiguousEndpointError, match="text, text2"):
        client.query("x")


def test_unsupported_operation_is_refused(client: SippClient) -> None:
    ref = client.add("vec", FakeLocal(caps=("embed",)))
    with pytest.raises(UnsupportedOperationError, match="unsupported operation chat"):
        client.chat([ChatMessage("user", "hi")], endpoint=ref)


def test_local_only_options_never_reach_remote_endpoints(client: SippClient) -> None:
    gateway = client.add("g", FakeGateway())
    provider = client.add("p", FakeProvider())
    local = client.add("l", FakeLocal())
    with pytest.raises(InvalidRequestError, match="local text options are not valid for gateway"):
        client.query("x", endpoint=gateway, local=LocalTextOptions(grammar="root ::= \"a\""))
    with pytest.raises(InvalidRequestError, match="local embed options are not valid for provider"):
        client.embed("x", endpoint=provider, local=LocalEmbedOptions(normalize=False))
    with pytest.raises(InvalidRequestError, match="local-only field: context_key"):
        client.query("x", endpoint=gateway, endpoint_options={"context_key": "k"})
    with pytest.raises(InvalidRequestError, match="provider_options are not valid for gateway"):
        client.query("x", endpoint=gateway, provider_options={"a": 1})
    with pytest.raises(InvalidRequestError, match="endpoint_options are not valid for provider"):
        client.query("x", endpoint=provider, endpoint_options={"a": 1})
    with pytest.raises(InvalidRequestError, match="endpoint_options are not valid for local"):
        client.query("x", endpoint=local, endpoint_options={"a": 1})
    for endpoint in FakeEndpoint.instances:
        assert endpoint.requests == []  # nothing was sent anywhere
    # an empty LocalTextOptions is not "local-only options"
    assert client.query("ok", endpoint=gateway, local=LocalTextOptions()).result()["text"] == "ok"


def test_json_options_are_checked_and_copied(client: SippClient) -> None:
    gateway = client.add("g", FakeGateway())
    with pytest.raises(InvalidRequestError, match=r"endpoint_options.a must be a finite"):
        client.query("x", endpoint=gateway, endpoint_options={"a": float("nan")})
    with pytest.raises(InvalidRequestError, match="only JSON values"):
        client.query("x", endpoint=gateway, endpoint_options={"a": object()})
    options = {"nested": {"list": [1, 2]}}
    client.query("x", endpoint=gateway, endpoint_options=options).result()
    sent = FakeEndpoint.instances[0].requests[0].endpoint_options
    assert sent == options and sent is not options


def test_chat_messages_validation(client: SippClient) -> None:
    ref = client.add("l", FakeLocal())
    with pytest.raises(InvalidRequestError, match="must not be empty"):
        client.chat([], endpoint=ref)
    with pytest.raises(InvalidRequestError, match=r"messages\[1\]: chat role must be one of"):
        client.chat([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}],
                    endpoint=ref)
    run = client.chat([{"role": "user", "content": "dict form"}], endpoint=ref)
    assert run.result()["text"] == "dict form"


def test_option_validation_names_the_field() -> None:
    with pytest.raises(InvalidRequestError, match="max_tokens must be a positive integer"):
        SippTextOptions(max_tokens=0)
    with pytest.raises(InvalidRequestError, match="temperature must be finite"):
        SippTextOptions(temperature=float("inf"))
    with pytest.raises(InvalidRequestError, match=r"top_p must be in \[0.0, 1.0\]"):
        SippTextOptions(top_p=1.5)
    with pytest.raises(InvalidRequestError, match="stop must be a list of strings"):
        SippTextOptions(stop="END")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="json_schema is not valid JSON"):
        LocalTextOptions(json_schema="{nope")


def test_errors_raised_by_an_endpoint_fail_the_run_at_once(client: SippClient) -> None:
    ref = client.add("l", FakeLocal(fail_with=QueueFullError("queue is full (8)")))
    run = client.query("x", endpoint=ref)
    assert run.done()
    with pytest.raises(QueueFullError, match="queue is full"):
        run.result()


def test_embed_list_returns_one_vector_per_input_in_order(client: SippClient) -> None:
    ref = client.add("vec", FakeLocal(caps=("embed",)))
    response = client.embed(["a", "bbb", "cc"], endpoint=ref).result()
    assert response["values"] == [[1.0], [3.0], [2.0]]
    assert response["usage"] == {"input_tokens": 3, "output_tokens": 0, "total_tokens": 3}
    with pytest.raises(InvalidRequestError, match=r"input\[1\] must be a string"):
        client.embed(["a", 2], endpoint=ref)  # type: ignore[list-item]
