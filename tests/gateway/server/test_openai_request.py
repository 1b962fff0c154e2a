"""Decoding OpenAI text bodies: each field maps onto the engine's settings (local targets)
or passes through unchanged (provider targets); a bad value is a 400 whose ``param`` names
it."""

from __future__ import annotations

from typing import Any

import pytest

from sipp.errors import InvalidRequestError
from sipp.gateway.server.openai_request import decode_text

CHAT = {"model": "t", "messages": [{"role": "user", "content": "hi"}]}


def test_sampling_fields_reach_the_engine_and_the_provider() -> None:
    call = decode_text({**CHAT, "seed": 7, "frequency_penalty": 0.5, "presence_penalty": -1,
                        "logit_bias": {"42": 5, "7": -100}, "logprobs": True,
                        "top_logprobs": 3, "max_completion_tokens": 9, "stop": "END"},
                       chat=True)
    local = call.local_options()
    assert local.sampling is not None
    assert (local.sampling.seed, local.sampling.frequency_penalty,
            local.sampling.presence_penalty, local.sampling.n_probs) == (7, 0.5, -1.0, 3)
    assert list(local.sampling.logit_bias or ()) == [(42, 5.0), (7, -100.0)]
    assert not local.fill_window  # a max was given
    assert call.options.max_tokens == 9 and call.options.stop == ("END",)
    assert call.local_options(seed_offset=2).sampling.seed == 9  # type: ignore[union-attr]
    assert call.provider_options() == {"seed": 7, "frequency_penalty": 0.5,
                                       "presence_penalty": -1, "logit_bias": {"42": 5, "7": -100},
                                       "logprobs": True, "top_logprobs": 3}


def test_absent_max_tokens_fills_the_window_and_formats_map_to_schemas() -> None:
    call = decode_text({**CHAT, "response_format": {"type": "json_object"}}, chat=True)
    assert call.local_options().fill_window
    assert call.json_schema == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    call = decode_text({**CHAT, "response_format": {"type": "json_schema", "json_schema": {
        "name": "a", "schema": schema, "strict": True}}}, chat=True)
    assert call.json_schema == schema
    assert call.provider_options()["response_format"]["json_schema"]["schema"] == schema
    assert decode_text({**CHAT, "response_format": {"type": "text"}}, chat=True).json_schema \
        is None
    legacy = decode_text({"model": "t", "prompt": "x", "logprobs": 2}, chat=False)
    assert (legacy.logprobs, legacy.top_logprobs) == (True, 2)


def test_tools_and_tool_turns() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    call = decode_text({**CHAT, "tools": tools, "tool_choice": "required",
                        "parallel_tool_calls": False, "messages": [
                            {"role": "user", "content": "hi"},
                            {"role": "assistant", "content": None, "tool_calls": [
                                {"id": "c", "type": "function",
                                 "function": {"name": "f", "arguments": "{}"}}]},
                            {"role": "tool", "tool_call_id": "c", "content": "ok"}]},
                       chat=True)
    assert call.tools is not None and call.tools.choice.mode == "required"
    assert not call.tools.parallel
    assert call.messages is not None and call.messages[2].tool_call_id == "c"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": "x"}, "max_completion_tokens"),
        ({"stop": [1]}, "stop"),
        ({"n": 0}, "n"),
        ({"seed": 1.5}, "seed"),
        ({"frequency_penalty": 2.5}, "frequency_penalty"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
         "response_format.json_schema.name"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}],
          "tool_choice": {"type": "function", "function": {"name": "g"}}},
         "tool_choice.function.name"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}],
          "response_format": {"type": "json_object"}, "tool_choice": "required"},
         "response_format"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"messages": [{"role": "assistant", "content": "x", "tool_calls": [{}]}]},
         "messages[0].tool_calls"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
         "messages[0].content[0]"),
        ({"modalities": ["audio"]}, "modalities"),
    ],
)
def test_bad_fields_are_400s_naming_them(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        decode_text({**CHAT, **extra}, chat=True)
    assert getattr(info.value, "param", None) == param
    assert info.value.http_status == 400


def test_completions_take_no_tools() -> None:
    with pytest.raises(InvalidRequestError) as info:
        decode_text({"model": "t", "prompt": "x", "tools": []}, chat=False)
    assert getattr(info.value, "param", None) == "tools"
