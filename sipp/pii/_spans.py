"""Detected entity spans and how overlapping detections are resolved."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Detector", "Span", "resolve_overlaps"]


@dataclass(frozen=True)
class Span:
    """``text[start:end]`` is an entity of type ``entity`` (e.g. ``"EMAIL"``)."""

    start: int
    end: int
    entity: str

    def __post_init__(self) -> None:
        if not (0 <= self.start < self.end):
            raise ValueError(f"invalid span {self.start}..{self.end}")


@runtime_checkable
class Detector(Protocol):
    """Finds entity spans in a text. ``entities`` lists the types it can report."""

    @property
    def entities(self) -> Sequence[str]: ...

    def detect(self, text: str) -> list[Span]: ...


def resolve_overlaps(spans: Iterable[Span], priority: Sequence[str] = ()) -> list[Span]:
    """Keep non-overlapping spans: longer first, then earlier in ``priority``, then leftmost.

    A card number inside a longer IBAN is dropped; two detectors agreeing on one span keep
    one of them.
    """
    rank = {name: i for i, name in enumerate(priority)}
    ordered = sorted(
        set(spans),
        key=lambda s: (-(s.end - s.start), rank.get(s.entity, len(rank)), s.start, s.entity),
    )
    kept: list[Span] = []
    for span in ordered:
        if all(span.end <= other.start or span.start >= other.end for other in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)
