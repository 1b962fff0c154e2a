"""Per-request masking: stable placeholders out, originals back in (streams included).

A :class:`MaskingSession` lives for one request. The same value always gets the same
placeholder (``<EMAIL_1>``, ``<EMAIL_2>``, ``<PHONE_1>`` ...), so a conversation stays
coherent for the model. The mapping stays in this object: it has no ``repr`` of its
values, is never logged, and is dropped with the request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sipp.pii._spans import Detector, Span, resolve_overlaps

__all__ = ["MaskingSession", "StreamRestorer"]

_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*?)_(\d+)>")
PRIORITY = ("EMAIL", "IBAN", "PAYMENT_CARD", "NATIONAL_ID", "IP_ADDRESS", "PHONE")


class MaskingSession:
    """Masks texts of one request with ``detectors`` and restores the model's answer."""

    __slots__ = ("_by_value", "_counters", "_detectors", "_originals", "found")

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self._detectors = tuple(detectors)
        self._by_value: dict[tuple[str, str], str] = {}
        self._originals: dict[str, str] = {}
        self._counters: dict[str, int] = {}
        self.found: dict[str, int] = {}
        """How many distinct values of each entity type were masked (no values)."""

    def __repr__(self) -> str:
        return f"MaskingSession(placeholders={len(self._originals)})"

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The placeholders handed out so far (never the values)."""
        return tuple(self._originals)

    def detect(self, text: str) -> list[Span]:
        spans: list[Span] = []
        for detector in self._detectors:
            spans.extend(s for s in detector.detect(text) if s.end <= len(text))
        return resolve_overlaps(spans, PRIORITY)

    def mask(self, text: str) -> str:
        """``text`` with every detected entity replaced by its placeholder."""
        spans = self.detect(text)
        if not spans:
            return text
        parts: list[str] = []
        cursor = 0
        for span in spans:
            parts.append(text[cursor:span.start])
            parts.append(self._placeholder(span.entity, text[span.start:span.end]))
            cursor = span.end
        parts.append(text[cursor:])
        return "".join(parts)

    def _placeholder(self, entity: str, value: str) -> str:
        key = (entity, value)
        existing = self._by_value.get(key)
        if existing is not None:
            return existing
        number = self._counters.get(entity, 0) + 1
        self._counters[entity] = number
        self.found[entity] = number
        placeholder = f"<{entity}_{number}>"
        self._by_value[key] = placeholder
        self._originals[placeholder] = value
        return placeholder

    def restore(self, text: str) -> str:
        """``text`` with every known placeholder replaced by its original value."""
        if not self._originals or "<" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self._originals.get(m.group(), m.group()), text)

    def stream(self) -> StreamRestorer:
        """A restorer for one streamed answer."""
        return StreamRestorer(self)


class StreamRestorer:
    """Restores placeholders in a stream of text pieces.

    A piece that ends inside something that may still become a placeholder (``"<EMA"``) is
    held back until the next piece completes or breaks it; :meth:`flush` releases the rest
    at the end of the stream.
    """

    __slots__ = ("_held", "_longest", "_session")

    def __init__(self, session: MaskingSession) -> None:
        self._session = session
        self._held = ""
        self._longest = max((len(p) for p in session.placeholders), default=0)

    def feed(self, piece: str) -> str:
        """The restored text that can be released now (possibly empty)."""
        text = self._held + piece
        cut = len(text)
        start = text.rfind("<", max(0, len(text) - self._longest))
        if start >= 0:
            tail = text[start:]
            if any(p.startswith(tail) and p != tail for p in self._session.placeholders):
                cut = start
        self._held = text[cut:]
        return self._session.restore(text[:cut])

    def flush(self) -> str:
        """Whatever was held back (it never became a placeholder)."""
        rest, self._held = self._held, ""
        return self._session.restore(rest)
