"""OpenAI and OpenAI-compatible wire format: request bodies, responses and streams.

query → ``POST /completions`` (``prompt``), chat → ``POST /chat/completions``
(``messages``), embed → ``POST /embeddings`` (``input``, ``encoding_format: "float"``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sipp.providers._common import (
    ParsedEmbedding,
    ParsedText,
    ProviderStreamError,
    ToolCallAccumulator,
    merge_options,
    require_object,
    stream_payload,
    text_field,
    usage_of,
    vector_of,
)
from sipp.providers._errors import ProviderFormatError
from sipp.tools import ToolRequest
from sipp.transports.sse import SseEvent
from sipp.types import ChatMessage, FinishReason, SippTextOptions, Usage

__all__ = [
    "DEFAULT_BASE_URL",
    "OpenAIStream",
    "chat_body",
    "completion_body",
    "embedding_body",
    "parse_chat",
    "parse_completion",
    "parse_embedding",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
CHAT_PATH = "/chat/completions"
COMPLETION_PATH = "/completions"
EMBEDDING_PATH = "/embeddings"

_TEXT_TYPED = frozenset({"model", "max_tokens", "temperature", "top_p", "stop", "stream"})
_CHAT_TYPED = _TEXT_TYPED | {"messages", "tools", "tool_choice", "parallel_tool_calls"}
_COMPLETION_TYPED = _TEXT_TYPED | {"prompt"}
_EMBED_TYPED = frozenset({"model", "input", "encoding_format"})


def _options(body: dict[str, Any], options: SippTextOptions, stream: bool) -> dict[str, Any]:
    if options.max_tokens is not None:
        body["max_tokens"] = options.max_tokens
    if options.temperature is not None:
        body["temperature"] = options.temperature
    if options.top_p is not None:
        body["top_p"] = options.top_p
    if options.stop:
        body["stop"] = list(options.stop)
    if stream:
        body["stream"] = True
    return body


def completion_body(
    provider: str, model: str, prompt: str, options: SippTextOptions, *, stream: bool,
    provider_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body = _options({"model": model, "prompt": prompt}, options, stream)
    return merge_options(provider, body, _COMPLETION_TYPED, provider_options)


def _message(message: ChatMessage) -> dict[str, Any]:
    out = message.to_dict()
    if out.get("tool_calls") and not out["content"]:
        out["content"] = None  # OpenAI's shape for an assistant turn that only calls tools
    return out


def chat_body(
    provider: str, model: str, messages: Sequence[ChatMessage], options: SippTextOptions, *,
    stream: bool, provider_options: Mapping[str, Any] | None = None,
    tools: ToolRequest | None = None,
) -> dict[str, Any]:
    body = _options({"model": model, "messages": [_message(m) for m in messages]}, options,
                    stream)
    if tools is not None and tools.tools:
        body.update(tools.to_openai())
    return merge_options(provider, body, _CHAT_TYPED, provider_options)


def embedding_body(
    provider: str, model: str, input: str, provider_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    body = {"model": model, "input": input, "encoding_format": "float"}
    return merge_options(provider, body, _EMBED_TYPED, provider_options)


def finish_reason(value: Any) -> FinishReason:
    if value in ("tool_calls", "function_call"):
        return "tool_calls"
    return "length" if value in ("length", "max_tokens", "max_output_tokens") else "stop"


def logprobs_of(raw: Any) -> list[dict[str, Any]] | None:
    """OpenAI's ``logprobs.content[]`` as Sipp's per-token entries (token ids unknown)."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("content"), list):
        return None
    out: list[dict[str, Any]] = []
    for entry in raw["content"]:
        entry = require_object(entry, "logprobs.content item")
        tops = entry.get("top_logprobs") or []
        if not isinstance(entry.get("token"), str) or not isinstance(tops, list):
            raise ProviderFormatError("logprobs.content items need a token")
        out.append({"token": None, "text": entry["token"],
                    "logprob": float(entry.get("logprob", 0.0)),
                    "top_logprobs": [{"token": None, "text": str(t.get("token")),
                                      "logprob": float(t.get("logprob", 0.0))}
                                     for t in tops if isinstance(t, Mapping)]})
    return out


def _tool_calls(raw: Any) -> list[dict[str, Any]] | None:
    """``message.tool_calls`` of a response, checked (arguments stay JSON text)."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ProviderFormatError("message tool_calls must be an array")
    calls: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        call = require_object(item, f"tool_calls[{index}]")
        function = require_object(call.get("function"), f"tool_calls[{index}].function")
        name, args = function.get("name"), function.get("arguments", "")
        if not isinstance(name, str) or not isinstance(args, str):
            raise ProviderFormatError(f"tool_calls[{index}] needs a name and arguments text")
        call_id = call.get("id")
        calls.append({"id": call_id if isinstance(call_id, str) else f"call_{index}",
                      "type": "function", "function": {"name": name, "arguments": args}})
    return calls or None


def _first_choice(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ProviderFormatError("response missing choices")
    return require_object(choices[0], "choices[0]")


def _common(raw: Any) -> Mapping[str, Any]:
    obj = require_object(raw, "response")
    if not isinstance(obj.get("model"), str):
        raise ProviderFormatError("response missing model")
    return obj


def _id(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("id")
    return value if isinstance(value, str) else None


def parse_completion(obj: Any) -> ParsedText:
    obj = _common(obj)
    choice = _first_choice(obj)
    return ParsedText(
        text_field(choice, "text", "choices[0]"),
        finish_reason(choice.get("finish_reason")),
        usage_of(obj.get("usage"), "prompt_tokens", "completion_tokens"),
        _id(obj),
    )


def parse_chat(obj: Any) -> ParsedText:
    obj = _common(obj)
    choice = _first_choice(obj)
    message = require_object(choice.get("message"), "choices[0].message")
    calls = _tool_calls(message.get("tool_calls"))
    reason = finish_reason(choice.get("finish_reason"))
    return ParsedText(
        text_field(message, "content", "choices[0].message", null_ok=True),
        "tool_calls" if calls and reason == "stop" else reason,
        usage_of(obj.get("usage"), "prompt_tokens", "completion_tokens"),
        _id(obj),
        calls,
        logprobs_of(choice.get("logprobs")),
    )


def parse_embedding(obj: Any) -> ParsedEmbedding:
    obj = _common(obj)
    data = obj.get("data")
    if not isinstance(data, list) or not data:
        raise ProviderFormatError("embedding response missing data")
    first = require_object(data[0], "data[0]")
    return ParsedEmbedding(
        vector_of(first.get("embedding")),
        usage_of(obj.get("usage"), "prompt_tokens", "completion_tokens"),
        _id(obj),
    )


class OpenAIStream:
    """Decodes ``data:`` chunks of a chat or completion stream, ending at ``[DONE]``."""

    def __init__(self, operation: Literal["query", "chat"]) -> None:
        self._chat = operation == "chat"
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.done = False
        self._tools = ToolCallAccumulator()
        self._by_index: dict[int, int] = {}  # upstream tool-call index → ours
        self.logprobs: list[dict[str, Any]] | None = None

    @property
    def tool_calls(self) -> list[dict[str, Any]] | None:
        return self._tools.calls or None

    def feed(self, event: SseEvent) -> list[str | dict[str, Any]]:
        """Token texts and tool-call deltas in ``event``, in order; sets ``done`` at
        ``[DONE]``."""
        if self.done:
            raise ProviderFormatError("stream continued after [DONE]")
        if event.data.strip() == "[DONE]":
            self.done = True
            if self.finish_reason is None:
                self.finish_reason = "stop"
            return []
        try:
            obj = json.loads(event.data)
        except json.JSONDecodeError as exc:
            raise ProviderFormatError(f"stream chunk is not valid JSON: {exc.msg}") from exc
        # JSON objects decode to dicts: the checks below are isinstance(..., dict), which
        # costs far less per chunk than an abstract Mapping check
        if not isinstance(obj, dict):
            raise ProviderFormatError("stream chunk must be a JSON object")
        if obj.get("error") is not None:
            raise ProviderStreamError(obj)
        if obj.get("usage") is not None:
            self.usage = usage_of(obj["usage"], "prompt_tokens", "completion_tokens")
        texts: list[str | dict[str, Any]] = []
        choices = obj.get("choices") or []
        if not isinstance(choices, list):
            raise ProviderFormatError("stream chunk choices must be an array")
        chat = self._chat
        for choice in choices:
            if not isinstance(choice, dict):
                raise ProviderFormatError("stream choice must be a JSON object")
            calls: Any = None
            if chat:
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    piece = delta.get("content")
                    calls = delta.get("tool_calls")
                else:
                    piece = None
            else:
                piece = choice.get("text")
            if isinstance(piece, str) and piece:
                if self.finish_reason is not None:
                    raise ProviderFormatError("stream sent text after its finish reason")
                texts.append(piece)
            if calls:
                texts.extend(self._call_deltas(calls))
            if chat and (raw := choice.get("logprobs")) is not None:
                entries = logprobs_of(raw)
                if entries:
                    self.logprobs = (self.logprobs or []) + entries
            reason = choice.get("finish_reason")
            if reason is not None:
                self.finish_reason = finish_reason(reason)
        return texts

    def _call_deltas(self, raw: Any) -> list[str | dict[str, Any]]:
        if not isinstance(raw, list):
            raise ProviderFormatError("delta tool_calls must be an array")
        out: list[str | dict[str, Any]] = []
        for item in raw:
            piece = require_object(item, "delta tool_calls item")
            upstream = piece.get("index", 0)
            function = piece.get("function") or {}
            if not isinstance(upstream, int) or not isinstance(function, Mapping):
                raise ProviderFormatError("delta tool call needs an index and a function")
            args = function.get("arguments") or ""
            if not isinstance(args, str):
                raise ProviderFormatError("delta tool call arguments must be text")
            if upstream not in self._by_index:
                name, call_id = function.get("name"), piece.get("id")
                if not isinstance(name, str):
                    raise ProviderFormatError("a streamed tool call must start with its name")
                self._by_index[upstream] = len(self._tools.calls)
                out.append(self._tools.start(
                    call_id if isinstance(call_id, str) else f"call_{upstream}", name, args))
            elif args:
                out.append(self._tools.extend(self._by_index[upstream], args))
        return out

    def end(self) -> None:
        """At end of stream: it must have finished (``[DONE]`` or a finish reason)."""
        if not self.done and self.finish_reason is None:
            raise ProviderFormatError("stream ended before a finish reason")

    def finish(self, text: str) -> dict[str, Any]:
        """The run's payload once the stream ended (``text``: the pieces joined)."""
        self.end()
        return stream_payload(text, self.finish_reason, self.usage, self.tool_calls,
                              self.logprobs)
