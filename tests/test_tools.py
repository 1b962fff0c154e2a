"""Validation of tools / tool_choice and the tool fields of ChatMessage: every bad value is
an InvalidRequestError naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from sipp.errors import InvalidRequestError
from sipp.tools import ToolChoice, ToolRequest, parse_tool_choice, parse_tools
from sipp.types import ChatMessage

GOOD = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("tools", "match"),
    [
        ("f", r"tools must be a list"),
        ([1], r"tools\[0\] must be an object"),
        ([{"type": "code_interpreter"}], r"tools\[0\]\.type must be 'function'"),
        ([{"type": "function"}], r"tools\[0\]\.function must be an object"),
        ([{"type": "function", "function": {"name": "a b"}}], r"tools\[0\]\.function\.name"),
        ([GOOD, GOOD], r"tools\[1\]\.function\.name 'f' is declared twice"),
        ([{"type": "function", "function": {"name": "f", "parameters": "x"}}],
         r"tools\[0\]\.function\.parameters must be a JSON schema"),
        ([{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}],
         r"tools\[0\]\.function\.parameters must describe an object"),
        ([{"type": "function", "function": {"name": "f", "strict": "yes"}}],
         r"tools\[0\]\.function\.strict"),
        ([{"type": "function", "function": {"name": "f", "extra": 1}}],
         r"tools\[0\]\.function\.extra is not a known field"),
    ],
)
def test_bad_tools_name_the_field(tools: Any, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        parse_tools(tools)


def test_tools_and_choice() -> None:
    tools = parse_tools([GOOD, {"type": "function", "function": {"name": "g"}}])
    assert tools[1].parameters == {"type": "object", "properties": {}}
    assert parse_tool_choice(None, tools) == ToolChoice("auto")
    assert parse_tool_choice(None, ()) == ToolChoice("none")
    assert parse_tool_choice({"type": "function", "function": {"name": "g"}}, tools) == \
        ToolChoice("required", "g")
    with pytest.raises(InvalidRequestError, match=r"tool_choice\.function\.name 'h' is not"):
        parse_tool_choice({"type": "function", "function": {"name": "h"}}, tools)
    with pytest.raises(InvalidRequestError, match="tool_choice 'required' needs at least one"):
        parse_tool_choice("required", ())
    with pytest.raises(InvalidRequestError, match="tool_choice must be"):
        parse_tool_choice("always", tools)
    request = ToolRequest(tools, ToolChoice("required", "g"), parallel=False)
    assert request.to_openai()["tool_choice"] == {"type": "function", "function": {"name": "g"}}
    assert request.to_openai()["parallel_tool_calls"] is False


def test_chat_message_tool_fields() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
    msg = ChatMessage("assistant", None, [call])  # type: ignore[arg-type]
    assert msg.content == ""
    assert msg.to_dict()["tool_calls"] == [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]
    assert hash(msg) == hash(ChatMessage.from_dict(msg.to_dict()))
    assert ChatMessage("user", "hi").to_dict() == {"role": "user", "content": "hi"}
    result = ChatMessage.from_dict({"role": "tool", "tool_call_id": "c1", "content": "ok"})
    assert result.to_dict() == {"role": "tool", "content": "ok", "tool_call_id": "c1"}
    with pytest.raises(InvalidRequestError, match="tool_calls are only valid on an assistant"):
        ChatMessage("user", "x", [call])
    with pytest.raises(InvalidRequestError, match="tool_call_id is only valid on a tool"):
        ChatMessage("user", "x", tool_call_id="c1")
    with pytest.raises(InvalidRequestError, match=r"tool_calls\[0\]\.function\.name"):
        ChatMessage("assistant", "", [{"function": {}}])
    with pytest.raises(InvalidRequestError, match="unknown message key"):
        ChatMessage.from_dict({"role": "user", "content": "x", "audio": 1})
