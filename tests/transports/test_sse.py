"""The incremental SSE parser: framing, line endings, limits."""

from __future__ import annotations

import pytest

from sipp.transports.sse import SseError, SseEvent, SseParser


def feed_bytewise(data: bytes) -> list[SseEvent]:
    parser = SseParser()
    events: list[SseEvent] = []
    for i in range(len(data)):
        events += parser.feed(data[i : i + 1])
    events += parser.close()
    return events


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_events_split_across_any_boundary_and_line_ending(newline: bytes) -> None:
    raw = (b"event: token" + newline + b"data: {\"a\":1}" + newline + newline
           + b": comment" + newline + b"data: line1" + newline + b"data:line2" + newline
           + b"id: 7" + newline + newline)
    assert feed_bytewise(raw) == [
        SseEvent("token", '{"a":1}', None),
        SseEvent("message", "line1\nline2", "7"),
    ]


def test_event_without_data_and_unterminated_tail_are_dropped() -> None:
    parser = SseParser()
    assert parser.feed(b"event: ping\n\ndata: partial") == []
    assert parser.close() == []


def test_multibyte_utf8_split_between_chunks() -> None:
    data = "data: héllo ✓\n\n".encode()
    parser = SseParser()
    events = parser.feed(data[:8]) + parser.feed(data[8:])
    assert events == [SseEvent("message", "héllo ✓")]


def test_invalid_utf8_and_oversized_events_raise() -> None:
    with pytest.raises(SseError, match="UTF-8"):
        SseParser().feed(b"data: \xff\n\n")
    parser = SseParser(max_event_bytes=64)
    with pytest.raises(SseError, match="buffer limit"):
        for _ in range(10):
            parser.feed(b"data: " + b"x" * 20 + b"\n")
