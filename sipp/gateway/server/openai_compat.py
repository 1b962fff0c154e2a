"""OpenAI-compatible routes on the public listener (``{prefix}/chat/completions``,
``/completions``, ``/embeddings``, ``/models``) so the official ``openai`` package,
LangChain and LlamaIndex work unchanged; ``model`` is the gateway target name and the same
bearer tokens and allowlists apply. Errors use OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` with the gateway's status codes.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from sipp._json import UntrustedJsonError, loads_untrusted
from sipp.errors import InvalidRequestError, SippError
from sipp.gateway.server.config import TokenConfig
from sipp.gateway.server.execution import Execution, Route
from sipp.gateway.server.http import Exchange
from sipp.runs import SippEmbeddingRun, SippTextRun
from sipp.types import ChatMessage, SippTextOptions, TokenBatch

__all__ = ["openai_error", "openai_routes"]

# Fields clients commonly send: accepted without effect. The ones in _DEFAULT_OK change the
# output, so only their neutral values pass (anything else is a 400 naming the field, never
# a silently dropped setting); the rest carry no generation meaning here.
_IGNORED = frozenset({"user", "frequency_penalty", "presence_penalty", "logit_bias", "seed",
                      "logprobs", "top_logprobs", "store", "metadata", "service_tier",
                      "parallel_tool_calls", "stream_options", "n", "response_format",
                      "tool_choice", "tools", "functions", "function_call", "echo",
                      "best_of", "suffix", "dimensions", "encoding_format"})
_DEFAULT_OK: dict[str, Any] = {"n": (1,), "logprobs": (False, None), "echo": (False,),
                               "best_of": (1,), "tool_choice": ("none",), "tools": ([],),
                               "functions": ([],), "suffix": ("",),
                               "frequency_penalty": (0,), "presence_penalty": (0,),
                               "logit_bias": ({},), "top_logprobs": (0,), "seed": (),
                               "function_call": ("none",)}


def openai_error(exc: SippError) -> tuple[int, Any]:
    status = type(exc).http_status if isinstance(exc, SippError) else 500
    kind = "invalid_request_error" if status in (400, 404, 413) else exc.code
    return status, {"error": {"message": exc.message, "type": kind, "param": None,
                              "code": exc.code}}


def openai_routes(execution: Execution, prefix: str) -> dict[str, Route]:
    """The four OpenAI-compatible routes under ``prefix``."""
    base = prefix.rstrip("/")
    return {
        f"{base}/chat/completions": Route("chat_completions", partial(_text, execution, chat=True),
                                          openai_error),
        f"{base}/completions": Route("completions", partial(_text, execution, chat=False),
                                     openai_error),
        f"{base}/embeddings": Route("embeddings", partial(_embeddings, execution), openai_error),
        f"{base}/models": Route("models", partial(_models, execution), openai_error, method="GET"),
    }


# --------------------------------------------------------------------------- decoding
def _object(body: bytes) -> dict[str, Any]:
    try:
        obj = loads_untrusted(body)
    except UntrustedJsonError as exc:
        raise InvalidRequestError(f"request body: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRequestError("request body must be a JSON object")
    model = obj.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequestError("field 'model' must be a non-empty string (the target name)")
    return obj


def _check_unsupported(obj: Mapping[str, Any], known: frozenset[str]) -> None:
    for key, value in obj.items():
        if key in known:
            continue
        if key not in _IGNORED:
            raise InvalidRequestError(f"unsupported field {key!r}")
        allowed = _DEFAULT_OK.get(key)
        if allowed is not None and value is not None and value not in allowed:
            neutral = " or ".join(json.dumps(v) for v in allowed) if allowed else "null"
            raise InvalidRequestError(
                f"field {key!r} is not supported with value {value!r} (this gateway accepts "
                f"only {neutral} there)")
    fmt = obj.get("response_format")
    if fmt is not None and fmt != {"type": "text"}:
        raise InvalidRequestError("field 'response_format' supports only {\"type\": \"text\"}")


def _options(obj: Mapping[str, Any]) -> SippTextOptions:
    # an explicit null max_completion_tokens leaves max_tokens in force
    max_tokens = obj.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = obj.get("max_tokens")
    stop = obj.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    for name in ("temperature", "top_p"):
        value = obj.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidRequestError(f"field {name!r} must be a number")
    if max_tokens is not None and (isinstance(max_tokens, bool) or
                                   not isinstance(max_tokens, int)):
        raise InvalidRequestError("field 'max_tokens' must be a positive integer")
    if stop is not None and (not isinstance(stop, list) or
                             not all(isinstance(s, str) for s in stop)):
        raise InvalidRequestError("field 'stop' must be a string or an array of strings")
    return SippTextOptions(max_tokens=max_tokens, temperature=obj.get("temperature"),
                           top_p=obj.get("top_p"), stop=stop or None)


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # [{"type": "text", "text": ...}, ...]
        parts: list[str] = []
        for index, part in enumerate(value):
            if not isinstance(part, Mapping) or part.get("type") != "text" or \
                    not isinstance(part.get("text"), str):
                raise InvalidRequestError(f"field '{where}[{index}]' must be a text part "
                                          "(only text content is supported)")
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidRequestError(f"field '{where}' must be a string or an array of text parts")


def _messages(obj: Mapping[str, Any]) -> list[ChatMessage]:
    raw = obj.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequestError("field 'messages' must be a non-empty array")
    out: list[ChatMessage] = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise InvalidRequestError(f"field 'messages[{index}]' must be an object")
        role = item.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise InvalidRequestError(f"field 'messages[{index}].role' must be system, "
                                      f"developer, user or assistant; got {role!r}")
        out.append(ChatMessage(role, _content(item.get("content"),
                                              f"messages[{index}].content")))
    return out


def _prompt(obj: Mapping[str, Any]) -> str:
    prompt = obj.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequestError("field 'prompt' must be a string (one prompt per request)")
    return prompt


# --------------------------------------------------------------------------- encoding
def _finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def _usage(usage: Mapping[str, int] | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {"prompt_tokens": usage["input_tokens"], "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["total_tokens"]}


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + \
        b"\n\n"


class _ChunkStream:
    """OpenAI ``chat.completion.chunk`` / ``text_completion`` SSE frames."""

    def __init__(self, rid: str, model: str, chat: bool, include_usage: bool) -> None:
        self.head = {"id": rid, "object": "chat.completion.chunk" if chat else
                     "text_completion", "created": int(time.time()), "model": model}
        self.chat = chat
        self.include_usage = include_usage
        self.first = True

    def _choice(self, text: str, finish: str | None) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {"content": text} if text or finish is None else {}
            if self.first:
                delta["role"] = "assistant"
                self.first = False
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

    def token(self, batch: TokenBatch) -> bytes:
        return _sse({**self.head, "choices": [self._choice(batch.text, None)]})

    def end(self, response: Any) -> bytes:
        out = _sse({**self.head, "choices": [self._choice("", _finish(
            response["finish_reason"]))]})
        usage = _usage(response.get("usage"))
        if self.include_usage and usage is not None:
            out += _sse({**self.head, "choices": [], "usage": usage})
        return out + b"data: [DONE]\n\n"

    def error(self, exc: SippError) -> bytes:
        return _sse(openai_error(exc)[1]) + b"data: [DONE]\n\n"


# --------------------------------------------------------------------------- handlers
async def _text(execution: Execution, ex: Exchange, token: TokenConfig, body: bytes, *,
                chat: bool) -> str:
    obj = _object(body)
    known = frozenset({"model", "stream", "max_tokens", "max_completion_tokens", "temperature",
                       "top_p", "stop", "messages" if chat else "prompt"})
    _check_unsupported(obj, known)
    options = _options(obj)
    stream = obj.get("stream") is True
    include_usage = bool((obj.get("stream_options") or {}).get("include_usage"))
    name: str = obj["model"]
    target = execution.state.resolve_target(token, name)
    client = execution.state.client
    messages = _messages(obj) if chat else None
    prompt = None if chat else _prompt(obj)
    rid = ("chatcmpl-" if chat else "cmpl-") + ex.request_id

    def start() -> SippTextRun:
        if messages is not None:
            return client.chat(messages, endpoint=target.ref, options=options,
                               emit_tokens=stream, request_id=ex.request_id)
        assert prompt is not None
        return client.query(prompt, endpoint=target.ref, options=options, emit_tokens=stream,
                            request_id=ex.request_id)

    async def serve(run: SippTextRun) -> None:
        operation = "chat_completions" if chat else "completions"
        if stream:
            response = await execution.stream(ex, run, operation,
                                        _ChunkStream(rid, name, chat, include_usage))
        else:
            response = await execution.await_run(ex, run)
            finish = _finish(response["finish_reason"])
            choice: dict[str, Any] = (
                {"index": 0, "message": {"role": "assistant", "content": response["text"]},
                 "logprobs": None, "finish_reason": finish} if chat else
                {"index": 0, "text": response["text"], "logprobs": None, "finish_reason": finish})
            out: dict[str, Any] = {"id": rid, "object": "chat.completion" if chat else
                                   "text_completion", "created": int(time.time()),
                                   "model": name, "choices": [choice]}
            usage = _usage(response.get("usage"))
            if usage is not None:
                out["usage"] = usage
            await ex.json(200, out)
        if response is not None:
            execution.state.record_usage(ex, name, response.get("usage"))

    await execution.admitted(start, serve)
    return name


async def _embeddings(execution: Execution, ex: Exchange, token: TokenConfig, body: bytes) -> str:
    obj = _object(body)
    _check_unsupported(obj, frozenset({"model", "input"}))
    fmt = obj.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise InvalidRequestError("field 'encoding_format' must be float or base64")
    if obj.get("dimensions") is not None:
        raise InvalidRequestError("field 'dimensions' is not supported")
    raw = obj.get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs or \
            not all(isinstance(item, str) for item in inputs):
        raise InvalidRequestError("field 'input' must be a string or a non-empty array of "
                                  "strings (token arrays are not supported)")
    name: str = obj["model"]
    target = execution.state.resolve_target(token, name)

    def start() -> SippEmbeddingRun:
        return execution.state.client.embed(raw if isinstance(raw, str) else inputs,
                                      endpoint=target.ref, request_id=ex.request_id)

    async def serve(run: SippEmbeddingRun) -> None:
        response = await execution.await_run(ex, run)
        vectors: list[list[float]] = response["values"] if not isinstance(raw, str) else [
            response["values"]]
        data = [{"object": "embedding", "index": i,
                 "embedding": _vector(v, fmt)} for i, v in enumerate(vectors)]
        usage = response.get("usage")
        execution.state.record_usage(ex, name, usage)
        tokens = usage["input_tokens"] if usage else 0
        await ex.json(200, {"object": "list", "data": data, "model": name,
                            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    await execution.admitted(start, serve)
    return name


def _vector(values: list[float], fmt: str) -> Any:
    if fmt == "float":
        return [float(v) for v in values]
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


async def _models(execution: Execution, ex: Exchange, token: TokenConfig, body: bytes) -> None:
    created = int(execution.state.started)
    data = [{"id": name, "object": "model", "created": created, "owned_by": "sipp-gateway"}
            for name in execution.state.targets.states if token.allows(name)]
    await ex.json(200, {"object": "list", "data": data})
