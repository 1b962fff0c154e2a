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
    ToolCallAccumulator,
    count,
    merge_options,
    require_object,
    stream_payload,
)
from sipp.providers._errors import ProviderFormatError
from sipp.tools import ToolRequest
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
                    "stop_sequences", "stream", "tools", "tool_choice"})


def messages_body(
    model: str, messages: Sequence[ChatMessage], options: SippTextOptions, *, stream: bool,
    provider_options: Mapping[str, Any] | None = None, tools: ToolRequest | None = None,
) -> dict[str, Any]:
    """The ``/messages`` body for chat (query passes one user message); tools become
    Anthropic ``tools`` / ``tool_choice``, assistant tool calls ``tool_use`` blocks and tool
    results ``tool_result`` blocks of a user turn."""
    system = [m.content for m in messages if m.role == "system" and m.content.strip()]
    turns = _turns([m for m in messages if m.role != "system"])
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
    if tools is not None and tools.tools:
        body["tools"] = [{"name": t.name, **({"description": t.description}
                                             if t.description else {}),
                          "input_schema": dict(t.parameters)} for t in tools.tools]
        choice = tools.choice
        chosen: dict[str, Any] = (
            {"type": "tool", "name": choice.name} if choice.name is not None
            else {"type": {"auto": "auto", "required": "any", "none": "none"}[choice.mode]})
        if not tools.parallel and choice.mode != "none":
            chosen["disable_parallel_tool_use"] = True
        body["tool_choice"] = chosen
    return merge_options("anthropic", body, _TYPED, provider_options)


def _turns(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Messages as Anthropic turns; consecutive user-side turns (tool results included)
    merge into one, as the API requires."""
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            role = "user"
            blocks: list[dict[str, Any]] = [{"type": "tool_result",
                                             "tool_use_id": m.tool_call_id or "",
                                             "content": m.content}]
        elif m.role == "assistant" and m.tool_calls:
            role = "assistant"
            blocks = [{"type": "text", "text": m.content}] if m.content else []
            for call in m.tool_calls:
                try:
                    arguments = json.loads(call["function"]["arguments"] or "{}")
                except json.JSONDecodeError as exc:
                    raise ProviderError(
                        f"tool call arguments are not JSON: {call['function']['arguments']!r}",
                        provider="anthropic", kind="invalid_request") from exc
                blocks.append({"type": "tool_use", "id": call.get("id") or "",
                               "name": call["function"]["name"], "input": arguments})
        elif turns and turns[-1]["role"] == m.role and isinstance(turns[-1]["content"], list):
            turns[-1]["content"].append({"type": "text", "text": m.content})
            continue
        else:
            turns.append({"role": m.role, "content": m.content})
            continue
        if turns and turns[-1]["role"] == role:
            last = turns[-1]
            if isinstance(last["content"], str):
                last["content"] = [{"type": "text", "text": last["content"]}]
            last["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _finish(value: Any) -> FinishReason:
    if value == "tool_use":
        return "tool_calls"
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
    calls = [{"id": str(block.get("id") or f"toolu_{i}"), "type": "function",
              "function": {"name": str(block.get("name")),
                           "arguments": json.dumps(block.get("input") or {},
                                                   ensure_ascii=False)}}
             for i, block in enumerate(content)
             if isinstance(block, Mapping) and block.get("type") == "tool_use"]
    usage: Usage | None = None
    raw = obj.get("usage")
    if isinstance(raw, Mapping):
        input_tokens = _input_tokens(raw)
        output_tokens = count(raw.get("output_tokens"), "usage.output_tokens")
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                      total_tokens=input_tokens + output_tokens)
    response_id = obj.get("id")
    return ParsedText(text, _finish(obj.get("stop_reason")), usage,
                      response_id if isinstance(response_id, str) else None, calls or None)


class AnthropicStream:
    """Decodes Messages API stream events up to ``message_stop``."""

    def __init__(self) -> None:
        self.finish_reason: FinishReason | None = None
        self._stop_reason: Any = None
        self._input = 0
        self._output = 0
        self._saw_usage = False
        self.done = False
        self._tools = ToolCallAccumulator()
        self._blocks: dict[int, int] = {}  # content block index → tool call index

    @property
    def tool_calls(self) -> list[dict[str, Any]] | None:
        return self._tools.calls or None

    @property
    def usage(self) -> Usage | None:
        if not self._saw_usage:
            return None
        return Usage(input_tokens=self._input, output_tokens=self._output,
                     total_tokens=self._input + self._output)

    def feed(self, event: SseEvent) -> list[str | dict[str, Any]]:
        """Texts and tool-call deltas of one event, in order."""
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
        elif kind == "content_block_start":
            block = obj.get("content_block")
            if isinstance(block, Mapping) and block.get("type") == "tool_use":
                name, call_id = block.get("name"), block.get("id")
                if not isinstance(name, str):
                    raise ProviderFormatError("tool_use block missing name")
                self._blocks[int(obj.get("index", 0))] = len(self._tools.calls)
                return [self._tools.start(str(call_id or f"toolu_{len(self._blocks)}"), name)]
        elif kind == "content_block_stop":
            at = self._blocks.pop(int(obj.get("index", 0)), None)
            if at is not None and not self._tools.calls[at]["function"]["arguments"]:
                return [self._tools.extend(at, "{}")]  # a call without input
        elif kind == "content_block_delta":
            delta = obj.get("delta")
            if isinstance(delta, Mapping) and delta.get("type") == "text_delta":
                text = delta.get("text")
                if not isinstance(text, str):
                    raise ProviderFormatError("text_delta missing text")
                return [text] if text else []
            if isinstance(delta, Mapping) and delta.get("type") == "input_json_delta":
                at = self._blocks.get(int(obj.get("index", 0)))
                piece = delta.get("partial_json")
                if at is None or not isinstance(piece, str):
                    raise ProviderFormatError("input_json_delta outside a tool_use block")
                return [self._tools.extend(at, piece)] if piece else []
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
        return []  # ping, text block starts/stops and unknown events carry no text

    def end(self) -> None:
        if not self.done:
            raise ProviderFormatError("stream ended before message_stop")

    def finish(self, text: str) -> dict[str, Any]:
        """The run's payload once the stream ended (``text``: the pieces joined)."""
        self.end()
        return stream_payload(text, self.finish_reason, self.usage, self.tool_calls)
