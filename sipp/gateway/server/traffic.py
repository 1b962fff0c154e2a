"""Token-aware traffic shaping: tokens-per-minute buckets per caller and per target.

A bucket holds up to one minute of tokens and refills continuously. A request is admitted
while its caller's and its target's buckets are above zero; when it finishes, its input +
output tokens are taken from both (a bucket may go below zero, and then refuses requests
until it has refilled above zero). Refused requests get 429 ``rate_limited`` with the seconds
until the emptier bucket recovers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from sipp.errors import RateLimitedError

__all__ = ["LimitKind", "TokenBucket", "TokenBudgets"]

LimitKind = Literal["caller", "target"]


class TokenBucket:
    """``tokens_per_minute`` capacity, refilled at ``tokens_per_minute / 60`` per second."""

    __slots__ = ("_clock", "_last", "_level", "tokens_per_minute")

    def __init__(self, tokens_per_minute: int, clock: Callable[[], float]) -> None:
        self.tokens_per_minute = tokens_per_minute
        self._clock = clock
        self._level = float(tokens_per_minute)
        self._last = clock()

    def level(self) -> float:
        now = self._clock()
        rate = self.tokens_per_minute / 60.0
        self._level = min(float(self.tokens_per_minute), self._level + (now - self._last) * rate)
        self._last = now
        return self._level

    def wait(self) -> float | None:
        """None while tokens are left; else seconds until the level is above zero again."""
        level = self.level()
        if level > 0:
            return None
        return (-level + 1.0) / (self.tokens_per_minute / 60.0)

    def take(self, tokens: int) -> None:
        self._level = self.level() - tokens


class TokenBudgets:
    """Per-caller and per-target token buckets; limits can be changed at runtime (a change
    starts that bucket full again)."""

    def __init__(self, callers: Mapping[str, int], targets: Mapping[str, int],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[LimitKind, dict[str, TokenBucket]] = {"caller": {}, "target": {}}
        self.limited = False
        """Whether any caller or target has a limit (else nothing is ever charged)."""
        for name, limit in callers.items():
            self.set_limit("caller", name, limit)
        for name, limit in targets.items():
            self.set_limit("target", name, limit)

    def set_limit(self, kind: LimitKind, name: str, tokens_per_minute: int | None) -> None:
        """Limit ``name`` to ``tokens_per_minute`` (None removes the limit)."""
        buckets = self._buckets[kind]
        if tokens_per_minute is None:
            buckets.pop(name, None)
        else:
            buckets[name] = TokenBucket(tokens_per_minute, self._clock)
        self.limited = any(self._buckets.values())

    def limit(self, kind: LimitKind, name: str) -> int | None:
        bucket = self._buckets[kind].get(name)
        return bucket.tokens_per_minute if bucket is not None else None

    def applies(self, caller: str | None, target: str | None) -> bool:
        """Whether the caller or the target has a limit (else charging them does nothing)."""
        return ((caller is not None and caller in self._buckets["caller"])
                or (target is not None and target in self._buckets["target"]))

    def check(self, caller: str, target: str) -> None:
        """Raise :class:`RateLimitedError` (429, with ``retry_after``) when the caller's or
        the target's bucket is empty."""
        for kind, name in (("caller", caller), ("target", target)):
            bucket = self._buckets[kind].get(name)  # type: ignore[index]
            if bucket is None:
                continue
            wait = bucket.wait()
            if wait is not None:
                raise RateLimitedError(
                    f"{kind} {name} is over its limit of {bucket.tokens_per_minute} tokens "
                    "per minute", retry_after=wait)

    def charge(self, caller: str | None, target: str | None, tokens: int) -> None:
        """Take ``tokens`` (input + output) from the caller's and the target's buckets."""
        if tokens <= 0:
            return
        if caller is not None and (bucket := self._buckets["caller"].get(caller)) is not None:
            bucket.take(tokens)
        if target is not None and (bucket := self._buckets["target"].get(target)) is not None:
            bucket.take(tokens)

    def snapshot(self) -> list[dict[str, Any]]:
        """``[{kind, name, tokensPerMinute, available}]`` for the dashboard."""
        return [{"kind": kind, "name": name, "tokensPerMinute": bucket.tokens_per_minute,
                 "available": int(bucket.level())}
                for kind, buckets in self._buckets.items()
                for name, bucket in sorted(buckets.items())]
