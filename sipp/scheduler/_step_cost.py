"""What one more token costs a decode step, learned from the engine's own steps.

Speculative decoding pays when a draft position is accepted often enough to be worth the
compute it adds to the step. On a memory-bound step (one sequence, a small batch) an extra
position is almost free; on a compute-bound one (many sequences on a CPU) it costs nearly
what a decode does. Rather than guess the device, :class:`StepCost` fits
``seconds = fixed + per_token * n_tokens`` to the decode steps the engine measured, with
exponential forgetting so the fit follows the machine's load. :func:`draft_gain_pays`
is the rule the scheduler applies per draft position.
"""

from __future__ import annotations

__all__ = ["StepCost", "draft_gain_pays"]

_DECAY = 0.98  # a step's weight halves after about 35 later steps
_MIN_WEIGHT = 4.0  # steps (decayed) before the fit is trusted
_MIN_SPREAD = 0.5  # variance of n_tokens (tokens²) needed to tell per-token from fixed cost


class StepCost:
    """Online least-squares fit of decode-step seconds against tokens in the step."""

    def __init__(self) -> None:
        self._w = self._x = self._y = self._xx = self._xy = 0.0

    def observe(self, n_tokens: int, seconds: float) -> None:
        """Add one decode-only step (no prompt prefill in it) of ``n_tokens`` tokens."""
        if n_tokens <= 0 or not seconds > 0.0:
            return
        d = _DECAY
        x = float(n_tokens)
        self._w = self._w * d + 1.0
        self._x = self._x * d + x
        self._y = self._y * d + seconds
        self._xx = self._xx * d + x * x
        self._xy = self._xy * d + x * seconds

    def fit(self) -> tuple[float, float] | None:
        """``(fixed, per_token)`` seconds, or None until steps of different sizes were seen.

        ``per_token`` is kept between 2 % and 100 % of the mean seconds per token, so noise
        on a shared machine can make drafts neither free nor dearer than whole decodes."""
        w = self._w
        if w < _MIN_WEIGHT:
            return None
        mx, my = self._x / w, self._y / w
        var = self._xx / w - mx * mx
        if var < _MIN_SPREAD:
            return None
        slope = (self._xy / w - mx * my) / var
        mean_per_token = my / mx
        slope = min(max(slope, 0.02 * mean_per_token), mean_per_token)
        return max(my - slope * mx, 0.0), slope


def draft_gain_pays(gain: float, tokens: float, n_tokens: int, fit: tuple[float, float]) -> bool:
    """Whether one more position, accepted with probability ``gain``, raises the step's
    expected tokens per second: ``(tokens + gain) / (t + per_token) > tokens / t`` with
    ``t = fixed + per_token * n_tokens`` the step's time so far."""
    fixed, per_token = fit
    return gain * (fixed + per_token * n_tokens) > per_token * tokens
