"""Hostile chat templates (they come with model files): sandbox escapes, endless loops, huge
output and deep recursion end in a ChatTemplateError within the render limits."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipp.engine.chat_template import MAX_RENDER_SECONDS, ChatTemplate
from sipp.errors import ChatTemplateError

MESSAGES = [{"role": "user", "content": "hi"}]

HOSTILE = {
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
    "{% endfor %}x",
    "huge repetition": "{{ 'x' * 1000000000 }}",
    "huge list": "{{ [1] * 1000000000 }}",
    "huge power": "{{ 10 ** 100000000 }}",
    "class escape": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "mutation": "{{ messages.append(1) }}",
    "recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "huge output": "{% for i in range(100000) %}{{ 'y' * 100000 }}{% endfor %}",
}
WORDS = {
    "nested loops": "longer than",
    "huge repetition": "over the",
    "huge list": "over the",
    "huge power": "exponent",
    "class escape": "unsafe",
    "mutation": "unsafe",
    "recursion": "recursed too deeply",
    "huge output": "output is over",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_template_is_a_bounded_error(name: str) -> None:
    start = time.monotonic()
    with pytest.raises(ChatTemplateError) as info:
        ChatTemplate(HOSTILE[name]).render(MESSAGES)
    assert time.monotonic() - start < MAX_RENDER_SECONDS + 1.5
    assert WORDS[name] in str(info.value)


def test_function_globals_stay_hidden() -> None:
    out = ChatTemplate("{{ raise_exception.__globals__ }}{{ strftime_now.__code__ }}").render([])
    assert out == ""  # the sandbox gives undefined (empty), never the module's namespace


FRAGMENTS = st.sampled_from(
    [
        "{% for m in messages %}",
        "{% endfor %}",
        "{% if add_generation_prompt %}",
        "{% endif %}",
        "{{ m.content }}",
        "{{ m['role'] | upper }}",
        "{{ bos_token }}",
        "{{ messages | tojson }}",
        "{{ 'ab' * 3 }}",
        "{% for i in range(50) %}",
        "{{ raise_exception('no') }}",
        "{{ undefined_thing.x }}",
        "{{ 1 / 0 }}",
        "{% set x = namespace(a=1) %}",
        "{{ x.a }}",
        "{{ ''.join(['a']) }}",
        "{{ m.__class__ }}",
        "{%",
        "}}",
        "text",
    ]
)


@given(st.lists(FRAGMENTS, min_size=1, max_size=12).map("".join))
def test_random_templates_render_or_raise_a_template_error(source: str) -> None:
    start = time.monotonic()
    try:
        out = ChatTemplate(source).render(MESSAGES)
        assert isinstance(out, str)
    except ChatTemplateError as exc:
        assert str(exc)
    assert time.monotonic() - start < MAX_RENDER_SECONDS + 1.5
