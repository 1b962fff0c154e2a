"""Decoding an OpenAI ``/chat/completions`` or ``/completions`` body into what the
gateway's client runs: messages (tool calls and results included), common options, tools,
``response_format`` and the sampling fields.

Every field is either used, passed through to a provider target, or refused with a 400
whose ``param`` names it; nothing is dropped silently. The mapping onto a target kind is
:meth:`TextCall.local_options` (local targets: the engine's own sampling, JSON-schema
grammar and window-long generation) and :meth:`TextCall.provider_options` (provider
targets: OpenAI's fields unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sipp.config import SamplingRuntimeConfig
from sipp.errors import InvalidRequestError
from sipp.tools import ToolRequest, parse_tool_choice, parse_tools
from sipp.types import ChatMessage, LocalTextOptions, SippTextOptions

__all__ = ["TextCall", "bad_field", "decode_text"]

# Fields with no generation meaning here: accepted and ignored.
_NO_EFFECT = frozenset({"user", "store", "metadata", "service_tier", "stream_options",
                        "prompt_cache_key", "safety_identifier"})
# Sampling fields the engine implements; provider targets get them unchanged.
_SAMPLING = ("seed", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs",
             "top_logprobs")
_SAMPLING_SET = frozenset(_SAMPLING)
_TOOL_FIELDS = frozenset({"tools", "tool_choice", "parallel_tool_calls"})
_CHAT_FIELDS = frozenset({"model", "messages", "stream", "max_tokens", "max_completion_tokens",
                          "temperature", "top_p", "stop", "n", "tools", "tool_choice",
                          "parallel_tool_calls", "response_format", *_SAMPLING})
_COMPLETION_FIELDS = frozenset({"model", "prompt", "stream", "max_tokens", "temperature",
                                "top_p", "stop", "n", "response_format", "echo", "best_of",
                                "suffix", *_SAMPLING})
# Refused unless neutral: (neutral values, why)
_NEUTRAL_ONLY: dict[str, tuple[tuple[Any, ...], str]] = {
    "functions": (([],), "use tools"),
    "function_call": (("none",), "use tool_choice"),
    "echo": ((False,), "the prompt is not echoed"),
    "best_of": ((1,), "best_of is not served"),
    "suffix": (("",), "insertion is not served"),
}


def bad_field(param: str, message: str) -> InvalidRequestError:
    """A 400 whose OpenAI error ``param`` is ``param``."""
    error = InvalidRequestError(message)
    error.param = param  # type: ignore[attr-defined]
    return error


@dataclass
class TextCall:
    """One decoded text request."""

    chat: bool
    name: str
    stream: bool
    include_usage: bool
    options: SippTextOptions
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    tools: ToolRequest | None = None
    json_schema: Any = None          # from response_format (None: free text)
    response_format: Any = None      # as sent (provider pass-through)
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    sampling: dict[str, Any] = field(default_factory=dict)   # engine sampling fields
    passthrough: dict[str, Any] = field(default_factory=dict)  # OpenAI fields as sent
    max_given: bool = False

    def local_options(self, seed_offset: int = 0) -> LocalTextOptions:
        """The local target's options: sampling, JSON schema, window-long generation
        (``seed_offset`` gives choice ``i`` of ``n`` its own seed)."""
        sampling = dict(self.sampling)
        if seed_offset and "seed" in sampling:
            sampling["seed"] = (sampling["seed"] + seed_offset) % (2**32 - 1)
        if self.logprobs:
            sampling["n_probs"] = max(1, self.top_logprobs)
        return LocalTextOptions(
            json_schema=self.json_schema,
            sampling=SamplingRuntimeConfig(**sampling) if sampling else None,
            fill_window=not self.max_given,
        )

    def provider_options(self, seed_offset: int = 0) -> dict[str, Any]:
        """OpenAI's own fields for a provider target (``response_format`` and sampling;
        ``n`` choices are ``n`` requests, choice ``i`` with ``seed + i``)."""
        out = dict(self.passthrough)
        if seed_offset and isinstance(out.get("seed"), int):
            out["seed"] += seed_offset
        if self.response_format is not None:
            out["response_format"] = self.response_format
        return out


def _number(obj: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad_field(name, f"field {name!r} must be a number")
    if not low <= value <= high:
        raise bad_field(name, f"field {name!r} must be in [{low:g}, {high:g}], got {value}")
    return float(value)


def _integer(obj: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_field(name, f"field {name!r} must be an integer in [{low}, {high}], "
                              f"got {value!r}")
    return value


def _options(obj: Mapping[str, Any]) -> tuple[SippTextOptions, bool]:
    name = "max_completion_tokens" if obj.get("max_completion_tokens") is not None \
        else "max_tokens"
    max_tokens = _integer(obj, name, 1, 2**32 - 1)
    stop = obj.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or
                             not all(isinstance(s, str) for s in stop)):
        raise bad_field("stop", "field 'stop' must be a string or an array of strings")
    options = SippTextOptions(max_tokens=max_tokens,
                              temperature=_number(obj, "temperature", 0.0, 2.0),
                              top_p=_number(obj, "top_p", 0.0, 1.0), stop=stop or None)
    return options, max_tokens is not None


def _content(value: Any, where: str, *, null_ok: bool = False) -> str:
    if value is None and null_ok:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # [{"type": "text", "text": ...}, ...]
        parts: list[str] = []
        for index, part in enumerate(value):
            if not isinstance(part, Mapping) or part.get("type") != "text" or \
                    not isinstance(part.get("text"), str):
                raise bad_field(f"{where}[{index}]", f"field '{where}[{index}]' must be a text "
                                "part (only text content is supported)")
            parts.append(part["text"])
        return "".join(parts)
    raise bad_field(where, f"field '{where}' must be a string or an array of text parts")


def _messages(obj: Mapping[str, Any]) -> list[ChatMessage]:
    raw = obj.get("messages")
    if not isinstance(raw, list) or not raw:
        raise bad_field("messages", "field 'messages' must be a non-empty array")
    out: list[ChatMessage] = []
    for index, item in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(item, Mapping):
            raise bad_field(where, f"field '{where}' must be an object")
        role = item.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise bad_field(f"{where}.role", f"field '{where}.role' must be system, developer, "
                            f"user, assistant or tool; got {role!r}")
        calls = item.get("tool_calls") if role == "assistant" else None
        content = item.get("content")
        if type(content) is not str:  # text parts, or null from an assistant
            content = _content(content, f"{where}.content", null_ok=role == "assistant")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            name = None
        try:
            out.append(ChatMessage(role, content, calls or None,
                                   item.get("tool_call_id") if role == "tool" else None, name))
        except InvalidRequestError as exc:
            field_name = "tool_calls" if "tool_calls" in exc.message else \
                "tool_call_id" if "tool_call_id" in exc.message else "content"
            raise bad_field(f"{where}.{field_name}", f"field '{where}': {exc.message}") from exc
    return out


def _prompt(obj: Mapping[str, Any]) -> str:
    prompt = obj.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad_field("prompt", "field 'prompt' must be a string (one prompt per request)")
    return prompt


def _response_format(value: Any) -> Any:
    """The JSON schema a ``response_format`` asks for (None for text)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise bad_field("response_format", "field 'response_format' must be an object")
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        raise bad_field("response_format.type", "field 'response_format.type' must be text, "
                        f"json_object or json_schema; got {kind!r}")
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping):
        raise bad_field("response_format.json_schema",
                        "field 'response_format.json_schema' must be an object with a schema")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise bad_field("response_format.json_schema.name",
                        "field 'response_format.json_schema.name' must be a non-empty string")
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise bad_field("response_format.json_schema.strict",
                        "field 'response_format.json_schema.strict' must be a boolean")
    schema = spec.get("schema", {"type": "object"})
    if not isinstance(schema, Mapping | bool):
        raise bad_field("response_format.json_schema.schema",
                        "field 'response_format.json_schema.schema' must be a JSON schema")
    return schema  # strict or not, objects are closed unless additionalProperties says so


def _sampling(obj: Mapping[str, Any]) -> tuple[dict[str, Any], bool, int]:
    out: dict[str, Any] = {}
    seed = _integer(obj, "seed", -(2**63), 2**63 - 1)
    if seed is not None:
        out["seed"] = seed % (2**32 - 1)  # 4294967295 would mean "random"
    for name in ("frequency_penalty", "presence_penalty"):
        value = _number(obj, name, -2.0, 2.0)
        if value is not None:
            out[name] = value
    bias = obj.get("logit_bias")
    if bias is not None:
        if not isinstance(bias, Mapping):
            raise bad_field("logit_bias", "field 'logit_bias' must map token ids to biases")
        pairs: list[tuple[int, float]] = []
        for key, value in bias.items():
            try:
                token = int(key)
            except (TypeError, ValueError):
                token = -1
            if token < 0 or str(token) != str(key).strip():
                raise bad_field("logit_bias", f"field 'logit_bias' keys must be token ids, "
                                              f"got {key!r}")
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not -100 <= value <= 100:
                raise bad_field("logit_bias", f"field 'logit_bias' values must be numbers in "
                                              f"[-100, 100], got {value!r} for {key}")
            pairs.append((token, float(value)))
        if pairs:
            out["logit_bias"] = pairs
    logprobs = obj.get("logprobs")
    top = _integer(obj, "top_logprobs", 0, 20) or 0
    if isinstance(logprobs, int) and not isinstance(logprobs, bool) and 0 <= logprobs <= 5:
        logprobs, top = True, max(top, logprobs)  # legacy completions: logprobs=<count>
    if logprobs not in (None, True, False):
        raise bad_field("logprobs", "field 'logprobs' must be a boolean")
    if top and not logprobs:
        raise bad_field("top_logprobs", "field 'top_logprobs' needs logprobs: true")
    return out, bool(logprobs), top


def decode_text(obj: Mapping[str, Any], *, chat: bool) -> TextCall:
    """Validate a text body; raises a 400 (with ``param``) naming the first bad field."""
    known = _CHAT_FIELDS if chat else _COMPLETION_FIELDS
    for key, value in obj.items():
        if key in known or key in _NO_EFFECT:
            continue
        if key in _NEUTRAL_ONLY:
            neutral, why = _NEUTRAL_ONLY[key]
            if value is None or value in neutral:
                continue
            raise bad_field(key, f"field {key!r} is not supported with value {value!r} ({why})")
        raise bad_field(key, f"unsupported field {key!r}")
    options, max_given = _options(obj)
    # most bodies carry no sampling or tool field: skip their decoding (the same result)
    sampled = not _SAMPLING_SET.isdisjoint(obj)
    sampling, logprobs, top = _sampling(obj) if sampled else ({}, False, 0)
    n = _integer(obj, "n", 1, 16) or 1
    stream_options = obj.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise bad_field("stream_options", "field 'stream_options' must be an object")
    call = TextCall(
        chat=chat, name=obj["model"], stream=obj.get("stream") is True,
        include_usage=bool((stream_options or {}).get("include_usage")),
        options=options, max_given=max_given, n=n, logprobs=logprobs, top_logprobs=top,
        sampling=sampling,
        passthrough={k: obj[k] for k in _SAMPLING if obj.get(k) is not None} if sampled
        else {},
    )
    call.response_format = obj.get("response_format")
    call.json_schema = _response_format(call.response_format)
    if chat:
        call.messages = _messages(obj)
        if not _TOOL_FIELDS.isdisjoint(obj):
            call.tools = _tools(obj, call.json_schema)
    else:
        call.prompt = _prompt(obj)
    return call


def _tools(obj: Mapping[str, Any], json_schema: Any) -> ToolRequest | None:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` (None: no tools)."""
    try:
        specs = parse_tools(obj.get("tools") or None)
    except InvalidRequestError as exc:
        raise bad_field(_where(exc.message, "tools"), exc.message) from exc
    try:
        choice = parse_tool_choice(obj.get("tool_choice"), specs)
    except InvalidRequestError as exc:
        raise bad_field(_where(exc.message, "tool_choice"), exc.message) from exc
    parallel = obj.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise bad_field("parallel_tool_calls", "field 'parallel_tool_calls' must be a boolean")
    if not specs:
        return None
    if json_schema is not None and choice.mode != "none":
        raise bad_field("response_format", "field 'response_format' cannot constrain "
                        "the output together with tools (set tool_choice to none)")
    return ToolRequest(specs, choice, parallel is not False)


def _where(message: str, field_name: str) -> str:
    """The field path a validation message starts with (``tools[1].function.name``)."""
    head = message.split(" ", 1)[0]
    return head if head.startswith(field_name) else field_name
