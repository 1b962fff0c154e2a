"""Family detection from template text, and rendering tools, calls and results through
templates that support them and through ones that do not."""

from __future__ import annotations

import json

import pytest

from build_scripts.make_test_models import LLAMA_CHAT_TEMPLATE
from sipp.engine.chat_template import ChatTemplate
from sipp.engine.tools import detect_family
from tests.tool_templates import TEMPLATES

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string"}}}}}]
CALL = {"id": "abcdefghi", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
TURNS = [
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "abcdefghi", "name": "get_weather",
     "content": "rain, 9C"},
]


@pytest.mark.parametrize(
    ("source", "family"),
    [
        (TEMPLATES["hermes"], "hermes"),
        (TEMPLATES["llama3"], "llama3"),
        (TEMPLATES["mistral"], "mistral"),
        (TEMPLATES["code_block"], "code_block"),
        ("{{ '<start_of_turn>user' }}", "code_block"),
        ("<|start_header_id|>{{ messages }}", "generic"),  # Llama 3.0: no tools
        (LLAMA_CHAT_TEMPLATE, "generic"),
    ],
)
def test_family_from_template_text(source: str, family: str) -> None:
    assert detect_family(source).name == family


@pytest.mark.parametrize("family", list(TEMPLATES))
def test_templates_render_tools_calls_and_results(family: str) -> None:
    prompt = ChatTemplate(TEMPLATES[family], "<s>", "</s>").render(TURNS, tools=TOOLS)
    assert '"name": "get_weather"' in prompt and '"description": "Weather"' in prompt
    # the call's arguments render as an object, not as a quoted string
    assert '{"city": "Oslo"}' in prompt and '"{\\"city' not in prompt
    assert "rain, 9C" in prompt


def test_template_without_tool_support_gets_them_as_text() -> None:
    prompt = ChatTemplate(LLAMA_CHAT_TEMPLATE, "<s>", "</s>").render(
        [{"role": "system", "content": "Be brief."}, *TURNS], tools=TOOLS)
    # tools and the generic call format in the system prompt (folded into the first turn)
    assert "Be brief." in prompt and '"name": "get_weather"' in prompt
    assert '{"name": "<function-name>", "arguments": {"<argument>": "<value>"}}' in prompt
    # the past call as the model would write it; the result as a user turn (roles alternate)
    assert '{"name": "get_weather", "arguments": {"city": "Oslo"}}' in prompt
    assert "Tool result of get_weather:\nrain, 9C" in prompt


def test_plain_messages_render_as_before() -> None:
    template = ChatTemplate(TEMPLATES["hermes"])
    plain = [{"role": "user", "content": "Hi"}]
    assert template.render(plain) == template.render(plain, tools=None)
    assert "<tools>" not in template.render(plain)
    assert json.dumps(TOOLS[0]) in template.render(plain, tools=TOOLS)
