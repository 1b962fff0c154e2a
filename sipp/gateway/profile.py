"""The first-party gateway wire profile: JSON request/response bodies and SSE events.

One module serves the gateway client transport, the gateway server and application-owned
routes (FastAPI, Flask, ...). Routes::

    POST /v1/query  {"model", "prompt", max_tokens?, temperature?, top_p?, stop?, stream?}
    POST /v1/chat   {"model", "messages": [{"role", "content", tool fields?}], ...same options,
                     tools?, tool_choice?, parallel_tool_calls?}
    POST /v1/embed  {"model", "input"}

Messages carry OpenAI's tool fields (assistant ``tool_calls``, ``tool`` turns with
``tool_call_id`` and ``name``); ``tools`` / ``tool_choice`` / ``parallel_tool_calls`` are
OpenAI's request fields. Finite responses are ``{"id", "model", "text", "finish_reason",
"usage"?, "tool_calls"?}`` or ``{"id", "model", "embedding", "usage"?}``; streams are
``text/event-stream`` with events ``token`` ``{"text", "sequence", "tool_calls"?}`` (tool-call
deltas in OpenAI's streaming shape), ``usage``, ``done`` ``{"finish_reason"}`` and
``error`` ``{"error": {"code", "message"}}``; errors are ``{"error": {"code", "message"}}``.

Decoders raise :class:`~sipp.errors.InvalidRequestError` (HTTP 400) naming the field;
response decoders raise :class:`~sipp.errors.EndpointError` with ``kind="protocol"``.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sipp._json import UntrustedJsonError, loads_untrusted
from sipp.errors import (
    EndpointError,
    InvalidRequestError,
    SippError,
    TargetNotFoundError,
    error_from_code,
)
from sipp.tools import ToolRequest, parse_tool_choice, parse_tools
from sipp.types import ChatMessage, FinishReason, SippTextOptions, Usage

if TYPE_CHECKING:
    from sipp.runs import SippTextRun
    from sipp.types import SippEmbeddingResponse, SippTextResponse

__all__ = [
    "DEFAULT_ROUTES",
    "JSON_CONTENT_TYPE",
    "SSE_CONTENT_TYPE",
    "EmbeddingResult",
    "GatewayEmbedRequest",
    "GatewayTextRequest",
    "StreamDone",
    "StreamError",
    "StreamToken",
    "StreamUsage",
    "TextResult",
    "atext_stream",
    "decode_chat_body",
    "decode_embed_body",
    "decode_embedding_response",
    "decode_error_body",
    "decode_query_body",
    "decode_stream_event",
    "decode_text_response",
    "decode_usage",
    "done_event",
    "embedding_response_body",
    "encode_chat_body",
    "encode_embed_body",
    "encode_event",
    "encode_query_body",
    "error_event",
    "error_response",
    "text_response_body",
    "text_stream",
    "token_event",
    "usage_event",
]

JSON_CONTENT_TYPE = "application/json"
SSE_CONTENT_TYPE = "text/event-stream"
DEFAULT_ROUTES: Mapping[str, str] = {
    "query": "/v1/query",
    "chat": "/v1/chat",
    "embed": "/v1/embed",
}

_TEXT_OPTION_FIELDS = ("max_tokens", "temperature", "top_p", "stop", "stream")
_QUERY_FIELDS = frozenset({"model", "prompt", *_TEXT_OPTION_FIELDS})
_CHAT_FIELDS = frozenset({"model", "messages", "tools", "tool_choice", "parallel_tool_calls",
                          *_TEXT_OPTION_FIELDS})
_EMBED_FIELDS = frozenset({"model", "input"})
_FINISH_REASONS: tuple[FinishReason, ...] = ("stop", "length", "cancelled", "error",
                                              "tool_calls")
# Codes written by other implementations of the profile, mapped to ours.
_CODE_ALIASES = {
    "invalidrequest": "invalid_request",
    "invalid_json": "invalid_request",
    "resolution": TargetNotFoundError.default_code,
}


# --------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class GatewayTextRequest:
    """A decoded ``/v1/query`` (``prompt``) or ``/v1/chat`` (``messages``) body."""

    operation: Literal["query", "chat"]
    target: str
    prompt: str | None
    messages: tuple[ChatMessage, ...] | None
    options: SippTextOptions
    stream: bool
    extra: Mapping[str, Any] = field(default_factory=dict)
    tools: ToolRequest | None = None


@dataclass(frozen=True)
class GatewayEmbedRequest:
    """A decoded ``/v1/embed`` body."""

    target: str
    input: str
    extra: Mapping[str, Any] = field(default_factory=dict)


def _load_object(body: bytes | str | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if isinstance(body, bytes | bytearray | str):
        try:
            body = loads_untrusted(body)
        except UntrustedJsonError as exc:
            raise InvalidRequestError(f"{what}: {exc}") from None
    if not isinstance(body, Mapping):
        raise InvalidRequestError(f"{what} must be a JSON object")
    return body


def _split_extra(
    body: Mapping[str, Any], known: frozenset[str], allow_extra: bool
) -> dict[str, Any]:
    extra = {key: value for key, value in body.items() if key not in known}
    if extra and not allow_extra:
        name = sorted(extra)[0]
        raise InvalidRequestError(f"unknown field {name!r} in request body")
    return extra


def _target(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequestError("field 'model' must be a non-empty string (the target name)")
    return model


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(f"field {name!r} must be a number, got {_json_type(value)}")
    return float(value)


def _text_options(body: Mapping[str, Any]) -> tuple[SippTextOptions, bool]:
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
        raise InvalidRequestError(
            f"field 'max_tokens' must be a positive integer, got {_json_type(max_tokens)}"
        )
    stop = body.get("stop")
    if stop is not None and (
        not isinstance(stop, list) or not all(isinstance(item, str) for item in stop)
    ):
        raise InvalidRequestError("field 'stop' must be an array of strings")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequestError(f"field 'stream' must be a boolean, got {_json_type(stream)}")
    try:
        options = SippTextOptions(
            max_tokens=max_tokens,
            temperature=_number(body, "temperature"),
            top_p=_number(body, "top_p"),
            stop=stop or None,
        )
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"invalid field: {exc.message}") from exc
    return options, bool(stream)


def decode_query_body(
    body: bytes | str | Mapping[str, Any], *, allow_extra: bool = False
) -> GatewayTextRequest:
    """Decode a ``/v1/query`` body. Unknown fields are refused unless ``allow_extra``, which
    collects them in ``extra`` (for routes that accept profile extensions)."""
    obj = _load_object(body, "request body")
    extra = _split_extra(obj, _QUERY_FIELDS, allow_extra)
    target = _target(obj)
    prompt = obj.get("prompt")
    if not isinstance(prompt, str):
        raise InvalidRequestError("field 'prompt' must be a string")
    options, stream = _text_options(obj)
    return GatewayTextRequest("query", target, prompt, None, options, stream, extra)


def decode_chat_body(
    body: bytes | str | Mapping[str, Any], *, allow_extra: bool = False
) -> GatewayTextRequest:
    """Decode a ``/v1/chat`` body (``messages`` with roles system, user, assistant, tool;
    optional ``tools`` / ``tool_choice`` / ``parallel_tool_calls``)."""
    obj = _load_object(body, "request body")
    extra = _split_extra(obj, _CHAT_FIELDS, allow_extra)
    target = _target(obj)
    raw = obj.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequestError("field 'messages' must be a non-empty array")
    messages: list[ChatMessage] = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping) or "role" not in item:
            raise InvalidRequestError(
                f"field 'messages[{index}]' must be an object with role and content"
            )
        content = item.get("content")
        if not isinstance(content, str) and not (content is None and item.get("tool_calls")):
            raise InvalidRequestError(f"field 'messages[{index}].content' must be a string")
        try:
            messages.append(ChatMessage.from_dict(item))
        except InvalidRequestError as exc:
            where = "role" if "role" in exc.message else "tool fields"
            raise InvalidRequestError(f"field 'messages[{index}].{where}': {exc.message}") \
                from exc
    options, stream = _text_options(obj)
    tools: ToolRequest | None = None
    if obj.get("tools") or obj.get("tool_choice") is not None:
        specs = parse_tools(obj.get("tools"))
        parallel = obj.get("parallel_tool_calls", True)
        if not isinstance(parallel, bool):
            raise InvalidRequestError("field 'parallel_tool_calls' must be a boolean")
        tools = ToolRequest(specs, parse_tool_choice(obj.get("tool_choice"), specs), parallel)
    return GatewayTextRequest("chat", target, None, tuple(messages), options, stream, extra,
                              tools)


def decode_embed_body(
    body: bytes | str | Mapping[str, Any], *, allow_extra: bool = False
) -> GatewayEmbedRequest:
    """Decode a ``/v1/embed`` body."""
    obj = _load_object(body, "request body")
    extra = _split_extra(obj, _EMBED_FIELDS, allow_extra)
    target = _target(obj)
    text = obj.get("input")
    if not isinstance(text, str):
        raise InvalidRequestError("field 'input' must be a string")
    return GatewayEmbedRequest(target, text, extra)


def _merge_extra(body: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    for key, value in (extra or {}).items():
        if key in body:
            raise InvalidRequestError(f"endpoint_options cannot override typed field: {key}")
        body[key] = value
    return body


def _options_fields(options: SippTextOptions, stream: bool) -> dict[str, Any]:
    return {
        "max_tokens": options.max_tokens,
        "temperature": options.temperature,
        "top_p": options.top_p,
        "stop": list(options.stop or ()),
        "stream": stream,
    }


def encode_query_body(
    target: str,
    prompt: str,
    options: SippTextOptions | None = None,
    *,
    stream: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``/v1/query`` body; ``extra`` fields are added but cannot replace typed ones."""
    body = {"model": target, "prompt": prompt}
    body.update(_options_fields(options or SippTextOptions(), stream))
    return _merge_extra(body, extra)


def encode_chat_body(
    target: str,
    messages: Sequence[ChatMessage],
    options: SippTextOptions | None = None,
    *,
    stream: bool = False,
    extra: Mapping[str, Any] | None = None,
    tools: ToolRequest | None = None,
) -> dict[str, Any]:
    """The ``/v1/chat`` body (``tools`` as OpenAI's fields)."""
    body: dict[str, Any] = {"model": target, "messages": [m.to_dict() for m in messages]}
    body.update(_options_fields(options or SippTextOptions(), stream))
    if tools is not None:
        body.update(tools.to_openai())
    return _merge_extra(body, extra)


def encode_embed_body(
    target: str, input: str, *, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``/v1/embed`` body."""
    return _merge_extra({"model": target, "input": input}, extra)


# --------------------------------------------------------------------------- responses
def text_response_body(
    target: str, response: SippTextResponse | Mapping[str, Any], *, id: str | None = None
) -> dict[str, Any]:
    """The finite JSON body for a text response (``usage`` omitted when unknown)."""
    body: dict[str, Any] = {
        "id": id or "response",
        "model": target,
        "text": response["text"],
        "finish_reason": response["finish_reason"],
    }
    usage = response.get("usage")
    if usage is not None:
        body["usage"] = dict(usage)
    calls = response.get("tool_calls")
    if calls:
        body["tool_calls"] = [dict(c) for c in calls]
    return body


def embedding_response_body(
    target: str, response: SippEmbeddingResponse | Mapping[str, Any], *, id: str | None = None
) -> dict[str, Any]:
    """The finite JSON body for an embedding response."""
    body: dict[str, Any] = {
        "id": id or "response",
        "model": target,
        "embedding": [float(v) for v in response["values"]],
    }
    usage = response.get("usage")
    if usage is not None:
        body["usage"] = dict(usage)
    return body


@dataclass(frozen=True)
class TextResult:
    """A decoded finite text response."""

    id: str | None
    text: str
    finish_reason: FinishReason
    usage: Usage | None
    tool_calls: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class EmbeddingResult:
    """A decoded finite embedding response."""

    id: str | None
    values: list[float]
    usage: Usage | None


def _protocol(message: str, raw: Any = None) -> EndpointError:
    return EndpointError(f"gateway protocol error: {message}", kind="protocol", raw_body=raw)


def _response_object(body: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(body, bytes | bytearray | str):
        try:
            body = loads_untrusted(body)
        except UntrustedJsonError as exc:
            raise _protocol(f"response is not accepted JSON: {exc}") from None
    if not isinstance(body, Mapping):
        raise _protocol("response must be a JSON object", body)
    return body


def _finish_reason(value: Any, raw: Any) -> FinishReason:
    if not isinstance(value, str):
        raise _protocol("response missing finish_reason", raw)
    for known in _FINISH_REASONS:
        if value == known:
            return known
    return "stop"


def decode_usage(value: Any, raw: Any = None) -> Usage | None:
    """Validate a ``usage`` object (``None`` stays ``None``)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _protocol("usage must be an object", raw)
    counts: dict[str, int] = {}
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        item = value.get(key)
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise _protocol(f"usage.{key} must be a non-negative integer", raw)
        counts[key] = item
    return Usage(
        input_tokens=counts["input_tokens"],
        output_tokens=counts["output_tokens"],
        total_tokens=counts["total_tokens"],
    )


def _response_id(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def decode_text_response(body: bytes | str | Mapping[str, Any]) -> TextResult:
    """Decode a finite text response; ``text`` and ``finish_reason`` are required."""
    obj = _response_object(body)
    text = obj.get("text")
    if not isinstance(text, str):
        raise _protocol("response missing text", obj)
    reason = _finish_reason(obj.get("finish_reason"), obj)
    usage = decode_usage(obj.get("usage"), obj)
    return TextResult(_response_id(obj.get("id")), text, reason, usage,
                      _tool_calls(obj.get("tool_calls"), obj))


def _tool_calls(value: Any, raw: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, Mapping) for c in value):
        raise _protocol("tool_calls must be an array of objects", raw)
    return [dict(c) for c in value] or None


def decode_embedding_response(body: bytes | str | Mapping[str, Any]) -> EmbeddingResult:
    """Decode a finite embedding response; ``embedding`` must hold finite numbers."""
    obj = _response_object(body)
    vector = obj.get("embedding")
    if not isinstance(vector, list):
        raise _protocol("embedding response missing vector", obj)
    values: list[float] = []
    for item in vector:
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            raise _protocol("embedding value is not numeric", obj)
        values.append(float(item))
    return EmbeddingResult(_response_id(obj.get("id")), values, decode_usage(obj.get("usage"), obj))


# --------------------------------------------------------------------------- SSE events
def encode_event(name: str, data: Mapping[str, Any]) -> bytes:
    """One SSE frame: ``event: <name>\\ndata: <json>\\n\\n``."""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return f"event: {name}\ndata: {payload}\n\n".encode()


def token_event(text: str, sequence: int,
                tool_calls: Sequence[Mapping[str, Any]] = ()) -> bytes:
    data: dict[str, Any] = {"text": text, "sequence": sequence}
    if tool_calls:
        data["tool_calls"] = [dict(d) for d in tool_calls]
    return encode_event("token", data)


def usage_event(usage: Mapping[str, int]) -> bytes:
    return encode_event("usage", dict(usage))


def done_event(finish_reason: str) -> bytes:
    return encode_event("done", {"finish_reason": finish_reason})


def error_event(error: BaseException) -> bytes:
    return encode_event("error", error_response(error)[1])


@dataclass(frozen=True)
class StreamToken:
    text: str
    sequence: int | None
    tool_calls: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class StreamUsage:
    usage: Usage


@dataclass(frozen=True)
class StreamDone:
    finish_reason: FinishReason


@dataclass(frozen=True)
class StreamError:
    error: SippError


StreamEvent = StreamToken | StreamUsage | StreamDone | StreamError


def decode_stream_event(name: str, data: str) -> StreamEvent:
    """Decode one profile SSE event (``name`` and its ``data`` text)."""
    try:
        obj = loads_untrusted(data)
    except UntrustedJsonError as exc:
        raise _protocol(f"SSE {name} event data is not accepted JSON: {exc}") from None
    if not isinstance(obj, Mapping):
        raise _protocol(f"SSE {name} event data must be a JSON object", obj)
    if name == "token":
        text = obj.get("text")
        if not isinstance(text, str):
            raise _protocol("SSE token event missing text", obj)
        sequence = obj.get("sequence")
        calls = _tool_calls(obj.get("tool_calls"), obj) or []
        return StreamToken(text, sequence if isinstance(sequence, int) else None, tuple(calls))
    if name == "usage":
        usage = decode_usage(obj, obj)
        assert usage is not None
        return StreamUsage(usage)
    if name == "done":
        return StreamDone(_finish_reason(obj.get("finish_reason"), obj))
    if name == "error":
        return StreamError(decode_error_body(None, obj))
    raise _protocol(f"unsupported SSE event: {name}", obj)


def text_stream(run: SippTextRun) -> Iterator[bytes]:
    """SSE frames for a run started with ``emit_tokens=True``: tokens, usage, done, or an
    ``error`` event if the run fails. Feed it to a streaming response (Flask, WSGI)."""
    try:
        for batch in run.tokens():
            yield token_event(batch.text, batch.sequence_start, batch.tool_calls)
        response = run.result()
    except Exception as exc:  # every failure becomes an in-band error event
        yield error_event(exc)
        return
    if response.get("usage") is not None:
        yield usage_event(response["usage"])  # type: ignore[arg-type]
    yield done_event(response["finish_reason"])


async def atext_stream(run: SippTextRun) -> AsyncIterator[bytes]:
    """Async twin of :func:`text_stream` (Starlette/FastAPI ``StreamingResponse``)."""
    try:
        async for batch in run.atokens():
            yield token_event(batch.text, batch.sequence_start, batch.tool_calls)
        response = await run
    except Exception as exc:
        yield error_event(exc)
        return
    if response.get("usage") is not None:
        yield usage_event(response["usage"])  # type: ignore[arg-type]
    yield done_event(response["finish_reason"])


# --------------------------------------------------------------------------- errors
def error_response(error: BaseException) -> tuple[int, dict[str, Any]]:
    """``(status, {"error": {"code", "message"}})`` for ``error``. Errors that are not
    :class:`~sipp.errors.SippError` become a 500 ``internal`` without their text."""
    if isinstance(error, SippError):
        return type(error).http_status, error.to_dict()
    return 500, {"error": {"code": "internal", "message": "internal gateway error"}}


def decode_error_body(
    status: int | None, body: Any, *, retry_after: float | None = None
) -> SippError:
    """Rebuild the error a gateway sent (``body`` parsed or raw). A body without a profile
    error object gives ``EndpointError(kind="http")`` carrying ``status``."""
    obj: Any = body
    if isinstance(body, bytes | bytearray | str):
        try:
            obj = loads_untrusted(body)
        except UntrustedJsonError:
            obj = None
    error = obj.get("error") if isinstance(obj, Mapping) else None
    code = error.get("code") if isinstance(error, Mapping) else None
    message = error.get("message") if isinstance(error, Mapping) else None
    if isinstance(code, str) and code:
        text = message if isinstance(message, str) and message else f"gateway error {code}"
        rebuilt = error_from_code(_CODE_ALIASES.get(code, code), text, retry_after=retry_after)
        if type(rebuilt) is not SippError:
            return rebuilt
        return EndpointError(
            f"gateway returned error {code}: {text}",
            kind="http" if status is not None else "protocol",
            code=code,
            status=status,
            retry_after=retry_after,
            raw_body=obj,
        )
    raw = obj if obj is not None else _snippet(body)
    where = f"HTTP {status}" if status is not None else "an error event"
    return EndpointError(
        f"gateway returned {where} without a profile error body",
        kind="http" if status is not None else "protocol",
        status=status,
        retry_after=retry_after,
        raw_body=raw,
    )


def _snippet(body: Any) -> Any:
    if isinstance(body, bytes | bytearray):
        return bytes(body[:2048]).decode("utf-8", errors="replace")
    return body


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
