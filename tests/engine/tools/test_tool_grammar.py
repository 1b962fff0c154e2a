"""Tool-call grammars: each family's grammar accepts exactly calls to the allowed tools
with schema-valid arguments, and a lazy plan starts at the family's marker."""

from __future__ import annotations

import re

import pytest

from sipp.engine.tools import FAMILIES, plan_tools
from sipp.errors import JsonSchemaError
from sipp.tools import ToolChoice, parse_tools
from tests.engine.gbnf_recognizer import parse_gbnf

TOOLS = parse_tools([
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city"],
        "$defs": {"unused": {"type": "null"}}}}},
    {"type": "function", "function": {"name": "noop"}},
    {"type": "function", "function": {"name": "tree", "parameters": {
        "type": "object", "properties": {"node": {"$ref": "#/$defs/node"}},
        "required": ["node"],
        "$defs": {"node": {"type": "object", "properties": {
            "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}}}},
])
MARKER_OF = {"hermes": "<tool_call>", "llama3": "<|python_tag|>", "mistral": "[TOOL_CALLS]",
             "code_block": "<start_of_turn>", "generic": "plain"}


def _grammar(family: str, choice: ToolChoice, parallel: bool = True):  # type: ignore[no-untyped-def]
    plan = plan_tools(MARKER_OF[family], TOOLS, choice, parallel=parallel)
    assert plan.family.name == family
    assert plan.grammar is not None
    return plan, parse_gbnf(plan.grammar)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_required_accepts_valid_calls_only(family: str) -> None:
    plan, grammar = _grammar(family, ToolChoice("required"))
    fmt = FAMILIES[family].format_calls
    assert plan.triggers == ()  # eager: the output can only be calls
    assert grammar.accepts(fmt([{"name": "get_weather", "arguments": {"city": "Oslo"}}]))
    assert grammar.accepts(fmt([{"name": "get_weather",
                                 "arguments": {"city": "Oslo", "days": 2}}]))
    assert grammar.accepts(fmt([{"name": "noop", "arguments": {}}]))
    assert grammar.accepts(fmt([{"name": "tree", "arguments": {
        "node": {"kids": [{"kids": []}, {}]}}}]))
    for bad in (
        {"name": "get_weather", "arguments": {}},                        # missing required
        {"name": "get_weather", "arguments": {"city": "Oslo", "x": 1}},  # closed object
        {"name": "get_weather", "arguments": {"city": 3}},               # wrong type
        {"name": "get_weather", "arguments": {"city": "Oslo", "days": 0}},  # below minimum
        {"name": "noop", "arguments": {"a": 1}},
        {"name": "other", "arguments": {}},
        {"name": "tree", "arguments": {"node": {"kids": [{"leaf": 1}]}}},
    ):
        assert not grammar.accepts(fmt([bad])), bad
    assert not grammar.accepts("Sure! " + fmt([{"name": "noop", "arguments": {}}]))


@pytest.mark.parametrize("family", ["hermes", "mistral", "code_block"])
def test_parallel_calls_only_when_allowed(family: str) -> None:
    two = FAMILIES[family].format_calls([{"name": "noop", "arguments": {}},
                                         {"name": "get_weather", "arguments": {"city": "A"}}])
    assert _grammar(family, ToolChoice("required"))[1].accepts(two)
    assert not _grammar(family, ToolChoice("required"), parallel=False)[1].accepts(two)


def test_named_choice_allows_only_that_tool() -> None:
    plan, grammar = _grammar("hermes", ToolChoice("required", "noop"))
    assert plan.names == frozenset({"noop"})
    fmt = FAMILIES["hermes"].format_calls
    assert grammar.accepts(fmt([{"name": "noop", "arguments": {}}]))
    assert not grammar.accepts(fmt([{"name": "get_weather", "arguments": {"city": "A"}}]))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_auto_is_lazy_from_the_family_marker(family: str) -> None:
    plan, grammar = _grammar(family, ToolChoice("auto"))
    assert plan.triggers
    call = FAMILIES[family].format_calls([{"name": "noop", "arguments": {}}])
    # the trigger fires on the call and the grammar accepts the text from group 1 on
    output = call if FAMILIES[family].starts_with_json else "I will call it. " + call
    starts = [m.start(1) for p in plan.triggers if (m := re.search(p, output))]
    assert starts, plan.triggers
    assert grammar.accepts(output[min(starts):])
    assert not any(re.search(p, "Just text, no call.") for p in plan.triggers)


def test_none_has_no_grammar_and_no_parsing() -> None:
    plan = plan_tools("<tool_call>", TOOLS, ToolChoice("none"))
    assert plan.grammar is None and not plan.parses


def test_unsupported_parameters_keyword_names_the_tool_and_pointer() -> None:
    tools = parse_tools([
        {"type": "function", "function": {"name": "a"}},
        {"type": "function", "function": {"name": "b", "parameters": {
            "type": "object", "properties": {"x": {"type": "string", "not": {"const": "y"}}}}}},
    ])
    with pytest.raises(JsonSchemaError, match=r"keyword 'not' in tools\[1\]\.function"
                                              r"\.parameters at #/properties/x"):
        plan_tools("<tool_call>", tools, ToolChoice("auto"))
