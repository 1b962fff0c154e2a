"""Tool calls on a local model (the tiny random-weight Llama with the per-family templates
of ``tests/tool_templates.py``): forced calls always parse into a declared tool with
schema-valid arguments, ``auto`` gives text or a valid call, results round-trip into the
next turn, streaming equals the final response, and a fixed seed repeats the output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from build_scripts.make_test_models import LLAMA_CHAT_TEMPLATE
from sipp import (
    LocalModelDescriptor,
    LocalTextOptions,
    SamplingRuntimeConfig,
    SippClient,
    SippTextOptions,
)
from sipp.errors import InvalidRequestError, JsonSchemaError
from sipp.types import EndpointRef
from tests.tool_templates import TEMPLATES

WEATHER = {"type": "object",
           "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]},
                          "days": {"type": "integer", "minimum": 1, "maximum": 7}},
           "required": ["city", "days"]}
SEARCH = {"type": "object", "properties": {"query": {"type": "string", "maxLength": 12},
                                           "exact": {"type": "boolean"}},
          "required": ["query"]}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                      "parameters": WEATHER}},
    {"type": "function", "function": {"name": "search", "parameters": SEARCH}},
]
SCHEMAS = {"get_weather": WEATHER, "search": SEARCH}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
# a forced call is bounded (closed objects, bounded strings, whitespace and numbers), so
# generous max_tokens cost nothing: generation ends where the grammar does
GREEDY = SippTextOptions(max_tokens=1000, temperature=0.0)
# parallel calls are covered by the grammar tests: a random model may chain calls until
# max_tokens, so the end-to-end tests here ask for one call (parallel_tool_calls=False)


@pytest.fixture(scope="module")
def client(native_backend: None) -> Iterator[SippClient]:
    with SippClient() as c:
        yield c


@pytest.fixture(scope="module")
def endpoints(client: SippClient, tiny_llama_path: Path) -> dict[str, EndpointRef]:
    refs = {family: client.add(family, LocalModelDescriptor(str(tiny_llama_path),
                                                           chat_template=template))
            for family, template in TEMPLATES.items()}
    refs["generic"] = client.add("generic", LocalModelDescriptor(
        str(tiny_llama_path), chat_template=LLAMA_CHAT_TEMPLATE))
    return refs


def _valid_calls(response: Any, allowed: set[str]) -> list[dict[str, Any]]:
    calls = response["tool_calls"]
    assert calls and response["finish_reason"] == "tool_calls"
    for call in calls:
        assert call["type"] == "function" and call["id"]
        name = call["function"]["name"]
        assert name in allowed
        jsonschema.validate(json.loads(call["function"]["arguments"]), SCHEMAS[name])
    return list(calls)


@pytest.mark.parametrize("family", ["hermes", "llama3", "mistral", "code_block", "generic"])
@pytest.mark.parametrize(
    ("choice", "allowed"),
    [("required", {"get_weather", "search"}),
     ({"type": "function", "function": {"name": "search"}}, {"search"}),
     ({"type": "function", "function": {"name": "get_weather"}}, {"get_weather"})],
)
def test_forced_call_parses_into_a_declared_tool(
    client: SippClient, endpoints: dict[str, EndpointRef], family: str, choice: Any,
    allowed: set[str],
) -> None:
    for seed in (1, 2):
        response = client.chat(
            ASK, endpoint=endpoints[family], tools=TOOLS, tool_choice=choice,
            options=SippTextOptions(max_tokens=1000, temperature=1.0),
            local=LocalTextOptions(sampling=SamplingRuntimeConfig(seed=seed)),
            parallel_tool_calls=False,
        ).result()
        assert len(_valid_calls(response, allowed)) == 1
        assert response["text"] == ""
        assert response["local_stats"]["tool_call_family"] == family


@pytest.mark.parametrize("family", list(TEMPLATES))
def test_auto_gives_text_or_a_valid_call(
    client: SippClient, endpoints: dict[str, EndpointRef], family: str
) -> None:
    for seed in (1, 2, 3):
        response = client.chat(
            ASK, endpoint=endpoints[family], tools=TOOLS, parallel_tool_calls=False,
            options=SippTextOptions(max_tokens=160, temperature=1.0),
            local=LocalTextOptions(sampling=SamplingRuntimeConfig(seed=seed)),
        ).result()
        if response.get("tool_calls"):
            _valid_calls(response, {"get_weather", "search"})
        else:
            assert response["finish_reason"] in ("stop", "length") and response["text"]


@pytest.mark.parametrize("family", ["llama3", "generic"])
def test_auto_call_started_by_the_marker_is_kept_valid_by_the_lazy_grammar(
    client: SippClient, endpoints: dict[str, EndpointRef], family: str
) -> None:
    """A bias makes the model open with "{" (the JSON families' call marker); from there
    the lazy grammar holds the output to a declared call."""
    endpoint = client._endpoints[endpoints[family].id]
    model = endpoint.engine.model  # type: ignore[attr-defined]
    braces = {int(t) for text in ("{", " {") for t in
              model.tokenize(text, add_special=False, parse_special=False)[-1:]}
    sampling = SamplingRuntimeConfig(logit_bias=[(t, 50.0) for t in braces])
    response = client.chat(ASK, endpoint=endpoints[family], tools=TOOLS, options=GREEDY,
                           local=LocalTextOptions(sampling=sampling),
                           parallel_tool_calls=False).result()
    _valid_calls(response, {"get_weather", "search"})
    # without tools the same bias just writes braces
    plain = client.chat(ASK, endpoint=endpoints[family], options=SippTextOptions(
        max_tokens=8, temperature=0.0), local=LocalTextOptions(sampling=sampling)).result()
    assert "tool_calls" not in plain and plain["text"].count("{") >= 4


@pytest.mark.parametrize("family", ["hermes", "llama3", "mistral", "code_block"])
def test_streaming_equals_the_final_response(
    client: SippClient, endpoints: dict[str, EndpointRef], family: str
) -> None:
    run = client.chat(ASK, endpoint=endpoints[family], tools=TOOLS, tool_choice="required",
                      options=GREEDY, emit_tokens=True, parallel_tool_calls=False)
    batches = list(run.tokens())
    response = run.result()
    text = "".join(b.text for b in batches)
    calls: list[dict[str, Any]] = []
    for batch in batches:
        for delta in batch.tool_calls:
            if delta["index"] == len(calls):
                calls.append({"id": delta["id"], "type": delta["type"], "function": {
                    "name": delta["function"]["name"], "arguments": ""}})
            calls[delta["index"]]["function"]["arguments"] += delta["function"]["arguments"]
    assert text == response["text"]
    assert calls == response["tool_calls"]
    again = client.chat(ASK, endpoint=endpoints[family], tools=TOOLS, tool_choice="required",
                        options=GREEDY, parallel_tool_calls=False).result()
    assert [c["function"] for c in again["tool_calls"]] == \
        [c["function"] for c in response["tool_calls"]]


def test_same_seed_same_request_same_output(
    client: SippClient, endpoints: dict[str, EndpointRef]
) -> None:
    def once(seed: int) -> list[Any]:
        response = client.chat(
            ASK, endpoint=endpoints["hermes"], tools=TOOLS, tool_choice="required",
            options=SippTextOptions(max_tokens=1000, temperature=1.5), parallel_tool_calls=False,
            local=LocalTextOptions(sampling=SamplingRuntimeConfig(seed=seed))).result()
        return [c["function"] for c in response["tool_calls"]]

    assert once(7) == once(7)
    assert any(once(7) != once(s) for s in (8, 9, 10))


@pytest.mark.parametrize("family", [*TEMPLATES, "generic"])
def test_tool_result_round_trips_into_the_next_turn(
    client: SippClient, endpoints: dict[str, EndpointRef], family: str
) -> None:
    first = client.chat(ASK, endpoint=endpoints[family], tools=TOOLS, tool_choice="required",
                        options=GREEDY, parallel_tool_calls=False).result()
    call = first["tool_calls"][0]
    turns = [*ASK, {"role": "assistant", "content": None, "tool_calls": first["tool_calls"]},
             {"role": "tool", "tool_call_id": call["id"], "name": call["function"]["name"],
              "content": "sunny and 21 degrees"}]
    second = client.chat(turns, endpoint=endpoints[family], tools=TOOLS, tool_choice="none",
                         options=SippTextOptions(max_tokens=4, temperature=0.0)).result()
    assert second["finish_reason"] in ("stop", "length") and "tool_calls" not in second
    assert second["usage"] is not None and first["usage"] is not None
    # the call and its result are in the prompt now
    assert second["usage"]["input_tokens"] > first["usage"]["input_tokens"] + 10


def test_bad_requests_name_the_field(
    client: SippClient, endpoints: dict[str, EndpointRef]
) -> None:
    with pytest.raises(InvalidRequestError, match=r"tool_choice\.function\.name 'nope'"):
        client.chat(ASK, endpoint=endpoints["hermes"], tools=TOOLS,
                    tool_choice={"type": "function", "function": {"name": "nope"}})
    with pytest.raises(InvalidRequestError, match=r"drop local\.grammar"):
        client.chat(ASK, endpoint=endpoints["hermes"], tools=TOOLS,
                    local=LocalTextOptions(json_schema={"type": "object"})).result()
    bad = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer", "multipleOf": 2}}}}}]
    with pytest.raises(JsonSchemaError, match=r"'multipleOf' in tools\[0\]"):
        client.chat(ASK, endpoint=endpoints["hermes"], tools=bad).result()
