"""A cached answer: the final text, finish reason, tool calls and usage of the original
run, and the token batches it was streamed in, so a replay is chunked like the original."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sipp.types import TokenBatch

__all__ = ["ZERO_USAGE", "CachedAnswer"]

# What a hit costs upstream.
ZERO_USAGE: Mapping[str, int] = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    finish_reason: str
    question: str = ""
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    usage: Mapping[str, int] | None = None  # the original run's (what the hit saved)
    # (text, token_count, tool-call deltas) per streamed batch; one batch when not streamed
    chunks: tuple[tuple[str, int, tuple[Mapping[str, Any], ...]], ...] = field(default=())

    @classmethod
    def from_response(cls, response: Mapping[str, Any], question: str,
                      batches: Sequence[TokenBatch] | None) -> CachedAnswer:
        text = str(response.get("text") or "")
        calls = tuple(dict(c) for c in response.get("tool_calls") or ())
        if batches:
            chunks = tuple((b.text, b.token_count, tuple(dict(c) for c in b.tool_calls))
                           for b in batches)
        else:
            usage = response.get("usage") or {}
            count = int(usage.get("output_tokens") or 0)
            chunks = ((text, count, ()),) if text else ()
        usage = response.get("usage")
        return cls(text, str(response.get("finish_reason") or "stop"), question, calls,
                   dict(usage) if usage else None, chunks)

    def response(self) -> dict[str, Any]:
        """The run-response mapping a route family encodes (usage: 0 upstream tokens)."""
        out: dict[str, Any] = {"text": self.text, "finish_reason": self.finish_reason,
                               "usage": dict(ZERO_USAGE), "local_stats": None}
        if self.tool_calls:
            out["tool_calls"] = [dict(c) for c in self.tool_calls]
        return out

    def batches(self, request_id: str) -> list[TokenBatch]:
        out = []
        start = 0
        for text, count, calls in self.chunks:
            out.append(TokenBatch(text, count, start, request_id, tuple(dict(c) for c in calls)))
            start += count
        return out

    def to_bytes(self) -> bytes:
        return json.dumps({"text": self.text, "finish_reason": self.finish_reason,
                           "question": self.question, "tool_calls": list(self.tool_calls),
                           "usage": self.usage, "chunks": [list(c) for c in self.chunks]},
                          separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedAnswer:
        obj = json.loads(data)
        return cls(obj["text"], obj["finish_reason"], obj.get("question", ""),
                   tuple(obj.get("tool_calls") or ()), obj.get("usage"),
                   tuple((c[0], int(c[1]), tuple(c[2])) for c in obj.get("chunks") or ()))
