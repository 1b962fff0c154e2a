"""SSE parser properties: chunking never changes the events; any bytes give events or an
SseError; memory stays bounded by the event size limit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sipp.transports.sse import SseError, SseEvent, SseParser

FIELD_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["", "message", "token", "done"]),
        st.lists(FIELD_TEXT, min_size=1, max_size=3),
    ),
    max_size=5,
)
NEWLINES = st.sampled_from(["\n", "\r\n", "\r"])


def _encode(events: list[tuple[str, list[str]]], nl: str) -> bytes:
    out = []
    for name, lines in events:
        if name:
            out.append(f"event: {name}{nl}")
        out += [f"data: {line}{nl}" for line in lines]
        out.append(nl)
    return "".join(out).encode()


def _parse(chunks: list[bytes]) -> list[SseEvent]:
    parser = SseParser()
    events: list[SseEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.close()


@given(EVENTS, NEWLINES, st.lists(st.integers(0, 200), max_size=10))
def test_chunking_never_changes_the_events(
    events: list[tuple[str, list[str]]], nl: str, cuts: list[int]
) -> None:
    data = _encode(events, nl)
    whole = _parse([data])
    assert [(e.event, e.data) for e in whole] == [
        (name or "message", "\n".join(lines)) for name, lines in events
    ]
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert _parse(pieces) == whole


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_any_bytes_give_events_or_an_sse_error(chunks: list[bytes]) -> None:
    try:
        events = _parse(chunks)
    except SseError as exc:
        assert str(exc)
    else:
        assert all(isinstance(e.data, str) for e in events)


@given(st.integers(1, 64), st.integers(1, 8))
def test_an_event_over_the_limit_is_refused(limit: int, chunk: int) -> None:
    parser = SseParser(max_event_bytes=limit)
    data = b"data: " + b"x" * (limit * 2) + b"\n\n"
    try:
        for i in range(0, len(data), chunk):
            parser.feed(data[i : i + chunk])
    except SseError as exc:
        assert "limit" in str(exc) or "larger" in str(exc) or str(exc)
    else:
        raise AssertionError("an event twice the limit was accepted")
