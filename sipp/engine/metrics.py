"""Runtime metrics of one loaded model (``observability.runtime_metrics``).

Counters, gauges and fixed-bucket histograms, updated cheaply from the engine thread
(one uncontended lock per update) and read from any thread as a :meth:`snapshot` dict or
as Prometheus text (exposition format 0.0.4) with :meth:`render_prometheus`.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Final, Literal

from sipp._prometheus import Histogram, escape_label

__all__ = ["COUNTERS", "GAUGES", "HISTOGRAMS", "Histogram", "RuntimeMetrics"]

CounterName = Literal[
    "requests_started",
    "requests_completed",
    "requests_failed",
    "requests_cancelled",
    "prompt_tokens",
    "generated_tokens",
    "cache_hits",
    "reused_tokens",
    "decode_calls",
    "preemptions",
    "context_shifts",
    "spec_draft_tokens",
    "spec_accepted_tokens",
]
GaugeName = Literal["requests_running", "requests_queued"]
HistogramName = Literal[
    "time_to_first_token_seconds",
    "inter_token_latency_seconds",
    "e2e_latency_seconds",
    "batch_size_requests",
    "batch_size_tokens",
]

COUNTERS: Final[dict[str, str]] = {
    "requests_started": "Requests admitted to the engine.",
    "requests_completed": "Requests that finished with stop or length.",
    "requests_failed": "Requests that failed with an error.",
    "requests_cancelled": "Requests cancelled before they finished.",
    "prompt_tokens": "Prompt tokens of admitted requests.",
    "generated_tokens": "Tokens generated.",
    "cache_hits": "Admissions that reused cached KV.",
    "reused_tokens": "Prompt tokens reused from cached KV instead of prefilled.",
    "decode_calls": "llama_decode calls.",
    "preemptions": "Requests preempted because the KV cache was full.",
    "context_shifts": "Context shifts: a sequence outgrew its window and dropped old tokens.",
    "spec_draft_tokens": "Speculative decoding: draft tokens verified.",
    "spec_accepted_tokens": "Speculative decoding: draft tokens accepted.",
}
GAUGES: Final[dict[str, str]] = {
    "requests_running": "Requests holding a sequence slot.",
    "requests_queued": "Requests waiting for a slot.",
}
_LATENCY: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
HISTOGRAMS: Final[dict[str, tuple[str, tuple[float, ...]]]] = {
    "time_to_first_token_seconds": (
        "Seconds from arrival to the first generated token.",
        (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    ),
    "inter_token_latency_seconds": ("Seconds between consecutive generated tokens.", _LATENCY),
    "e2e_latency_seconds": (
        "Seconds from arrival to completion.",
        (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
    ),
    "batch_size_requests": (
        "Sequences per llama_decode call.",
        (1, 2, 4, 8, 16, 32, 64, 128, 256),
    ),
    "batch_size_tokens": (
        "Tokens per llama_decode call.",
        (1, 4, 16, 64, 256, 512, 1024, 2048, 4096, 8192),
    ),
}

_NAME_RE: Final = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class RuntimeMetrics:
    """The metrics of one loaded model; every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._gauges: dict[str, float] = dict.fromkeys(GAUGES, 0.0)
        self._hist = {name: Histogram(bounds) for name, (_, bounds) in HISTOGRAMS.items()}

    # ------------------------------------------------------------------ updates
    def inc(self, name: CounterName, amount: int = 1) -> None:
        """Add ``amount`` (>= 0) to a counter."""
        if amount < 0:
            raise ValueError(f"counter {name} cannot decrease (amount={amount})")
        with self._lock:
            self._counters[name] += amount

    def set_gauge(self, name: GaugeName, value: float) -> None:
        """Set a gauge to its current value."""
        with self._lock:
            self._gauges[name] = value

    def observe(self, name: HistogramName, value: float) -> None:
        """Record one histogram observation."""
        with self._lock:
            self._hist[name].observe(value)

    def record_decode(self, n_requests: int, n_tokens: int) -> None:
        """One ``llama_decode`` call with its batch size."""
        with self._lock:
            self._counters["decode_calls"] += 1
            self._hist["batch_size_requests"].observe(n_requests)
            self._hist["batch_size_tokens"].observe(n_tokens)

    def record_admission(self, prompt_tokens: int, reused_tokens: int) -> None:
        """A request took a slot; ``reused_tokens`` came from cached KV."""
        with self._lock:
            self._counters["requests_started"] += 1
            self._counters["prompt_tokens"] += prompt_tokens
            if reused_tokens:
                self._counters["cache_hits"] += 1
                self._counters["reused_tokens"] += reused_tokens

    def record_finish(
        self,
        reason: Literal["stop", "length", "cancelled", "error", "tool_calls"],
        *,
        generated_tokens: int,
        ttft_s: float | None,
        e2e_s: float,
        inter_token_s: Sequence[float] = (),
    ) -> None:
        """A request ended: count it and record its latencies (``ttft_s`` None if no token)."""
        key = {
            "stop": "requests_completed",
            "length": "requests_completed",
            "tool_calls": "requests_completed",
            "cancelled": "requests_cancelled",
            "error": "requests_failed",
        }.get(reason)
        if key is None:
            raise ValueError(
                f"reason must be one of: stop, length, cancelled, error; got {reason!r}"
            )
        with self._lock:
            self._counters[key] += 1
            self._counters["generated_tokens"] += generated_tokens
            if ttft_s is not None:
                self._hist["time_to_first_token_seconds"].observe(ttft_s)
            self._hist["e2e_latency_seconds"].observe(e2e_s)
            itl = self._hist["inter_token_latency_seconds"]
            for gap in inter_token_s:
                itl.observe(gap)

    # ------------------------------------------------------------------ reads
    def snapshot(self) -> dict[str, object]:
        """A consistent copy: ``{"counters", "gauges", "histograms"}``; each histogram is
        ``{"buckets": [[upper_bound, cumulative_count], ...], "sum", "count"}`` with the
        last bound ``inf``."""
        with self._lock:
            return {
                "counters": dict(self._counters),
                "gauges": dict(self._gauges),
                "histograms": {
                    name: {
                        "buckets": [[b, n] for b, n in h.cumulative()],
                        "sum": h.sum,
                        "count": h.count,
                    }
                    for name, h in self._hist.items()
                },
            }

    def render_prometheus(
        self, prefix: str = "sipp", labels: Mapping[str, str] | None = None
    ) -> str:
        """Prometheus text exposition (0.0.4): HELP and TYPE lines, ``<prefix>_<name>``
        metrics (counters end in ``_total``), ``labels`` on every sample."""
        if not _NAME_RE.match(prefix):
            raise ValueError(f"prefix must match [a-zA-Z_:][a-zA-Z0-9_:]*, got {prefix!r}")
        pairs = []
        for key, value in (labels or {}).items():
            if not _LABEL_RE.match(key) or key.startswith("__") or key == "le":
                raise ValueError(f"label name {key!r} is not a valid Prometheus label name")
            pairs.append(f'{key}="{escape_label(str(value))}"')
        base = ",".join(pairs)
        snap = self.snapshot()
        lines: list[str] = []
        counters = snap["counters"]
        gauges = snap["gauges"]
        hists = snap["histograms"]
        assert isinstance(counters, dict) and isinstance(gauges, dict)
        assert isinstance(hists, dict)
        for name, help_text in COUNTERS.items():
            metric = f"{prefix}_{name}_total"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
            lines.append(f"{metric}{_braces(base)} {_num(counters[name])}")
        for name, help_text in GAUGES.items():
            metric = f"{prefix}_{name}"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
            lines.append(f"{metric}{_braces(base)} {_num(gauges[name])}")
        for name, (help_text, _) in HISTOGRAMS.items():
            metric = f"{prefix}_{name}"
            hist = hists[name]
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} histogram"]
            for bound, count in hist["buckets"]:
                le = f'le="{_num(bound)}"'
                lines.append(f"{metric}_bucket{_braces(base, le)} {count}")
            lines.append(f"{metric}_sum{_braces(base)} {_num(hist['sum'])}")
            lines.append(f"{metric}_count{_braces(base)} {hist['count']}")
        return "\n".join(lines) + "\n"


def _braces(*parts: str) -> str:
    inner = ",".join(p for p in parts if p)
    return f"{{{inner}}}" if inner else ""


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
