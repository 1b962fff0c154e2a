"""Pieces shared by the provider adapters: typed-field merging and parsed results."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sipp.errors import ProviderError
from sipp.providers._errors import ProviderFormatError
from sipp.types import FinishReason, Usage

__all__ = [
    "ParsedEmbedding",
    "ParsedText",
    "ProviderStreamError",
    "ToolCallAccumulator",
    "merge_options",
    "stream_payload",
    "usage_of",
    "vector_of",
]


@dataclass(frozen=True)
class ParsedText:
    text: str
    finish_reason: FinishReason
    usage: Usage | None
    response_id: str | None
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: list[dict[str, Any]] | None = None


class ToolCallAccumulator:
    """Streamed tool-call pieces → Sipp's deltas (``{"index", "id", "type", "function":
    {"name", "arguments"}}`` first, then ``{"index", "function": {"arguments"}}``) and the
    complete calls."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def start(self, call_id: str, name: str, arguments: str = "") -> dict[str, Any]:
        index = len(self.calls)
        self.calls.append({"id": call_id, "type": "function",
                           "function": {"name": name, "arguments": arguments}})
        return {"index": index, "id": call_id, "type": "function",
                "function": {"name": name, "arguments": arguments}}

    def extend(self, index: int, fragment: str) -> dict[str, Any]:
        if not 0 <= index < len(self.calls):
            raise ProviderFormatError(f"tool call delta for unknown index {index}")
        self.calls[index]["function"]["arguments"] += fragment
        return {"index": index, "function": {"arguments": fragment}}


def stream_payload(text: str, finish_reason: FinishReason | None, usage: Usage | None,
                   tool_calls: list[dict[str, Any]] | None,
                   logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A finished stream's run payload (``text``: all its pieces joined); a stream that
    called tools and stopped finishes with ``tool_calls``."""
    result: dict[str, Any] = {"text": text, "finish_reason": finish_reason or "stop",
                              "usage": usage, "local_stats": None}
    if logprobs:
        result["logprobs"] = logprobs
    if tool_calls:
        result["tool_calls"] = tool_calls
        if result["finish_reason"] == "stop":
            result["finish_reason"] = "tool_calls"
    return result


@dataclass(frozen=True)
class ParsedEmbedding:
    values: list[float]
    usage: Usage | None
    response_id: str | None


def merge_options(
    provider: str,
    body: dict[str, Any],
    typed: frozenset[str],
    provider_options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Add ``provider_options`` to ``body``; a key naming a typed field is refused."""
    for key, value in (provider_options or {}).items():
        if key in typed:
            raise ProviderError(
                f"provider_options cannot override typed field: {key}",
                provider=provider,
                kind="invalid_request",
            )
        body[key] = value
    return body


def count(value: Any, name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProviderFormatError(f"{name} must be a non-negative integer")
    return value


def usage_of(raw: Any, input_key: str, output_key: str) -> Usage | None:
    """Usage from an OpenAI-style object (``total_tokens`` used when present)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ProviderFormatError("usage must be an object")
    input_tokens = count(raw.get(input_key), f"usage.{input_key}")
    output_tokens = count(raw.get(output_key), f"usage.{output_key}")
    total = raw.get("total_tokens")
    total_tokens = count(total, "usage.total_tokens") if total is not None else (
        input_tokens + output_tokens
    )
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=total_tokens)


def vector_of(raw: Any) -> list[float]:
    if not isinstance(raw, list):
        raise ProviderFormatError("embedding must be an array of numbers")
    values: list[float] = []
    for item in raw:
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            raise ProviderFormatError("embedding value is not a finite number")
        values.append(float(item))
    return values


def require_object(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ProviderFormatError(f"{what} must be a JSON object")
    return raw


def text_field(raw: Mapping[str, Any], key: str, what: str, *, null_ok: bool = False) -> str:
    value = raw.get(key)
    if value is None and null_ok:
        return ""
    if not isinstance(value, str):
        raise ProviderFormatError(f"{what} missing {key}")
    return value


class ProviderStreamError(Exception):
    """The provider reported an error inside a stream; ``payload`` is its JSON."""

    def __init__(self, payload: Any) -> None:
        super().__init__("provider stream error")
        self.payload = payload
