"""Atomic position spans (images): a batch chunk or a reused KV prefix never ends inside one."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Spans", "cut_end", "fit_end"]

Spans = Sequence[tuple[int, int]]
"""Sorted, disjoint ``(start, end)`` prompt position ranges."""


def _inside(spans: Spans, end: int) -> tuple[int, int] | None:
    for start, stop in spans:
        if start < end < stop:
            return start, stop
        if start >= end:
            break
    return None


def cut_end(spans: Spans, end: int) -> int:
    """``end`` moved back to the start of the span it falls inside (else unchanged)."""
    hit = _inside(spans, end)
    return end if hit is None else hit[0]


def fit_end(spans: Spans, pos: int, end: int) -> int:
    """A chunk end for a chunk starting at ``pos``: cut back to the span start, or, when the
    chunk starts at that span, extended to the span end (an image is never split)."""
    hit = _inside(spans, end)
    if hit is None:
        return end
    return hit[0] if hit[0] > pos else hit[1]
