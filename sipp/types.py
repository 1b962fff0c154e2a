"""Value types shared by every endpoint kind: messages, request options, responses."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from sipp.config import SamplingRuntimeConfig, SpeculativeConfig
from sipp.errors import InvalidRequestError

__all__ = [
    "ChatMessage",
    "ChatRole",
    "EndpointKind",
    "EndpointRef",
    "FinishReason",
    "LocalEmbedOptions",
    "LocalTextOptions",
    "SippEmbeddingResponse",
    "SippModelInfo",
    "SippTextOptions",
    "SippTextResponse",
    "TokenBatch",
    "Usage",
]

EndpointKind = Literal["local", "gateway", "provider"]
ChatRole = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "cancelled", "error", "tool_calls"]

_ENDPOINT_KINDS = ("local", "gateway", "provider")
_CHAT_ROLES = ("system", "user", "assistant", "tool")
_UINT32_MAX = 2**32 - 1


@dataclass(frozen=True)
class EndpointRef:
    """A registered endpoint: ``kind`` ("local", "gateway", "provider") and its ``id``."""

    kind: EndpointKind
    id: str

    def __post_init__(self) -> None:
        if self.kind not in _ENDPOINT_KINDS:
            raise InvalidRequestError(
                f"EndpointRef.kind must be one of: local, gateway, provider; got {self.kind!r}"
            )
        if not isinstance(self.id, str) or not self.id:
            raise InvalidRequestError("EndpointRef.id must be a non-empty string")

    @staticmethod
    def local(id: str) -> EndpointRef:
        return EndpointRef("local", id)

    @staticmethod
    def gateway(id: str) -> EndpointRef:
        return EndpointRef("gateway", id)

    @staticmethod
    def provider(id: str) -> EndpointRef:
        return EndpointRef("provider", id)

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id}


@dataclass(frozen=True)
class ChatMessage:
    """One conversation turn: ``role`` is system, user, assistant or tool.

    An assistant turn may carry ``tool_calls`` (OpenAI's shape: ``{"id", "type":
    "function", "function": {"name", "arguments"}}``, arguments as JSON text or an object;
    ``content`` may then be empty or None); a ``tool`` turn carries a tool's result in
    ``content`` with the ``tool_call_id`` it answers and optionally the function ``name``.
    """

    role: ChatRole
    content: str = ""
    tool_calls: Sequence[Mapping[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.role not in _CHAT_ROLES:
            raise InvalidRequestError(
                f"chat role must be one of: system, user, assistant, tool; got {self.role!r}"
            )
        if self.content is None:
            object.__setattr__(self, "content", "")
        if not isinstance(self.content, str):
            raise InvalidRequestError(
                f"chat message content must be a string, got {type(self.content).__name__}"
            )
        if self.tool_calls is not None:
            if self.role != "assistant":
                raise InvalidRequestError("tool_calls are only valid on an assistant message")
            object.__setattr__(self, "tool_calls", _tool_calls(self.tool_calls) or None)
        if self.tool_call_id is None and self.name is None:
            return  # most turns: nothing more to check
        for key in ("tool_call_id", "name"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidRequestError(f"chat message {key} must be a non-empty string")
        if self.tool_call_id is not None and self.role != "tool":
            raise InvalidRequestError("tool_call_id is only valid on a tool message")

    def __hash__(self) -> int:
        calls = json.dumps(self.tool_calls, sort_keys=True) if self.tool_calls else None
        return hash((self.role, self.content, calls, self.tool_call_id, self.name))

    def to_dict(self) -> dict[str, Any]:
        """``{"role", "content"}`` plus whichever tool fields are set."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [json.loads(json.dumps(c)) for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out

    @staticmethod
    def from_dict(message: Mapping[str, Any]) -> ChatMessage:
        """A message from an OpenAI-style dict (``role``, ``content`` and the tool keys)."""
        unknown = set(message) - {"role", "content", "tool_calls", "tool_call_id", "name"}
        if unknown:
            raise InvalidRequestError(
                f"unknown message key(s): {', '.join(sorted(map(str, unknown)))} (known: "
                "role, content, tool_calls, tool_call_id, name)"
            )
        if "role" not in message:
            raise InvalidRequestError("message has no role")
        if "content" not in message and not message.get("tool_calls"):
            raise InvalidRequestError("message has no content")
        return ChatMessage(
            message["role"], message.get("content") or "", message.get("tool_calls"),
            message.get("tool_call_id"), message.get("name"),
        )


def _tool_calls(raw: Any) -> tuple[dict[str, Any], ...]:
    """Normalize assistant tool calls: arguments as JSON text, ids and types checked."""
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
        raise InvalidRequestError("tool_calls must be a list of calls")
    out: list[dict[str, Any]] = []
    for index, call in enumerate(raw):
        where = f"tool_calls[{index}]"
        if not isinstance(call, Mapping):
            raise InvalidRequestError(f"{where} must be an object")
        function = call.get("function")
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise InvalidRequestError(f"{where}.function.name must be a string")
        if call.get("type", "function") != "function":
            raise InvalidRequestError(f"{where}.type must be 'function'")
        args = function.get("arguments", "{}")
        if isinstance(args, Mapping):
            args = json.dumps(args, ensure_ascii=False)
        if not isinstance(args, str):
            raise InvalidRequestError(f"{where}.function.arguments must be JSON text or an object")
        call_id = call.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise InvalidRequestError(f"{where}.id must be a string")
        entry: dict[str, Any] = {"type": "function",
                                 "function": {"name": function["name"], "arguments": args}}
        if call_id is not None:
            entry = {"id": call_id, **entry}
        out.append(entry)
    return tuple(out)


def _check_finite(name: str, value: float | None, low: float, high: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise InvalidRequestError(f"{name} must be finite, got {value}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise InvalidRequestError(f"{name} must be {bound}, got {value}")


MAX_STOP_STRINGS = 32
"""Most stop strings one request may give (each costs a scan per token; OpenAI allows 4)."""
MAX_STOP_CHARS = 1024
"""Longest stop string."""


def _check_stop(name: str, stop: Sequence[str] | None) -> None:
    if stop is None:
        return
    if isinstance(stop, str) or not isinstance(stop, Sequence):
        raise InvalidRequestError(f"{name} must be a list of strings")
    if len(stop) > MAX_STOP_STRINGS:
        raise InvalidRequestError(
            f"{name} holds {len(stop)} strings; at most {MAX_STOP_STRINGS} are allowed"
        )
    for item in stop:
        if not isinstance(item, str):
            raise InvalidRequestError(
                f"{name} must contain only strings, got {type(item).__name__}"
            )
        if len(item) > MAX_STOP_CHARS:
            raise InvalidRequestError(
                f"{name} has a string of {len(item)} characters; at most {MAX_STOP_CHARS}"
            )


@dataclass(frozen=True, kw_only=True)
class SippTextOptions:
    """Generation options shared by every endpoint kind."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or not 0 < self.max_tokens <= _UINT32_MAX
        ):
            raise InvalidRequestError(
                f"max_tokens must be a positive integer, got {self.max_tokens!r}"
            )
        _check_finite("temperature", self.temperature, 0.0, None)
        _check_finite("top_p", self.top_p, 0.0, 1.0)
        _check_stop("stop", self.stop)
        if self.stop is not None:
            object.__setattr__(self, "stop", tuple(self.stop))


@dataclass(frozen=True, kw_only=True)
class LocalTextOptions:
    """Local-only text options; rejected by gateway and provider endpoints.

    ``json_schema`` may be a dict or JSON text and takes precedence over ``grammar``.
    ``media`` holds images (file paths, raw bytes or HxWx3 uint8 arrays) for vision models.
    ``fill_window=True`` with ``options.max_tokens`` unset generates until end of sequence
    or until the context window is full, instead of ``DEFAULT_MAX_TOKENS`` (what OpenAI
    clients expect when they omit ``max_tokens``).
    ``speculative`` overrides the model's speculative decoding (``mode``,
    ``max_draft_tokens``, the n-gram sizes; only the fields it sets).
    """

    context_key: str | None = None
    grammar: str | None = None
    json_schema: Mapping[str, Any] | str | bool | None = None
    sampling: SamplingRuntimeConfig | None = None
    media: Sequence[Any] | None = None
    fill_window: bool = False
    speculative: SpeculativeConfig | None = None

    def __post_init__(self) -> None:
        if self.speculative is not None and not isinstance(self.speculative,
                                                           SpeculativeConfig):
            raise InvalidRequestError("local.speculative must be a SpeculativeConfig")
        if self.context_key is not None and not isinstance(self.context_key, str):
            raise InvalidRequestError("local.context_key must be a string")
        if self.grammar is not None and (not isinstance(self.grammar, str) or not self.grammar):
            raise InvalidRequestError("local.grammar must be a non-empty GBNF string")
        if isinstance(self.json_schema, str):
            try:
                json.loads(self.json_schema)
            except json.JSONDecodeError as exc:
                raise InvalidRequestError(
                    f"local.json_schema is not valid JSON: {exc.msg} at position {exc.pos}"
                ) from exc
        elif self.json_schema is not None and not isinstance(self.json_schema, Mapping | bool):
            raise InvalidRequestError("local.json_schema must be a dict, a bool or JSON text")
        if self.sampling is not None:
            if not isinstance(self.sampling, SamplingRuntimeConfig):
                raise InvalidRequestError(
                    "local.sampling must be a SamplingRuntimeConfig (SamplingRuntimeOverride)"
                )
        if self.media is not None:
            if isinstance(self.media, str | bytes) or not isinstance(self.media, Sequence):
                raise InvalidRequestError("local.media must be a list of images")
            object.__setattr__(self, "media", tuple(self.media))
        if not isinstance(self.fill_window, bool):
            raise InvalidRequestError("local.fill_window must be a bool")

    def is_empty(self) -> bool:
        return (
            self.context_key is None
            and self.grammar is None
            and self.json_schema is None
            and self.sampling is None
            and not self.media
            and not self.fill_window
            and self.speculative is None
        )


@dataclass(frozen=True, kw_only=True)
class LocalEmbedOptions:
    """Local-only embedding options; ``normalize`` (L2) defaults to True."""

    context_key: str | None = None
    normalize: bool | None = None

    def __post_init__(self) -> None:
        if self.context_key is not None and not isinstance(self.context_key, str):
            raise InvalidRequestError("local.context_key must be a string")
        if self.normalize is not None and not isinstance(self.normalize, bool):
            raise InvalidRequestError("local.normalize must be a bool")

    def is_empty(self) -> bool:
        return self.context_key is None and self.normalize is None


@dataclass(frozen=True)
class TokenBatch:
    """Text produced since the previous batch of one run.

    ``sequence_start`` is the index of the first token of this batch in the run's output,
    ``token_count`` how many tokens it covers (0 for text released late, e.g. held back by
    a possible stop string). ``tool_calls`` holds tool-call deltas in OpenAI's streaming
    shape (``{"index", "id", "type", "function": {"name", "arguments"}}`` when a call
    starts, then ``{"index", "function": {"arguments": fragment}}``), in output order after
    ``text``.
    """

    text: str
    token_count: int
    sequence_start: int
    request_id: str = ""
    tool_calls: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "token_count": self.token_count,
            "sequence_start": self.sequence_start,
            "request_id": self.request_id,
        }
        if self.tool_calls:
            out["tool_calls"] = [dict(d) for d in self.tool_calls]
        return out


class Usage(TypedDict):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class _SippTextResponseFields(TypedDict):
    endpoint: dict[str, str]
    text: str
    finish_reason: FinishReason
    usage: Usage | None
    local_stats: dict[str, Any] | None


class SippTextResponse(_SippTextResponseFields, total=False):
    """What ``SippTextRun.result()`` returns; ``logprobs`` only from local endpoints with
    ``sampling.n_probs > 0`` (per token: ``token``, ``text``, ``logprob``,
    ``top_logprobs``); ``tool_calls`` (OpenAI's shape, arguments as JSON text) when the
    model called tools (``finish_reason`` is then ``"tool_calls"`` and ``text`` holds only
    the text around the calls)."""

    logprobs: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]


class SippEmbeddingResponse(TypedDict):
    """What ``SippEmbeddingRun.result()`` returns: ``values`` is one vector (``list[float]``)
    for a string input, or one vector per input (``list[list[float]]``) for a list."""

    endpoint: dict[str, str]
    values: list[Any]
    usage: Usage | None
    local_stats: dict[str, Any] | None
    pooling: str | None
    normalized: bool | None


class SippModelInfo(TypedDict):
    """What ``SippClient.model_info`` reports about a local endpoint's loaded model.

    ``source`` is the model source as given (path, packaged name, ``hf://`` or URL) and
    ``path`` the file libllama opened; ``size`` is bytes of tensor data, ``n_params`` the
    parameter count; ``embedding_size`` the length of an embed vector; ``chat_template`` is
    the template chat uses (the descriptor's override, else the GGUF's, else None);
    ``capabilities`` says which operations this endpoint supports as loaded.
    """

    endpoint: str
    source: str
    path: str
    architecture: str
    description: str
    n_params: int
    size: int
    n_ctx_train: int
    n_ctx: int
    n_vocab: int
    n_layer: int
    embedding_size: int
    chat_template: str | None
    capabilities: dict[str, bool]
