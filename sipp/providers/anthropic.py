"""Anthropic Messages API wire format.

query wraps the prompt as one user message; chat joins system messages (``"\\n\\n"``) into
the top-level ``system`` field; ``max_tokens`` defaults to 1024. Embeddings do not exist.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sipp.errors import ProviderError
from sipp.providers._common import (
    ParsedText,
    ProviderStreamError,
    count,
    merge_options,
    require_object,
)
from sipp.providers._errors import ProviderFormatError
from sipp.transports.sse import SseEvent
from sipp.types import ChatMessage, FinishReason, SippTextOptions, Usage

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_VERSION",
    "EMBED_UNSUPPORTED",
    "AnthropicStream",
    "messages_body",
    "parse_message",
]

DEFAULT_BASE_URL = "https://api.anthropic.com/v1"
DEFAULT_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
MESSAGES_PATH = "/messages"
EMBED_UNSUPPORTED = "Anthropic native provider does not expose embeddings"
_TYPED = frozenset({"model", "max_tokens", "messages", "system", "temperature", "top_p",
                    "stop_sequences", "stream"})


def messages_body(
    model: str, messages: Sequence[ChatMessage], options: SippTextOptions, *, stream: bool,
    provider_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``/messages`` body for chat (query passes one user message)."""
    system = [m.content for m in messages if m.role == "system" and m.content.strip()]
    turns = [m.to_dict() for m in messages if m.role != "system"]
    if not turns:
        raise ProviderError(
            "Anthropic chat needs at least one user or assistant message",
            provider="anthropic", kind="invalid_request",
        )
    body: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": options.max_tokens or DEFAULT_MAX_TOKENS,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if options.temperature is not None:
        body["temperature"] = options.temperature
    if options.top_p is not None:
        body["top_p"] = options.top_p
    if options.stop:
        body["stop_sequences"] = list(options.stop)
    if stream:
        body["stream"] = True
    return merge_options("anthropic", body, _TYPED, provider_options)


def _finish(value: Any) -> FinishReason:
    return "length" if value == "max_tokens" else "stop"


def _input_tokens(usage: Mapping[str, Any]) -> int:
    return sum(count(usage.get(key), f"usage.{key}") for key in
               ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))


def parse_message(obj: Any) -> ParsedText:
    obj = require_object(obj, "response")
    if not isinstance(obj.get("model"), str):
        raise ProviderFormatError("response missing model")
    content = obj.get("content")
    if not isinstance(content, list):
        raise ProviderFormatError("response missing content")
    text = "".join(
        block["text"] for block in content
        if isinstance(block, Mapping) and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )
    usage: Usage | None = None
    raw = obj.get("usage")
    if isinstance(raw, Mapping):
        input_tokens = _input_tokens(raw)
        output_tokens = count(raw.get("output_tokens"), "usage.output_tokens")
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                      total_tokens=input_tokens + output_tokens)
    response_id = obj.get("id")
    return ParsedText(text, _finish(obj.get("stop_reason")), usage,
                      response_id if isinstance(response_id, str) else None)


class AnthropicStream:
    """Decodes Messages API stream events up to ``message_stop``."""

    def __init__(self) -> None:
        self.finish_reason: FinishReason | None = None
        self._stop_reason: Any = None
        self._input = 0
        self._output = 0
        self._saw_usage = False
        self.done = False

    @property
    def usage(self) -> Usage | None:
        if not self._saw_usage:
            return None
        return Usage(input_tokens=self._input, output_tokens=self._output,
                     total_tokens=self._input + self._output)

    def feed(self, event: SseEvent) -> list[str]:
        if self.done:
            raise ProviderFormatError(f"stream sent {event.event} after message_stop")
        try:
            obj = json.loads(event.data)
        except json.JSONDecodeError as exc:
            raise ProviderFormatError(f"stream event is not valid JSON: {exc.msg}") from exc
        if not isinstance(obj, Mapping):
            raise ProviderFormatError("stream event must be a JSON object")
        kind = obj.get("type", event.event)
        if kind == "error" or obj.get("error") is not None:
            raise ProviderStreamError(obj)
        if kind == "message_start":
            message = obj.get("message")
            usage = message.get("usage") if isinstance(message, Mapping) else None
            if isinstance(usage, Mapping):
                self._saw_usage = True
                self._input = _input_tokens(usage)
                self._output = count(usage.get("output_tokens"), "usage.output_tokens")
        elif kind == "content_block_delta":
            delta = obj.get("delta")
            if isinstance(delta, Mapping) and delta.get("type") == "text_delta":
                text = delta.get("text")
                if not isinstance(text, str):
                    raise ProviderFormatError("text_delta missing text")
                return [text] if text else []
        elif kind == "message_delta":
            delta = obj.get("delta")
            if isinstance(delta, Mapping) and delta.get("stop_reason") is not None:
                self._stop_reason = delta["stop_reason"]
            usage = obj.get("usage")
            if isinstance(usage, Mapping):
                self._saw_usage = True
                if usage.get("input_tokens") is not None:
                    self._input = _input_tokens(usage)
                if usage.get("output_tokens") is not None:
                    self._output = count(usage["output_tokens"], "usage.output_tokens")
        elif kind == "message_stop":
            self.done = True
            self.finish_reason = _finish(self._stop_reason)
        return []  # ping, content_block_start/stop and unknown events carry no text

    def end(self) -> None:
        if not self.done:
            raise ProviderFormatError("stream ended before message_stop")
