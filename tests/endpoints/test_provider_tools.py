"""Tool calls through provider endpoints: OpenAI gets tools, tool turns and tool_choice as
its own fields and its calls come back whole or streamed; Anthropic gets tools /
tool_choice / tool_use / tool_result blocks and its tool_use blocks come back as calls."""

from __future__ import annotations

import json
from typing import Any

from sipp import ChatMessage, ProviderDescriptor, SippClient
from tests.endpoints.test_provider import KEY, sse
from tests.providers.loopback import Exchange, LoopbackServer

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
TURNS = [ChatMessage("system", "Be brief."), ChatMessage("user", "Weather?"),
         ChatMessage("assistant", "", [CALL]),
         ChatMessage("tool", "rain", tool_call_id="call_1", name="get_weather"),
         ChatMessage("user", "And tomorrow?")]


def _openai(ex: Exchange) -> None:
    body = ex.json()
    if body.get("stream"):
        def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, Any]:
            return (None, {"id": "c", "model": "m", "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish}]})
        sse(ex, [
            chunk({"role": "assistant", "content": "Checking."}),
            chunk({"tool_calls": [{"index": 0, "id": "call_9", "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Rome"}'}}]}),
            chunk({}, "tool_calls"), (None, "[DONE]")])
        return
    ex.send_json(200, {"id": "x", "model": "m", "choices": [{
        "index": 0, "finish_reason": "tool_calls",
        "message": {"role": "assistant", "content": None, "tool_calls": [CALL]}}]})


def test_openai_tools_pass_through_and_calls_come_back() -> None:
    with SippClient() as client, LoopbackServer(_openai) as server:
        ref = client.add("oa", ProviderDescriptor("openai", "gpt-test", api_key=KEY,
                                                  base_url=server.url + "/v1"))
        result = client.chat(TURNS, endpoint=ref, tools=TOOLS, tool_choice="required",
                             parallel_tool_calls=False).result(timeout=10)
        assert result["finish_reason"] == "tool_calls"
        assert result["tool_calls"] == [CALL]
        sent = server.requests[0].json()
        assert sent["tools"] == TOOLS and sent["tool_choice"] == "required"
        assert sent["parallel_tool_calls"] is False
        assert sent["messages"][2] == {"role": "assistant", "content": None,
                                       "tool_calls": [CALL]}
        assert sent["messages"][3] == {"role": "tool", "content": "rain",
                                       "tool_call_id": "call_1", "name": "get_weather"}

        run = client.chat(TURNS, endpoint=ref, tools=TOOLS, emit_tokens=True)
        batches = list(run.tokens())
        streamed = run.result(timeout=10)
    assert "".join(b.text for b in batches) == "Checking." == streamed["text"]
    deltas = [d for b in batches for d in b.tool_calls]
    assert deltas[0] == {"index": 0, "id": "call_9", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}
    assert streamed["finish_reason"] == "tool_calls"
    assert streamed["tool_calls"] == [{"id": "call_9", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city": "Rome"}'}}]


def _anthropic(ex: Exchange) -> None:
    body = ex.json()
    if body.get("stream"):
        sse(ex, [
            ("message_start", {"type": "message_start", "message": {
                "id": "m", "model": "c", "content": [], "usage": {"input_tokens": 3}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "tool_use", "id": "toolu_1",
                                                       "name": "get_weather", "input": {}}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                "type": "input_json_delta", "partial_json": '{"city": '}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                "type": "input_json_delta", "partial_json": '"Oslo"}'}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                               "usage": {"output_tokens": 9}}),
            ("message_stop", {"type": "message_stop"})])
        return
    ex.send_json(200, {"id": "m", "type": "message", "model": "c", "stop_reason": "tool_use",
                       "content": [{"type": "text", "text": "Let me look."},
                                   {"type": "tool_use", "id": "toolu_2", "name": "get_weather",
                                    "input": {"city": "Oslo"}}],
                       "usage": {"input_tokens": 5, "output_tokens": 4}})


def test_anthropic_maps_tools_and_blocks_both_ways() -> None:
    with SippClient() as client, LoopbackServer(_anthropic) as server:
        ref = client.add("an", ProviderDescriptor("anthropic", "claude-test", api_key=KEY,
                                                  base_url=server.url + "/v1"))
        result = client.chat(TURNS, endpoint=ref, tools=TOOLS,
                             tool_choice={"type": "function", "function": {"name": "get_weather"}},
                             parallel_tool_calls=False).result(timeout=10)
        assert (result["text"], result["finish_reason"]) == ("Let me look.", "tool_calls")
        assert result["tool_calls"] == [{"id": "toolu_2", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Oslo"}'}}]
        sent = server.requests[0].json()
        assert sent["tools"] == [{"name": "get_weather", "description": "Weather",
                                  "input_schema": TOOLS[0]["function"]["parameters"]}]
        assert sent["tool_choice"] == {"type": "tool", "name": "get_weather",
                                       "disable_parallel_tool_use": True}
        assert sent["system"] == "Be brief."
        assert sent["messages"] == [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1",
                                               "name": "get_weather",
                                               "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "rain"},
                {"type": "text", "text": "And tomorrow?"}]}]

        run = client.chat(TURNS, endpoint=ref, tools=TOOLS, tool_choice="required",
                          emit_tokens=True)
        deltas = [d for b in run.tokens() for d in b.tool_calls]
        streamed = run.result(timeout=10)
        assert server.requests[1].json()["tool_choice"] == {"type": "any"}
    assert deltas[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert "".join(d["function"]["arguments"] for d in deltas) == '{"city": "Oslo"}'
    assert streamed["finish_reason"] == "tool_calls"
    assert json.loads(streamed["tool_calls"][0]["function"]["arguments"]) == {"city": "Oslo"}
