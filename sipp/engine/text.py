"""Incremental detokenization and stop strings.

Token pieces are bytes that may end inside a UTF-8 character: :class:`Utf8Assembler` holds
the incomplete tail back until the character completes, so no broken UTF-8 is ever emitted.
:class:`StopMatcher` finds stop strings across token boundaries; it holds back only the
longest tail that could still start a stop string (at most ``len(longest stop) - 1``
characters) and, on a match, drops the stop string and everything after it.
:class:`TextStream` combines both for one request.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable

__all__ = ["StopMatcher", "TextStream", "Utf8Assembler", "normalize_stops"]


def normalize_stops(stops: Iterable[str] | None) -> tuple[str, ...]:
    """De-duplicate stop strings and drop empty ones (longest first)."""
    if not stops:
        return ()
    return tuple(sorted({s for s in stops if s}, key=lambda s: (-len(s), s)))


class Utf8Assembler:
    """Turn a stream of byte pieces into complete characters."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, piece: bytes) -> str:
        """Characters completed by ``piece``; an incomplete tail stays buffered."""
        return self._decoder.decode(piece, final=False)

    def flush(self) -> str:
        """End of stream: a truncated character becomes U+FFFD (never a broken byte)."""
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    """Match stop strings over text that arrives in pieces."""

    __slots__ = ("_held", "_stops")

    def __init__(self, stops: Iterable[str] | None) -> None:
        self._stops = normalize_stops(stops)
        self._held = ""

    @property
    def held(self) -> str:
        """Text withheld because it may be the start of a stop string."""
        return self._held

    def feed(self, text: str) -> tuple[str, bool]:
        """Return ``(text safe to emit, stopped)``.

        When ``stopped`` is True the emitted text ends right before the stop string and the
        matcher must not be fed again.
        """
        if not self._stops:
            return text, False
        buffer = self._held + text
        cut = -1
        for stop in self._stops:
            index = buffer.find(stop)
            if index != -1 and (cut == -1 or index < cut):
                cut = index
        if cut != -1:
            self._held = ""
            return buffer[:cut], True
        keep = self._partial_tail(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        """End of stream without a match: release the withheld text."""
        held, self._held = self._held, ""
        return held

    def _partial_tail(self, buffer: str) -> int:
        """Length of the longest suffix of ``buffer`` that is a proper prefix of a stop."""
        best = 0
        for stop in self._stops:
            limit = min(len(stop) - 1, len(buffer))
            for size in range(limit, best, -1):
                if buffer.endswith(stop[:size]):
                    best = size
                    break
        return best


class TextStream:
    """Detokenized, stop-string-filtered output of one request."""

    __slots__ = ("_parts", "_stops", "_utf8", "stopped")

    def __init__(self, stops: Iterable[str] | None = None) -> None:
        self._utf8 = Utf8Assembler()
        self._stops = StopMatcher(stops)
        self._parts: list[str] = []
        self.stopped = False

    def feed(self, piece: bytes) -> str:
        """Add one token piece; return the text now safe to emit (may be empty)."""
        if self.stopped:
            return ""
        text, self.stopped = self._stops.feed(self._utf8.feed(piece))
        if text:
            self._parts.append(text)
        return text

    def finish(self) -> str:
        """End of generation (not by a stop string): release everything withheld."""
        if self.stopped:
            return ""
        tail, self.stopped = self._stops.feed(self._utf8.flush())
        if not self.stopped:
            tail += self._stops.flush()
        if tail:
            self._parts.append(tail)
        return tail

    @property
    def text(self) -> str:
        """All text emitted so far."""
        return "".join(self._parts)
