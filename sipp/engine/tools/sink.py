"""A run sink that splits a local run's output into text and tool calls on the way out.

The engine pushes text as usual; this wrapper feeds it through the run's
:class:`ToolCallStream`, pushes text and tool-call deltas in order, and on completion
replaces the payload's ``text`` with the text around the calls, adds ``tool_calls``, sets
``finish_reason="tool_calls"`` and names the family in ``local_stats``. A malformed or
unfinished call fails the run with :class:`~sipp.errors.ToolCallError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sipp.engine.tools.parser import ToolCallStream
from sipp.errors import ToolCallError
from sipp.requests import RunSink

__all__ = ["ToolCallSink"]


class ToolCallSink:
    """Wraps the run's sink (``push`` / ``complete`` / ``fail`` / ``on_cancel``)."""

    def __init__(self, inner: RunSink, stream: ToolCallStream) -> None:
        self._inner = inner
        self._stream = stream
        self._fed = ""
        self._failed = False

    def on_cancel(self, canceller: Callable[[str], None]) -> None:
        self._inner.on_cancel(canceller)

    def push(
        self, text: str, token_count: int, tool_calls: tuple[dict[str, Any], ...] = ()
    ) -> None:
        if self._failed:
            return
        self._fed += text
        try:
            items = self._stream.feed(text)
        except ToolCallError as exc:
            self._failed = True
            self._inner.fail(exc)
            return
        self._deliver(items, token_count)

    def _deliver(self, items: list[tuple[str, Any]], token_count: int) -> None:
        """Text and call deltas in order; the token count goes with the first batch."""
        text = ""
        calls: list[dict[str, Any]] = []
        for kind, value in items:
            if kind == "text":
                if calls:
                    self._inner.push(text, token_count, tool_calls=tuple(calls))
                    token_count, text, calls = 0, "", []
                text += value
            else:
                calls.append(value)
        if text or calls or token_count:
            self._inner.push(text, token_count, tool_calls=tuple(calls))

    def complete(self, payload: dict[str, Any]) -> None:
        if self._failed:
            return
        full = str(payload.get("text", ""))
        cancelled = payload.get("finish_reason") == "cancelled"
        try:
            if full.startswith(self._fed) and len(full) > len(self._fed):
                self._deliver(self._stream.feed(full[len(self._fed):]), 0)
            self._deliver(self._stream.finish(), 0)
            parsed = self._stream.result()
        except ToolCallError as exc:
            if cancelled:  # a call cut off by cancel() is not the model's fault
                self._inner.complete(payload)
                return
            self._inner.fail(exc)
            return
        out = dict(payload)
        out["text"] = parsed.content
        if parsed.tool_calls:
            out["tool_calls"] = parsed.tool_calls
            if not cancelled:
                out["finish_reason"] = "tool_calls"
        stats = out.get("local_stats")
        if isinstance(stats, dict):
            out["local_stats"] = {**stats, "tool_call_family": self._stream.family.name}
        self._inner.complete(out)

    def fail(self, error: BaseException) -> None:
        self._inner.fail(error)
