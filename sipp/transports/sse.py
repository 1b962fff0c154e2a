"""An incremental Server-Sent Events parser (the WHATWG event-stream format).

Bytes go in as they arrive from the socket; complete events come out. Lines may end in
``\\n``, ``\\r\\n`` or ``\\r``; ``:`` lines are comments; several ``data:`` lines join with
``\\n``; an event without data is dropped. The buffer is bounded so a peer that never ends
an event cannot exhaust memory.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SseError", "SseEvent", "SseParser"]

DEFAULT_MAX_EVENT_BYTES = 1 << 20


class SseError(ValueError):
    """The stream is not valid SSE (undecodable UTF-8, an event over the size limit)."""


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: ``event`` defaults to ``"message"``."""

    event: str
    data: str
    id: str | None = None


class SseParser:
    """Feed bytes with :meth:`feed`; call :meth:`close` at end of stream."""

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._max = max_event_bytes
        self._pending = ""  # text not yet split into lines
        self._event_size = 0
        self._name = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._last_id: str | None = None
        self._skip_lf = False
        self._first = True

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Parse ``chunk`` and return the events it completed (possibly none)."""
        try:
            text = self._decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise SseError(f"SSE stream is not valid UTF-8: {exc.reason}") from exc
        if self._first and text:
            self._first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        return self._consume(text)

    def close(self) -> list[SseEvent]:
        """Finish the stream: an unterminated trailing event is discarded, as the spec says."""
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise SseError(f"SSE stream ended inside a UTF-8 sequence: {exc.reason}") from exc
        self._pending = ""
        self._reset_event()
        return []

    # ----------------------------------------------------------------- internals
    def _consume(self, text: str) -> list[SseEvent]:
        events: list[SseEvent] = []
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]
        self._skip_lf = False
        buffer = self._pending + text
        start = 0
        length = len(buffer)
        while start < length:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, after = lf, lf + 1
            else:
                end = cr
                if cr + 1 < length:
                    after = cr + 2 if buffer[cr + 1] == "\n" else cr + 1
                else:
                    after = cr + 1
                    self._skip_lf = True
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = after
        self._pending = buffer[start:]
        if len(self._pending.encode()) + self._event_size > self._max:
            raise SseError(f"SSE event exceeded buffer limit of {self._max} bytes")
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        self._event_size += len(line) + 1
        if self._event_size > self._max:
            raise SseError(f"SSE event exceeded buffer limit of {self._max} bytes")
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._name = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None  # "retry" and unknown fields are ignored

    def _dispatch(self) -> SseEvent | None:
        if self._id is not None:
            self._last_id = self._id
        if not self._data:
            self._reset_event()
            return None
        event = SseEvent(self._name or "message", "\n".join(self._data), self._last_id)
        self._reset_event()
        return event

    def _reset_event(self) -> None:
        self._name = ""
        self._data = []
        self._id = None
        self._event_size = 0
