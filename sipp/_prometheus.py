"""Prometheus text-exposition pieces shared by the engine's runtime metrics and the
gateway's request metrics: a cumulative-bucket histogram and label-value escaping."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

__all__ = ["Histogram", "escape_label"]


class Histogram:
    """Cumulative-bucket histogram with fixed upper bounds (``+Inf`` is implicit)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("histogram bounds must be a non-empty, strictly increasing list")
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one value (O(log buckets))."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= bound)`` pairs ending with ``(inf, count)``."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


def escape_label(value: str) -> str:
    """A label value as the exposition format quotes it (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
