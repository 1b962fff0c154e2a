"""Rolling dashboard history of public requests: totals, per operation/target/client,
10-second time series (30 minutes) and the most recent events. In memory only."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Activity", "RequestEvent"]

_BUCKET_SECONDS = 10
_MAX_BUCKETS = 180
_MAX_CLIENTS = 512
_MAX_RECENT = 96
_LATENCY_WINDOW = 512


@dataclass(frozen=True)
class RequestEvent:
    """One finished public request as the dashboard sees it (no credentials)."""

    operation: str
    request_id: str
    client: str
    caller: str | None
    target: str | None
    status: int
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    streaming: bool = False
    rejection: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class _Counts:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0

    def add(self, event: RequestEvent) -> None:
        self.requests += 1
        self.errors += event.status >= 400
        self.input_tokens += event.input_tokens
        self.output_tokens += event.output_tokens
        self.latency_ms += event.latency_ms

    def json(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors,
                "inputTokens": self.input_tokens, "outputTokens": self.output_tokens,
                "totalTokens": self.input_tokens + self.output_tokens,
                "averageLatencyMs": round(self.latency_ms / self.requests, 3)
                if self.requests else 0.0}


@dataclass
class _Bucket(_Counts):
    rate_limited: int = 0
    blocked: int = 0


@dataclass
class _Client(_Counts):
    caller: str | None = None
    rate_limit_hits: int = 0
    blocklist_hits: int = 0
    last_seen: float = field(default=0.0)


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)


class Activity:
    """What the dashboard shows; :meth:`record` is called once per finished request."""

    def __init__(self, targets: Iterable[str], clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.totals = _Bucket()
        self.operations: dict[str, _Counts] = {}
        self.targets: dict[str, _Counts] = {name: _Counts() for name in targets}
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._series: deque[tuple[int, _Bucket]] = deque(maxlen=_MAX_BUCKETS)
        # (time, event): shaped for the dashboard only when it asks (see recent)
        self._recent: deque[tuple[float, RequestEvent]] = deque(maxlen=_MAX_RECENT)
        self._latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)

    def record(self, event: RequestEvent) -> None:
        now = self._clock()
        rate_limited = event.rejection == "rate_limited"
        blocked = event.rejection == "blocked"
        self.totals.add(event)
        self.totals.rate_limited += rate_limited
        self.totals.blocked += blocked
        self._latencies.append(event.latency_ms)
        self.operations.setdefault(event.operation, _Counts()).add(event)
        if event.target is not None and event.target in self.targets:
            self.targets[event.target].add(event)
        start = int(now) // _BUCKET_SECONDS * _BUCKET_SECONDS
        if not self._series or self._series[-1][0] != start:
            self._series.append((start, _Bucket()))
        bucket = self._series[-1][1]
        bucket.add(event)
        bucket.rate_limited += rate_limited
        bucket.blocked += blocked
        client = self._clients.get(event.client)
        if client is None:
            client = self._clients[event.client] = _Client()
        else:
            self._clients.move_to_end(event.client)
        client.add(event)
        client.caller = event.caller or client.caller
        client.rate_limit_hits += rate_limited
        client.blocklist_hits += blocked
        client.last_seen = now
        while len(self._clients) > _MAX_CLIENTS:
            self._clients.popitem(last=False)
        self._recent.append((now, event))

    def summary(self, active_requests: int) -> dict[str, Any]:
        """Totals with latency percentiles (over the last 512 requests)."""
        latencies = list(self._latencies)
        totals = self.totals.json()
        totals.pop("averageLatencyMs")
        return {**totals, "activeRequests": active_requests,
                "rateLimitHits": self.totals.rate_limited,
                "blocklistHits": self.totals.blocked,
                "p50LatencyMs": _percentile(latencies, 0.5),
                "p90LatencyMs": _percentile(latencies, 0.9),
                "p99LatencyMs": _percentile(latencies, 0.99)}

    def operation_rows(self) -> list[dict[str, Any]]:
        return [{"operation": name, **counts.json()}
                for name, counts in sorted(self.operations.items())]

    def target_rows(self) -> list[dict[str, Any]]:
        return [{"name": name, **counts.json()} for name, counts in self.targets.items()]

    def timeseries(self) -> list[dict[str, Any]]:
        """10-second buckets, oldest first (buckets without requests are left out)."""
        return [{"unixSeconds": start, **bucket.json(), "rateLimited": bucket.rate_limited,
                 "blocked": bucket.blocked} for start, bucket in self._series]

    def clients(self, limit: int = 50) -> list[dict[str, Any]]:
        """Top clients by requests, then tokens."""
        rows = sorted(self._clients.items(), key=lambda item: (
            -item[1].requests, -(item[1].input_tokens + item[1].output_tokens), item[0]))
        return [{"client": name, "caller": c.caller, **c.json(),
                 "rateLimitHits": c.rate_limit_hits, "blocklistHits": c.blocklist_hits,
                 "lastSeenUnixSeconds": int(c.last_seen)} for name, c in rows[:limit]]

    def recent(self) -> list[dict[str, Any]]:
        """The last 96 requests, newest first."""
        return [{"unixSeconds": round(now, 3), "operation": event.operation,
                 "requestId": event.request_id, "client": event.client,
                 "caller": event.caller, "target": event.target, "status": event.status,
                 "latencyMs": round(event.latency_ms, 3), "totalTokens": event.total_tokens,
                 "streaming": event.streaming, "rejection": event.rejection}
                for now, event in reversed(self._recent)]
