"""Chat template rendering: the major template families, HF conventions, errors, sandbox,
and every real template shipped with the pinned llama.cpp source."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from sipp.engine.chat_template import ChatTemplate, ChatTemplateError, starts_with_bos
from sipp.errors import InvalidRequestError
from sipp.types import ChatMessage

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA3 = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)

# Written with block tags on their own lines: trim_blocks/lstrip_blocks must remove them.
GEMMA = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {% set first_user_prefix = messages[0]['content'] + '\\n\\n' %}
    {% set loop_messages = messages[1:] %}
{% else %}
    {% set first_user_prefix = '' %}
    {% set loop_messages = messages %}
{% endif %}
{% for message in loop_messages %}
    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {% endif %}
    {% set role = 'model' if message['role'] == 'assistant' else message['role'] %}
<start_of_turn>{{ role }}
{{ (first_user_prefix if loop.first else '') + message['content'] | trim }}<end_of_turn>
{% endfor %}
{% if add_generation_prompt %}
<start_of_turn>model
{% endif %}
"""

MISTRAL = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}"
    "{% endfor %}"
)

CONVERSATION = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "How are you?"},
]
WITH_SYSTEM = [{"role": "system", "content": "Be brief."}, *CONVERSATION]


def test_chatml() -> None:
    template = ChatTemplate(CHATML, "<s>", "</s>")
    assert template.render(WITH_SYSTEM) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nHow are you?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert template.render(CONVERSATION[:1], add_generation_prompt=False) == (
        "<|im_start|>user\nHi<|im_end|>\n"
    )


def test_llama3_style_with_bos_and_trim() -> None:
    template = ChatTemplate(LLAMA3, "<|begin_of_text|>", "<|eot_id|>")
    messages = [{"role": "system", "content": "  Be brief.\n"}, {"role": "user", "content": "Hi"}]
    assert template.render(messages) == (
        "<|begin_of_text|>"
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_gemma_merges_system_into_first_user_turn() -> None:
    template = ChatTemplate(GEMMA, "<bos>", "<eos>")
    assert template.render(WITH_SYSTEM) == (
        "<bos>"
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nHow are you?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert template.render(CONVERSATION[:1], add_generation_prompt=False) == (
        "<bos><start_of_turn>user\nHi<end_of_turn>\n"
    )


def test_gemma_raise_exception_on_bad_role_order() -> None:
    template = ChatTemplate(GEMMA, "<bos>", "<eos>")
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(ChatTemplateError, match="Conversation roles must alternate") as info:
        template.render(bad)
    assert info.value.code == "chat_template"
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, InvalidRequestError)


def test_mistral_inst_style() -> None:
    template = ChatTemplate(MISTRAL, "<s>", "</s>")
    assert template.render(CONVERSATION) == (
        "<s>[INST] Hi [/INST]Hello!</s>[INST] How are you? [/INST]"
    )
    with pytest.raises(ChatTemplateError, match="Only user and assistant roles are supported!"):
        template.render([{"role": "user", "content": "a"}, {"role": "function", "content": "b"}])
    # a tool result reaches a template without tool turns as user text (roles still alternate)
    assert template.render([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]) \
        == "<s>[INST] a\n\nTool result:\nb [/INST]"


def test_chat_messages_objects_are_accepted() -> None:
    template = ChatTemplate(CHATML)
    objects = [ChatMessage("user", "Hi")]
    assert template.render(objects) == template.render([{"role": "user", "content": "Hi"}])


def test_tojson_keeps_unicode_and_takes_indent() -> None:
    template = ChatTemplate("{{ tools | tojson }}|{{ tools | tojson(indent=2) }}")
    tools = [{"name": "météo", "args": {"q": "<&>"}}]
    compact, indented = template.render([], tools=tools).split("|")
    assert compact == json.dumps(tools, ensure_ascii=False)
    assert indented == json.dumps(tools, ensure_ascii=False, indent=2)


def test_strftime_now_and_extra_variables() -> None:
    template = ChatTemplate("{{ strftime_now('%Y') }} {{ date_string | default('none') }}")
    year = datetime.datetime.now().strftime("%Y")
    assert template.render([]) in {f"{year} none", f"{int(year) + 1} none"}
    assert template.render([], date_string="26 Jul 2024").endswith(" 26 Jul 2024")


def test_tools_and_documents_default_to_none() -> None:
    template = ChatTemplate(
        "{% if tools is not none %}tools{% endif %}{% if documents is none %}no-docs{% endif %}"
    )
    assert template.render([]) == "no-docs"
    assert template.render([], tools=[]) == "toolsno-docs"


def test_extra_may_override_special_tokens() -> None:
    template = ChatTemplate("{{ bos_token }}|{{ eos_token }}", "<s>", "</s>")
    assert template.render([]) == "<s>|</s>"
    assert template.render([], bos_token="[B]") == "[B]|</s>"


def test_loop_controls() -> None:
    template = ChatTemplate(
        "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
        "{{ m.content }};{% if m.role == 'assistant' %}{% break %}{% endif %}{% endfor %}"
    )
    assert template.render(WITH_SYSTEM) == "Hi;Hello!;"


def test_generation_block_renders_its_body() -> None:
    template = ChatTemplate(
        "{% for m in messages %}{% if m.role == 'assistant' %}"
        "{% generation %}[{{ m.content }}]{% endgeneration %}{% else %}{{ m.content }}{% endif %}"
        "{% endfor %}"
    )
    assert template.render(CONVERSATION) == "Hi[Hello!]How are you?"


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(ChatTemplateError, match="syntax error at line 2") as info:
        ChatTemplate("{{ bos_token }}\n{% for m in messages %}{{ m.content }}")
    assert info.value.code == "chat_template"


def test_undefined_variable_is_named() -> None:
    template = ChatTemplate("line one\n{{ missing_thing.attr }}")
    with pytest.raises(ChatTemplateError, match="'missing_thing' is undefined") as info:
        template.render(CONVERSATION)
    assert "line 2" in str(info.value)


def test_errors_inside_the_template_are_wrapped() -> None:
    template = ChatTemplate("{{ messages[0]['content'] + 1 }}")
    with pytest.raises(ChatTemplateError, match="TypeError"):
        template.render(CONVERSATION)


def test_sandbox_blocks_mutation_and_internals() -> None:
    messages = [dict(m) for m in CONVERSATION]
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{{ messages.append({'role': 'user'}) }}").render(messages)
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{{ messages[0].update({'content': 'x'}) }}").render(messages)
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{{ ''.__class__.__mro__[1].__subclasses__() }}").render(messages)
    assert messages == CONVERSATION


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ("Hi", "messages must be a list"),
        ([["user", "Hi"]], r"messages\[0\] must be a mapping"),
        ([{"content": "Hi"}], r"messages\[0\]\.role must be a non-empty string"),
        ([{"role": "user", "content": "a"}, {"role": "user"}], r"messages\[1\] has no 'content'"),
    ],
)
def test_bad_messages_are_rejected_naming_the_field(messages: Any, match: str) -> None:
    with pytest.raises(ChatTemplateError, match=match):
        ChatTemplate(CHATML).render(messages)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ChatTemplateError, match="non-empty string"):
        ChatTemplate("   ")
    with pytest.raises(ChatTemplateError, match="bos_token must be a string"):
        ChatTemplate(CHATML, None)  # type: ignore[arg-type]


def test_starts_with_bos() -> None:
    gemma = ChatTemplate(GEMMA, "<bos>", "<eos>")
    assert gemma.starts_with_bos(gemma.render(CONVERSATION))
    chatml = ChatTemplate(CHATML, "<s>", "</s>")
    assert not chatml.starts_with_bos(chatml.render(CONVERSATION))
    assert not starts_with_bos("<s>hello", "")
    assert starts_with_bos("<s>hello", "<s>")
    assert not starts_with_bos(" <s>hello", "<s>")


def test_compiled_once_per_source() -> None:
    assert ChatTemplate(LLAMA3)._template is ChatTemplate(LLAMA3, "<b>")._template


# --------------------------------------------------------------------------- real templates


def _templates_dir() -> Path:
    """``models/templates`` of the pinned llama.cpp source in the build cache (no download)."""
    from build_scripts.llama_source import cache_root, read_pin

    return cache_root() / "src" / read_pin()["sha256"][:16] / "llama.cpp" / "models" / "templates"


_LLAMA_TEMPLATES = _templates_dir()


def _real_templates() -> list[Path]:
    return sorted(_LLAMA_TEMPLATES.glob("*.jinja")) if _LLAMA_TEMPLATES.is_dir() else []


# Tool-use variants that need tools (Hugging Face renders them with `tools` as well).
_NEEDS_TOOLS = {
    "CohereForAI-c4ai-command-r-plus-tool_use",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
    "fireworks-ai-llama-3-firefunction-v2",
}
_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}


@pytest.mark.parametrize("path", _real_templates() or [None], ids=lambda p: p.stem if p else "none")
def test_real_llama_cpp_templates_render(path: Path | None) -> None:
    if path is None:
        pytest.skip(f"pinned llama.cpp source not extracted at {_LLAMA_TEMPLATES}")
    template = ChatTemplate(path.read_text(encoding="utf-8"), "<BOS>", "<EOS>")
    extra: dict[str, Any] = {}
    if path.stem in _NEEDS_TOOLS:
        extra = {
            "tools": [_TOOL],
            "functions": json.dumps([_TOOL["function"]]),
            "datetime": "today",
        }
    prompt = template.render(CONVERSATION, **extra)
    assert "How are you?" in prompt
    assert "Hello!" in prompt
    try:
        with_system = template.render(WITH_SYSTEM, **extra)
    except ChatTemplateError as exc:
        assert "raised an error" in str(exc)  # the template refuses system turns itself
    else:
        assert "Be brief." in with_system
