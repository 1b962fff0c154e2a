"""What a decode step of ``n`` tokens costs, learned from the engine's own steps.

Speculative decoding pays when draft positions are accepted often enough to be worth the
compute they add to the step. On a memory-bound step (one sequence, a small batch) an extra
position is almost free; on a compute-bound one (many sequences on a CPU) it costs nearly
what a decode does, and the curve is not a straight line (kernels change with the batch
size, sampling the verified positions adds its own share). Rather than guess the device,
:class:`StepCost` keeps a running mean of the measured seconds (decode and sampling) per
step size; a step of ``n0`` positions is priced from its own size's cost plus a slope fitted
over the sizes from ``n0 / 2`` up (weighted by how often each was measured, so one noisy
rare size cannot veto or wave through drafts). :func:`best_draft_count` picks how many of
a step's candidate draft positions maximize its expected tokens per second.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["StepCost", "best_draft_count"]

_WEIGHT = 0.25  # a new measurement's weight in its size's running mean
_EXPLORE = 0.25  # how far past the largest measured size a step may grow (fraction)


class StepCost:
    """Running mean seconds per decode-only step size, interpolated between sizes."""

    def __init__(self) -> None:
        self._sizes: list[int] = []  # sorted step sizes seen
        self._seconds: list[float] = []  # running mean seconds, same order
        self._counts: list[int] = []  # measurements per size, same order

    def observe(self, n_tokens: int, seconds: float) -> None:
        """Add one decode-only step (no prompt prefill in it) of ``n_tokens`` tokens."""
        if n_tokens <= 0 or not seconds > 0.0:
            return
        i = bisect_left(self._sizes, n_tokens)
        if i < len(self._sizes) and self._sizes[i] == n_tokens:
            self._seconds[i] += _WEIGHT * (seconds - self._seconds[i])
            self._counts[i] += 1
        else:
            self._sizes.insert(i, n_tokens)
            self._seconds.insert(i, seconds)
            self._counts.insert(i, 1)

    @property
    def known(self) -> bool:
        """Whether steps of at least two sizes were measured (a slope exists)."""
        return len(self._sizes) >= 2

    def limit(self) -> int:
        """The largest step size :meth:`seconds` will estimate: a little past the largest
        measured one, so steps grow into sizes that pay one measurement at a time."""
        top = self._sizes[-1] if self._sizes else 0
        return top + max(2, int(top * _EXPLORE))

    def seconds(self, n_tokens: int) -> float | None:
        """Estimated seconds of a step of ``n_tokens``: interpolated between measured
        sizes, extended along the last slope up to :meth:`limit`; None when unknown."""
        sizes, secs = self._sizes, self._seconds
        if len(sizes) < 2 or n_tokens > self.limit():
            return None
        i = bisect_left(sizes, n_tokens)
        if i < len(sizes) and sizes[i] == n_tokens:
            return secs[i]
        lo, hi = (0, 1) if i == 0 else (len(sizes) - 2, len(sizes) - 1) if i == len(sizes) \
            else (i - 1, i)
        slope = max((secs[hi] - secs[lo]) / (sizes[hi] - sizes[lo]), 0.0)
        return max(secs[lo] + slope * (n_tokens - sizes[lo]), 1e-9)


    def slope(self, n_tokens: int) -> float | None:
        """Seconds per extra position around a step of ``n_tokens``: least squares over
        the measured sizes from ``n_tokens // 2`` up, each weighted by its measurements
        (at most 16); over every size when fewer than two are that large."""
        pairs = [(n, t, min(c, 16)) for n, t, c in
                 zip(self._sizes, self._seconds, self._counts, strict=True)]
        near = [p for p in pairs if p[0] >= n_tokens // 2]
        if len(near) >= 2:
            pairs = near
        if len(pairs) < 2:
            return None
        w = sum(c for _, _, c in pairs)
        mx = sum(n * c for n, _, c in pairs) / w
        my = sum(t * c for _, t, c in pairs) / w
        var = sum(c * (n - mx) ** 2 for n, _, c in pairs)
        cov = sum(c * (n - mx) * (t - my) for n, t, c in pairs)
        return max(cov / var, 0.0) if var > 0 else None


def best_draft_count(gains: Sequence[float], n_tokens: int, tokens: float,
                     cost: StepCost) -> int:
    """How many of the candidate positions (``gains``: expected accepted tokens of each,
    best first) to add to a step of ``n_tokens`` positions that yields ``tokens``
    expected tokens: the count with the most expected tokens per second (0 when none
    beats the plain step or the plain step's cost is unknown)."""
    base = cost.seconds(n_tokens)
    slope = cost.slope(n_tokens)
    if base is None or slope is None:
        return 0
    best, best_rate = 0, tokens / base
    for d, gain in enumerate(gains[:max(cost.limit() - n_tokens, 0)], 1):
        tokens += gain
        rate = tokens / (base + slope * d)
        if rate > best_rate:
            best, best_rate = d, rate
    return best
