"""Gateway metrics, rendered as Prometheus text (low cardinality: labels are operations,
status codes, rejection reasons and configured target names only)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sipp._prometheus import Histogram, escape_label

__all__ = ["GatewayMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)


def _latency() -> Histogram:
    return Histogram(_LATENCY_BUCKETS)


def _histogram_lines(hist: Histogram, name: str, labels: str) -> Iterable[str]:
    running = 0
    sep = "," if labels else ""
    for bound, count in zip(hist.bounds, hist.counts, strict=False):
        running += count
        yield f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {running}'
    yield f'{name}_bucket{{{labels}{sep}le="+Inf"}} {hist.count}'
    yield f"{name}_sum{{{labels}}} {hist.sum:.6f}"
    yield f"{name}_count{{{labels}}} {hist.count}"


class GatewayMetrics:
    """Counters and histograms of the public listener; one event loop updates them."""

    def __init__(self, targets: Iterable[str]) -> None:
        self.targets = tuple(targets)
        self.requests: defaultdict[str, int] = defaultdict(int)
        self.errors: defaultdict[str, int] = defaultdict(int)
        self.responses: defaultdict[tuple[str, int], int] = defaultdict(int)
        self.rejected: defaultdict[str, int] = defaultdict(int)
        self.latency: defaultdict[str, Histogram] = defaultdict(_latency)
        self.ttft: defaultdict[str, Histogram] = defaultdict(_latency)
        self.input_tokens: defaultdict[str, int] = defaultdict(int)
        self.output_tokens: defaultdict[str, int] = defaultdict(int)
        self.target_requests: defaultdict[str, int] = defaultdict(int)
        self.disconnects = 0
        self.in_flight = 0

    def record(self, operation: str, status: int, seconds: float,
               rejection: str | None = None) -> None:
        """One finished public request (every status, including 413 and 401)."""
        self.requests[operation] += 1
        self.responses[(operation, status)] += 1
        if status >= 400:
            self.errors[operation] += 1
        if rejection is not None:
            self.rejected[rejection] += 1
        self.latency[operation].observe(seconds)

    def record_usage(self, target: str, usage: Mapping[str, Any] | None,
                     counted_output: int = 0) -> None:
        """One finished run; ``counted_output`` output tokens were counted as they streamed."""
        self.target_requests[target] += 1
        if usage:
            self.input_tokens[target] += int(usage.get("input_tokens") or 0)
            output = int(usage.get("output_tokens") or 0)
            self.output_tokens[target] += max(0, output - counted_output)

    def render(self, local_stats: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
               extra: Callable[[], Iterable[str]] | None = None) -> str:
        """The Prometheus text exposition (format 0.0.4); ``extra`` adds finished lines
        (the routers' per-deployment series)."""
        out: list[str] = []

        def family(name: str, kind: str, help: str) -> None:
            out.append(f"# HELP {name} {help}")
            out.append(f"# TYPE {name} {kind}")

        family("sipp_gateway_requests_total", "counter", "Public requests by operation.")
        for op, n in sorted(self.requests.items()):
            out.append(f'sipp_gateway_requests_total{{operation="{op}"}} {n}')
        family("sipp_gateway_errors_total", "counter", "Public requests that ended in an error.")
        for op, n in sorted(self.errors.items()):
            out.append(f'sipp_gateway_errors_total{{operation="{op}"}} {n}')
        family("sipp_gateway_responses_total", "counter", "Responses by operation and status.")
        for (op, status), n in sorted(self.responses.items()):
            out.append(f'sipp_gateway_responses_total{{operation="{op}",status="{status}"}} {n}')
        family("sipp_gateway_rejected_total", "counter",
               "Requests refused before reaching a target, by reason.")
        for reason, n in sorted(self.rejected.items()):
            out.append(f'sipp_gateway_rejected_total{{reason="{reason}"}} {n}')
        family("sipp_gateway_in_flight_requests", "gauge", "Requests being served now.")
        out.append(f"sipp_gateway_in_flight_requests {self.in_flight}")
        family("sipp_gateway_client_disconnects_total", "counter",
               "Streams cancelled because the client went away.")
        out.append(f"sipp_gateway_client_disconnects_total {self.disconnects}")
        family("sipp_gateway_request_duration_seconds", "histogram",
               "Time from request start to the last byte.")
        for op, hist in sorted(self.latency.items()):
            out.extend(_histogram_lines(hist, "sipp_gateway_request_duration_seconds",
                                        f'operation="{op}"'))
        family("sipp_gateway_time_to_first_token_seconds", "histogram",
               "Time from request start to the first streamed token.")
        for op, hist in sorted(self.ttft.items()):
            out.extend(_histogram_lines(hist, "sipp_gateway_time_to_first_token_seconds",
                                        f'operation="{op}"'))
        for name, values, help in (
            ("sipp_gateway_target_requests_total", self.target_requests,
             "Requests that completed at a target."),
            ("sipp_gateway_input_tokens_total", self.input_tokens, "Input tokens per target."),
            ("sipp_gateway_output_tokens_total", self.output_tokens, "Output tokens per target."),
        ):
            family(name, "counter", help)
            for target in self.targets:
                out.append(f'{name}{{target="{escape_label(target)}"}} {values.get(target, 0)}')
        if local_stats is not None:
            out.extend(_local_lines(local_stats()))
        if extra is not None:
            out.extend(extra())
        return "\n".join(out) + "\n"


def _local_lines(stats: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Numeric scheduler metrics of local targets as ``sipp_local_<key>{target}`` gauges."""
    by_key: dict[str, list[str]] = {}
    for target, values in sorted(stats.items()):
        for key, value in _flatten(values, ""):
            by_key.setdefault(key, []).append(
                f'sipp_local_{key}{{target="{escape_label(target)}"}} {value:g}')
    out: list[str] = []
    for key, lines in sorted(by_key.items()):
        out.append(f"# TYPE sipp_local_{key} gauge")
        out.extend(lines)
    return out


def _flatten(values: Mapping[str, Any], prefix: str) -> Iterable[tuple[str, float]]:
    for key, value in values.items():
        name = "".join(ch if ch.isalnum() else "_" for ch in f"{prefix}{key}").lower()
        if isinstance(value, bool):
            yield name, float(value)
        elif isinstance(value, int | float) and math.isfinite(value):
            yield name, float(value)
        elif isinstance(value, Mapping):
            yield from _flatten(value, f"{name}_")
