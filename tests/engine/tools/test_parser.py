"""Output → text and tool calls, per family: the whole text and a char-by-char stream give
the same split; malformed, undeclared or unfinished calls are errors, never dropped."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sipp.engine.tools import FAMILIES, ToolCallStream, parse_output
from sipp.errors import ToolCallError

NAMES = {"get_weather", "noop"}
WEATHER = {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}
NOOP = {"name": "noop", "arguments": {}}


def _stream(family: str, text: str, step: int = 1) -> tuple[list[tuple[str, Any]], Any]:
    stream = ToolCallStream(FAMILIES[family], NAMES)
    items: list[tuple[str, Any]] = []
    for i in range(0, len(text), step):
        items += stream.feed(text[i:i + step])
    items += stream.finish()
    return items, stream.result()


def _rebuild(items: list[tuple[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """What an OpenAI client rebuilds from the deltas."""
    text = ""
    calls: list[dict[str, Any]] = []
    for kind, value in items:
        if kind == "text":
            text += value
            continue
        if value["index"] == len(calls):
            calls.append({"id": value["id"], "name": value["function"]["name"], "arguments": ""})
        calls[value["index"]]["arguments"] += value["function"]["arguments"]
    return text, calls


@pytest.mark.parametrize("family", ["hermes", "mistral", "code_block"])
@pytest.mark.parametrize("step", [1, 3, 1000])
def test_text_then_two_calls_split_the_same_whole_or_streamed(family: str, step: int) -> None:
    text = "Let me check.\n" + FAMILIES[family].format_calls([WEATHER, NOOP]) + "\n"
    items, parsed = _stream(family, text, step)
    assert parsed.content == "Let me check."
    assert [c["function"]["name"] for c in parsed.tool_calls] == ["get_weather", "noop"]
    assert json.loads(parsed.tool_calls[0]["function"]["arguments"]) == WEATHER["arguments"]
    assert json.loads(parsed.tool_calls[1]["function"]["arguments"]) == {}
    content, calls = _rebuild(items)
    assert content == parsed.content
    assert [(c["id"], c["name"], c["arguments"]) for c in calls] == [
        (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in parsed.tool_calls]
    # text always comes before the calls it precedes
    assert [k for k, _ in items].index("tool_call") > 0


@pytest.mark.parametrize("family", ["llama3", "generic"])
def test_json_families_take_a_call_as_the_whole_answer(family: str) -> None:
    text = "  " + FAMILIES[family].format_calls([WEATHER])
    items, parsed = _stream(family, text)
    assert parsed.content == ""
    assert parsed.tool_calls[0]["function"]["name"] == "get_weather"
    assert json.loads(parsed.tool_calls[0]["function"]["arguments"]) == WEATHER["arguments"]
    assert all(kind == "tool_call" for kind, _ in items)
    # arguments stream in pieces once the name is known
    assert sum(1 for kind, _ in items if kind == "tool_call") > 3


def test_llama3_python_tag_opens_a_call_and_json_after_text_is_text() -> None:
    call = '<|python_tag|>{"name": "noop", "parameters": {}}'
    _, parsed = _stream("llama3", call)
    assert parsed.tool_calls[0]["function"]["name"] == "noop"
    _, plain = _stream("llama3", 'The answer is {"a": 1}')
    assert plain.content == 'The answer is {"a": 1}' and plain.tool_calls == []


def test_plain_text_passes_unchanged_including_marker_lookalikes() -> None:
    text = "a < b and <tool is not a call; [TOOL_CALL too.  "
    for family in ("hermes", "mistral"):
        items, parsed = _stream(family, text)
        assert parsed.content == text and parsed.tool_calls == []
        assert "".join(v for _, v in items) == text


def test_whitespace_before_a_call_is_held_back_not_emitted_then_dropped() -> None:
    stream = ToolCallStream(FAMILIES["hermes"], NAMES)
    assert stream.feed("Hi \n") == [("text", "Hi")]
    assert stream.feed("<tool_") == []
    stream.feed(FAMILIES["hermes"].format_calls([NOOP])[len("<tool_"):])
    stream.finish()
    assert stream.result().content == "Hi"


def test_name_first_call_streams_name_then_argument_fragments() -> None:
    stream = ToolCallStream(FAMILIES["hermes"], NAMES)
    assert stream.feed('<tool_call>\n{"name": "get_weather", ') == []
    start = stream.feed('"arguments": {"ci')
    assert start[0][1]["function"] == {"name": "get_weather", "arguments": '{"ci'}
    assert stream.feed('ty": "Oslo"}}')[0][1] == {"index": 0,
                                                  "function": {"arguments": 'ty": "Oslo"}'}}


def test_arguments_given_as_a_json_string_are_decoded() -> None:
    text = '<tool_call>{"name": "noop", "arguments": "{\\"x\\": 1}"}</tool_call>'
    _, parsed = _stream("hermes", text)
    assert json.loads(parsed.tool_calls[0]["function"]["arguments"]) == {"x": 1}


@pytest.mark.parametrize(
    ("family", "text", "match"),
    [
        ("hermes", '<tool_call>{"name": "noop", "arguments": {"a": }}</tool_call>', "not valid"),
        ("hermes", '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', "not one of"),
        ("hermes", '<tool_call>{"name": "noop", "arguments": {"a": 1', "ended inside"),
        ("hermes", '<tool_call>{"name": "noop", "arguments": [1]}</tool_call>', "JSON object"),
        ("hermes", '<tool_call>{"name": "noop", "arguments": "{nope"}</tool_call>',
         "do not parse"),
        ("hermes", '<tool_call>{"arguments": {}}</tool_call>', "no string 'name'"),
        ("hermes", '<tool_call>{"name": "noop", "arguments": {}} trailing', "</tool_call>"),
        ("hermes", "<tool_call>plain words", "JSON call object"),
        ("mistral", '[TOOL_CALLS][{"name": "noop", "arguments": {}} x', "',' or ']'"),
        ("mistral", "[TOOL_CALLS]", "ended after"),
        ("generic", '{"name": "noop", "arguments": {}', "ended inside"),
    ],
)
def test_malformed_calls_fail_the_parse(family: str, text: str, match: str) -> None:
    with pytest.raises(ToolCallError, match=match):
        _stream(family, text)
    with pytest.raises(ToolCallError, match=match):
        parse_output(FAMILIES[family], text, NAMES, final=True)


def test_undeclared_name_fails_as_soon_as_it_is_known_while_streaming() -> None:
    stream = ToolCallStream(FAMILIES["hermes"], NAMES)
    with pytest.raises(ToolCallError, match="rm_rf"):
        stream.feed('<tool_call>{"name": "rm_rf", "arguments": {')


def test_mistral_ids_are_nine_alphanumerics() -> None:
    _, parsed = _stream("mistral", FAMILIES["mistral"].format_calls([NOOP]))
    call_id = parsed.tool_calls[0]["id"]
    assert len(call_id) == 9 and call_id.isalnum()
