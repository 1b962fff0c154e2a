"""Encoding Sipp text responses as OpenAI ``chat.completion`` / ``text_completion`` objects
and SSE chunks: text, tool calls (and their streamed deltas), finish reasons, usage and
``logprobs`` in OpenAI's shapes (``logprobs.content[]`` for chat, the legacy
``tokens``/``token_logprobs``/``top_logprobs`` lists for completions)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sipp.errors import SippError
from sipp.types import TokenBatch

__all__ = ["ChunkStream", "choice", "finish_reason", "openai_error", "usage"]

_TYPES = {400: "invalid_request_error", 404: "invalid_request_error",
          405: "invalid_request_error", 413: "invalid_request_error",
          401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def openai_error(exc: SippError) -> tuple[int, Any]:
    """``(status, {"error": {"message", "type", "param", "code"}})``; ``param`` names the
    offending request field when the error knows it."""
    status = type(exc).http_status if isinstance(exc, SippError) else 500
    param = getattr(exc, "param", None)
    return status, {"error": {"message": exc.message, "type": _TYPES.get(status, exc.code),
                              "param": param if isinstance(param, str) else None,
                              "code": exc.code}}


def finish_reason(reason: str) -> str:
    return reason if reason in ("length", "tool_calls") else "stop"


def usage(raw: Mapping[str, int] | None) -> dict[str, int] | None:
    if raw is None:
        return None
    return {"prompt_tokens": raw["input_tokens"], "completion_tokens": raw["output_tokens"],
            "total_tokens": raw["total_tokens"]}


def _entry(token: Mapping[str, Any]) -> dict[str, Any]:
    text = str(token["text"])
    return {"token": text, "logprob": float(token["logprob"]), "bytes": list(text.encode())}


def chat_logprobs(entries: Sequence[Mapping[str, Any]], top: int) -> dict[str, Any]:
    """``{"content": [...]}``: each token with its ``top`` alternatives."""
    return {"content": [
        {**_entry(e), "top_logprobs": [_entry(t) for t in e["top_logprobs"][:top]]}
        for e in entries]}


def completion_logprobs(entries: Sequence[Mapping[str, Any]], top: int,
                        offset: int = 0) -> dict[str, Any]:
    """The legacy completions shape (``text_offset`` counts characters)."""
    offsets = []
    for e in entries:
        offsets.append(offset)
        offset += len(str(e["text"]))
    return {"tokens": [str(e["text"]) for e in entries],
            "token_logprobs": [float(e["logprob"]) for e in entries],
            "top_logprobs": [{str(t["text"]): float(t["logprob"]) for t in e["top_logprobs"][:top]}
                             for e in entries],
            "text_offset": offsets}


def choice(response: Mapping[str, Any], index: int, *, chat: bool, logprobs: bool,
           top: int) -> dict[str, Any]:
    """One ``choices[i]`` of a non-streamed response."""
    entries = response.get("logprobs") or []
    finish = finish_reason(response["finish_reason"])
    if chat:
        calls = response.get("tool_calls") or []
        message: dict[str, Any] = {"role": "assistant",
                                   "content": response["text"] if response["text"] or not calls
                                   else None}
        if calls:
            message["tool_calls"] = [dict(c) for c in calls]
        return {"index": index, "message": message,
                "logprobs": chat_logprobs(entries, top) if logprobs else None,
                "finish_reason": finish}
    return {"index": index, "text": response["text"],
            "logprobs": completion_logprobs(entries, top) if logprobs else None,
            "finish_reason": finish}


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + \
        b"\n\n"


class ChunkStream:
    """OpenAI ``chat.completion.chunk`` / ``text_completion`` SSE frames for one choice
    ``index``; logprobs go out with the last chunk (clients concatenate ``content``)."""

    def __init__(self, rid: str, model: str, chat: bool, include_usage: bool, *,
                 index: int = 0, logprobs: bool = False, top: int = 0) -> None:
        self.head = {"id": rid, "object": "chat.completion.chunk" if chat else
                     "text_completion", "created": int(time.time()), "model": model}
        self.chat = chat
        self.include_usage = include_usage
        self.index = index
        self.logprobs = logprobs
        self.top = top
        self.first = True
        # A text-only chunk after the first is the same JSON but for its text: serialised
        # once up to the text and from it, each such frame only encodes the text.
        head = json.dumps(self.head, separators=(",", ":"), ensure_ascii=False)[:-1]
        key = "delta\":{\"content\"" if chat else "text\""
        self._text_open = (f'data: {head},"choices":[{{"index":{index},"{key}:').encode()
        self._text_close = (b'}' if chat else b'') + \
            b',"logprobs":null,"finish_reason":null}]}\n\n'

    def _choice(self, text: str, finish: str | None, calls: Sequence[Mapping[str, Any]] = (),
                logprobs: Any = None) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {"content": text} if text or (finish is None and not calls) \
                else {}
            if calls:
                delta["tool_calls"] = [dict(c) for c in calls]
            if self.first:
                delta["role"] = "assistant"
                self.first = False
            return {"index": self.index, "delta": delta, "logprobs": logprobs,
                    "finish_reason": finish}
        return {"index": self.index, "text": text, "logprobs": logprobs, "finish_reason": finish}

    def token(self, batch: TokenBatch) -> bytes:
        if self.first or batch.tool_calls:
            return self.frame(batch.text, batch.tool_calls)
        if not batch.text:
            return b""  # a token still held back (stop string, tool-call text): no frame
        return self._text_open + json.dumps(batch.text, ensure_ascii=False).encode() + \
            self._text_close

    def frame(self, text: str, calls: Sequence[Mapping[str, Any]] = ()) -> bytes:
        return _sse({**self.head, "choices": [self._choice(text, None, calls)]})

    def last(self, response: Mapping[str, Any]) -> bytes:
        """The finishing chunk of this choice (with its logprobs)."""
        lp = None
        if self.logprobs:
            entries = response.get("logprobs") or []
            lp = chat_logprobs(entries, self.top) if self.chat else \
                completion_logprobs(entries, self.top)
        return _sse({**self.head, "choices": [self._choice(
            "", finish_reason(response["finish_reason"]), logprobs=lp)]})

    def end(self, response: Any) -> bytes:
        return self.last(response) + self.tail(response.get("usage"))

    def tail(self, raw_usage: Mapping[str, int] | None) -> bytes:
        out = b""
        total = usage(raw_usage)
        if self.include_usage and total is not None:
            out += _sse({**self.head, "choices": [], "usage": total})
        return out + b"data: [DONE]\n\n"

    def error(self, exc: SippError) -> bytes:
        return _sse(openai_error(exc)[1]) + b"data: [DONE]\n\n"
