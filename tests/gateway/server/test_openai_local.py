"""The OpenAI-compatible routes on a real local target (tiny random-weight Llama, Hermes
template): response_format and tools forced by grammars, logprobs equal to the engine's
``n_probs``, ``n`` choices sharing one prompt prefill, an absent ``max_tokens`` running to
a full window, and schema errors as 400s naming the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from sipp import (
    LocalTextOptions,
    SamplingRuntimeConfig,
    SippClient,
    SippTextOptions,
)
from sipp.types import EndpointRef
from tests.gateway.server.conftest import BASE_CONFIG, ENV, RunningGateway, auth
from tests.tool_templates import HERMES_TEMPLATE

SCHEMA = {"type": "object", "properties": {
    "city": {"type": "string", "enum": ["Paris", "Oslo"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["city", "days"]}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
REF = EndpointRef.local("tiny")


@pytest.fixture(scope="module")
def served(tiny_llama_path: Path, native_backend: None
           ) -> Iterator[tuple[RunningGateway, SippClient]]:
    client = SippClient()
    config = {**BASE_CONFIG, "max_request_bytes": 1 << 20,
              "tokens": [{"env": "TOKEN_ALL", "caller": "all", "targets": []}], "targets": [
        {"name": "tiny", "type": "local", "model": str(tiny_llama_path),
         "chat_template": HERMES_TEMPLATE,
         "runtime": {"context": {"n_ctx": 2048, "n_parallel": 4},
                     "observability": {"runtime_metrics": True}}}]}
    gateway = RunningGateway(config, ENV, client)
    try:
        yield gateway, client
    finally:
        gateway.stop()
        client.close()


def _post(gateway: RunningGateway, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(gateway.url + "/v1" + path, headers=auth(), timeout=120,
                         json={"model": "tiny", **body})


def test_response_format_json_schema_on_chat_and_completions(
    served: tuple[RunningGateway, SippClient]
) -> None:
    gateway, _ = served
    fmt = {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA,
                                                  "strict": True}}
    chat = _post(gateway, "/chat/completions", {"messages": ASK, "response_format": fmt})
    assert chat.status_code == 200, chat.text
    jsonschema.validate(json.loads(chat.json()["choices"][0]["message"]["content"]), SCHEMA)
    text = _post(gateway, "/completions", {"prompt": "Weather:", "response_format": fmt})
    jsonschema.validate(json.loads(text.json()["choices"][0]["text"]), SCHEMA)
    # objects are closed: no invented keys, whatever strict says
    loose = {"type": "json_schema", "json_schema": {"name": "w", "strict": False, "schema": {
        "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}
    out = _post(gateway, "/chat/completions", {"messages": ASK, "response_format": loose})
    assert list(json.loads(out.json()["choices"][0]["message"]["content"])) == ["a"]


def test_schema_errors_are_400s_naming_field_keyword_and_pointer(
    served: tuple[RunningGateway, SippClient]
) -> None:
    gateway, _ = served
    bad = {"type": "object", "properties": {"x": {"type": "string", "not": {"const": "y"}}}}
    r = _post(gateway, "/chat/completions", {"messages": ASK, "response_format": {
        "type": "json_schema", "json_schema": {"name": "b", "schema": bad}}})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "response_format.json_schema.schema"
    assert "'not'" in error["message"] and "#/properties/x" in error["message"]
    tools = [{"type": "function", "function": {"name": "f", "parameters": bad}}]
    r = _post(gateway, "/chat/completions", {"messages": ASK, "tools": tools})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "tools[0].function.parameters"
    r = _post(gateway, "/chat/completions", {"messages": ASK, "tools": [
        {"type": "function", "function": {"name": "bad name"}}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools[0].function.name"


def test_tool_call_and_its_result_round_trip(served: tuple[RunningGateway, SippClient]) -> None:
    gateway, _ = served
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
    r = _post(gateway, "/chat/completions", {"messages": ASK, "tools": tools,
                                             "tool_choice": "required",
                                             "parallel_tool_calls": False})
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    jsonschema.validate(json.loads(call["function"]["arguments"]), SCHEMA)
    turns = [*ASK, choice["message"], {"role": "tool", "tool_call_id": call["id"],
                                       "content": "sunny"}]
    r = _post(gateway, "/chat/completions", {"messages": turns, "tools": tools,
                                             "max_tokens": 3})
    assert r.status_code == 200
    assert r.json()["usage"]["prompt_tokens"] > 0


def test_logprobs_equal_the_engines_n_probs(served: tuple[RunningGateway, SippClient]) -> None:
    gateway, client = served
    r = _post(gateway, "/chat/completions", {"messages": ASK, "max_tokens": 6,
                                             "temperature": 0, "logprobs": True,
                                             "top_logprobs": 3})
    content = r.json()["choices"][0]["logprobs"]["content"]
    direct = client.chat(ASK, endpoint=REF, options=SippTextOptions(max_tokens=6,
                                                                    temperature=0),
                         local=LocalTextOptions(sampling=SamplingRuntimeConfig(n_probs=3))
                         ).result()
    expected = direct["logprobs"]
    assert [e["token"] for e in content] == [e["text"] for e in expected]
    assert [e["logprob"] for e in content] == [e["logprob"] for e in expected]
    assert [[t["logprob"] for t in e["top_logprobs"]] for e in content] == \
        [[t["logprob"] for t in e["top_logprobs"]] for e in expected]
    # streamed: the same entries, with the last chunk
    streamed = []
    with requests.post(gateway.url + "/v1/chat/completions", headers=auth(), timeout=120,
                       stream=True, json={"model": "tiny", "messages": ASK, "max_tokens": 6,
                                          "temperature": 0, "logprobs": True,
                                          "top_logprobs": 3, "stream": True}) as stream:
        for line in stream.iter_lines():
            if line.startswith(b"data: {"):
                for item in json.loads(line[6:])["choices"]:
                    streamed += (item.get("logprobs") or {}).get("content") or []
    assert streamed == content


def test_n_choices_share_one_prompt_prefill(served: tuple[RunningGateway, SippClient]) -> None:
    gateway, client = served
    before = client.metrics(REF)["counters"]
    fresh = [{"role": "user", "content": "A prompt no other test sends: three choices."}]
    r = _post(gateway, "/chat/completions", {"messages": fresh, "n": 3, "max_tokens": 4,
                                             "temperature": 1.0, "seed": 5})
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    after = client.metrics(REF)["counters"]
    prompt = body["usage"]["prompt_tokens"]
    assert after["prompt_tokens"] - before["prompt_tokens"] == 3 * prompt
    # choices 1 and 2 copy all but the last prompt token from choice 0's KV: the prompt is
    # computed once (choice 0 may reuse the template's opening from earlier requests too)
    computed = 3 * prompt - (after["reused_tokens"] - before["reused_tokens"])
    assert computed <= prompt + 2
    assert after["cache_hits"] - before["cache_hits"] >= 2
    with requests.post(gateway.url + "/v1/chat/completions", headers=auth(), timeout=120,
                       json={"model": "tiny", "messages": ASK, "n": 2, "max_tokens": 3,
                             "stream": True, "seed": 5, "temperature": 1.0}) as streamed:
        indexes = {json.loads(line[6:])["choices"][0]["index"]
                   for line in streamed.iter_lines() if line.startswith(b"data: {")
                   and json.loads(line[6:])["choices"]}
    assert indexes == {0, 1}


def test_absent_max_tokens_runs_to_a_full_window(
    served: tuple[RunningGateway, SippClient]
) -> None:
    gateway, client = served
    engine = client.endpoint(REF).engine  # type: ignore[attr-defined]
    eos = engine.model.eos
    r = _post(gateway, "/completions", {"prompt": "Once", "temperature": 0,
                                        "logit_bias": {str(eos): -100}})
    body = r.json()
    assert body["choices"][0]["finish_reason"] == "length"
    window = engine.info.n_ctx_per_slot
    assert body["usage"]["total_tokens"] == window  # prompt + completion fill the window
    assert body["usage"]["completion_tokens"] > 64
