"""The router behind a target with ``deployments``: one endpoint over several.

:class:`RouterEndpoint` is registered on the gateway's client under the public target's
name, so the routes run on it like on any target. Each run picks a deployment by the
target's ``strategy``; a failure before anything reached the caller (connection error,
5xx, 429, timeout, a deployment or fallback not ready) is retried on another deployment
after a backoff, then on each ``fallbacks`` target in order. Once a token was forwarded
(or the run completed) the deployment is committed: a later failure ends the run with
that error, never a retry. Deployments that fail ``cooldown_after_failures`` times within
``cooldown_window_seconds`` sit out ``cooldown_seconds``; then one trial request (or the
deployment's health check, for gateway deployments with a ``readiness_url``) decides
whether they come back.

Sinks are fed from engine and transport threads, so every state change happens under one
lock and the next attempt starts on a timer thread, never on the thread that failed.
"""

from __future__ import annotations

import collections
import dataclasses
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal

from sipp._prometheus import escape_label
from sipp.endpoints.base import Capability, Endpoint, Operation, OptionGroup
from sipp.errors import (
    AdmissionError,
    CancelledError,
    EngineError,
    QueueFullError,
    RateLimitedError,
    RemoteCallError,
    SippError,
    TargetNotReadyError,
)
from sipp.gateway.server.config import RoutedTarget
from sipp.gateway.server.logging import logger
from sipp.requests import EmbedRequest, RunSink, TextRequest
from sipp.types import EndpointKind, EndpointRef

__all__ = ["Attribution", "Member", "RouterEndpoint", "http_probe", "retryable",
           "router_metric_lines"]

DEPLOYMENT_HEADER = b"x-sipp-deployment"
_LATENCY_WEIGHT = 0.3  # the weight of the newest sample in a deployment's latency average


def retryable(exc: BaseException) -> bool:
    """Whether a failure before the first token may be retried elsewhere: connection
    errors, timeouts, 5xx, 429 and targets that are not ready. A request the target
    refused as invalid (4xx) would fail everywhere, and a cancel is the caller's wish."""
    if isinstance(exc, CancelledError):
        return False
    if isinstance(exc, RemoteCallError):
        if exc.kind in ("transport", "timeout", "rate_limited"):
            return True
        status = exc.status or exc.http_status
        return status == 429 or status >= 500
    if isinstance(exc, TargetNotReadyError | RateLimitedError | AdmissionError | QueueFullError
                  | EngineError):
        return True
    if isinstance(exc, SippError):
        return exc.http_status >= 500
    return isinstance(exc, OSError | TimeoutError)


def http_probe(url: str, timeout: float = 2.0) -> Callable[[], bool]:
    """A health check: GET ``url`` (another gateway's ``/readyz``) answers 200."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return int(response.status) == 200
        except (OSError, urllib.error.URLError, ValueError):
            return False

    return probe


class Attribution:
    """Which deployment served each request id, for the response header and access log
    (bounded: entries nobody collects are dropped oldest first)."""

    def __init__(self, limit: int = 4096) -> None:
        self._lock = threading.Lock()
        self._served: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._limit = limit

    def set(self, request_id: str, deployment: str) -> None:
        with self._lock:
            self._served[request_id] = deployment
            self._served.move_to_end(request_id)
            while len(self._served) > self._limit:
                self._served.popitem(last=False)

    def get(self, request_id: str) -> str | None:
        with self._lock:
            return self._served.get(request_id)

    def pop(self, request_id: str) -> str | None:
        with self._lock:
            return self._served.pop(request_id, None)


@dataclasses.dataclass
class Member:
    """One deployment and its health, guarded by its router's lock."""

    name: str  # "<target>/<deployment>", the x-sipp-deployment value
    endpoint: Endpoint
    weight: float = 1.0
    probe: Callable[[], bool] | None = None
    in_flight: int = 0
    recent_failures: collections.deque[float] = dataclasses.field(
        default_factory=collections.deque)
    cooled_until: float | None = None
    probing: bool = False
    trial: bool = False
    latency: float | None = None
    attempts: int = 0
    served: int = 0
    failures: int = 0
    cooldowns: int = 0

    def state(self, now: float) -> Literal["healthy", "cooling_down", "probing"]:
        if self.cooled_until is None:
            return "healthy"
        return "cooling_down" if now < self.cooled_until else "probing"


class RouterEndpoint(Endpoint):
    """Runs each request on one of ``members`` (see the module docstring).

    ``fallback`` returns the endpoint of a fallback target by name, or None while that
    target is not ready or is disabled."""

    accepts: ClassVar[frozenset[OptionGroup]] = frozenset()

    def __init__(self, ref: EndpointRef, target: RoutedTarget, members: list[Member],
                 fallback: Callable[[str], Endpoint | None], attribution: Attribution,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ref)
        self.kind = ref.kind
        self.target = target
        self.members = members
        self._fallback = fallback
        self.attribution = attribution
        self._clock = clock
        self._lock = threading.Lock()
        self._turn = 0
        self._random = random.Random()
        self.fallbacks_used: collections.Counter[str] = collections.Counter()
        self.exhausted = 0
        groups = [m.endpoint.accepts for m in members]
        self.accepts = frozenset.intersection(*groups) if groups else frozenset()  # type: ignore[misc]
        self.refused_option_keys = frozenset().union(  # type: ignore[misc]
            *(m.endpoint.refused_option_keys for m in members))

    @staticmethod
    def kind_of(kinds: Iterable[EndpointKind]) -> EndpointKind:
        """The ref kind of a router over endpoints of ``kinds``: theirs when they agree,
        else ``gateway`` (only the options every kind takes)."""
        found = set(kinds)
        return found.pop() if len(found) == 1 else "gateway"

    # ------------------------------------------------------------------ Endpoint
    def capability(self, operation: Operation) -> Capability:
        answers = {m.endpoint.capability(operation) for m in self.members}
        if "supported" in answers:
            return "supported"
        return "unsupported" if answers == {"unsupported"} else "unknown"

    def start_text(self, request: TextRequest, sink: RunSink) -> None:
        _RoutedRun(self, request, sink, request.emit_tokens).begin()

    def start_embed(self, request: EmbedRequest, sink: RunSink) -> None:
        _RoutedRun(self, request, sink, False).begin()

    # ------------------------------------------------------------------ picking
    def pick(self, tried: set[str]) -> Member | None:
        """The next deployment by the strategy: an untried healthy one if any, else a
        healthy one already tried; None when all are cooling down."""
        now = self._clock()
        with self._lock:
            ready = [m for m in self.members if self._eligible(m, now)]
            fresh = [m for m in ready if m.name not in tried]
            pool = fresh or ready
            if not pool:
                return None
            chosen = self._choose(pool)
            if chosen.cooled_until is not None:  # cooldown over, no health check: one trial
                chosen.trial = True
            chosen.in_flight += 1
            chosen.attempts += 1
            return chosen

    def _eligible(self, member: Member, now: float) -> bool:
        if member.cooled_until is None:
            return True
        if now < member.cooled_until or member.probing:
            return False
        if member.probe is not None:
            member.probing = True
            threading.Thread(target=self._run_probe, args=(member,), daemon=True,
                             name=f"sipp-gateway-probe-{member.name}").start()
            return False
        return not member.trial

    def _choose(self, pool: list[Member]) -> Member:
        strategy = self.target.strategy
        if strategy == "weighted":
            return self._random.choices(pool, weights=[m.weight for m in pool])[0]
        self._turn += 1
        order = {m.name: i for i, m in enumerate(self.members)}
        size = len(self.members)

        def rotation(m: Member) -> int:  # round-robin position, the tie-breaker everywhere
            return (order[m.name] - self._turn) % size

        if strategy == "least_busy":
            return min(pool, key=lambda m: (m.in_flight, rotation(m)))
        if strategy == "lowest_latency":
            return min(pool, key=lambda m: (m.latency or 0.0, rotation(m)))
        return min(pool, key=rotation)

    def _run_probe(self, member: Member) -> None:
        assert member.probe is not None
        ok = member.probe()
        with self._lock:
            member.probing = False
            if ok:
                self._recover(member)
            else:
                member.cooled_until = self._clock() + self.target.cooldown_seconds
        logger.info("deployment probed", extra={"deployment": member.name, "healthy": ok})

    # ------------------------------------------------------------------ outcomes
    def succeeded(self, member: Member, seconds: float) -> None:
        """``member`` served a run (its first token or its response after ``seconds``)."""
        with self._lock:
            member.served += 1
            member.latency = seconds if member.latency is None else (
                _LATENCY_WEIGHT * seconds + (1 - _LATENCY_WEIGHT) * member.latency)
            if member.cooled_until is not None:
                self._recover(member)
                logger.info("deployment recovered", extra={"deployment": member.name})

    def failed(self, member: Member, exc: BaseException) -> None:
        """``member`` failed a run: count it, and cool it down past the threshold (at once
        when it failed its trial after a cooldown)."""
        now = self._clock()
        policy = self.target
        with self._lock:
            member.failures += 1
            recent = member.recent_failures
            recent.append(now)
            while recent and recent[0] <= now - policy.cooldown_window_seconds:
                recent.popleft()
            trial = member.cooled_until is not None
            if trial or len(recent) >= policy.cooldown_after_failures:
                member.cooled_until = now + policy.cooldown_seconds
                member.trial = False
                member.cooldowns += 1
                recent.clear()
                cooled = True
            else:
                cooled = False
        if cooled:
            logger.warning("deployment cooling down", extra={
                "deployment": member.name, "seconds": policy.cooldown_seconds,
                "error": type(exc).__name__})

    def settled(self, member: Member) -> None:
        """``member`` answered with an error of the request, not of its own: a trial after
        a cooldown passed."""
        with self._lock:
            if member.trial:
                self._recover(member)

    def finished(self, member: Member) -> None:
        with self._lock:
            member.in_flight -= 1

    def _recover(self, member: Member) -> None:
        member.cooled_until = None
        member.trial = False
        member.recent_failures.clear()

    def fallback_endpoint(self, name: str) -> Endpoint | None:
        return self._fallback(name)

    # ------------------------------------------------------------------ views
    def snapshot(self) -> dict[str, Any]:
        """The dashboard's view: strategy, fallback chain and each deployment's health."""
        now = self._clock()
        with self._lock:
            return {
                "strategy": self.target.strategy,
                "fallbacks": list(self.target.fallbacks),
                "retries": self.target.retries,
                "cooldownSeconds": self.target.cooldown_seconds,
                "deployments": [{
                    "name": m.name,
                    "kind": m.endpoint.ref.kind,
                    "health": m.state(now),
                    "cooldownRemainingSeconds": (round(m.cooled_until - now, 3)
                                                 if m.cooled_until is not None
                                                 and m.cooled_until > now else 0),
                    "inFlight": m.in_flight, "weight": m.weight,
                    "latencyMs": round(m.latency * 1000, 3) if m.latency is not None else None,
                    "attempts": m.attempts, "served": m.served, "failures": m.failures,
                    "cooldowns": m.cooldowns,
                } for m in self.members],
                "fallbacksUsed": dict(self.fallbacks_used),
            }


class _RoutedRun:
    """One request's way through the deployments and fallbacks of a router."""

    def __init__(self, router: RouterEndpoint, request: TextRequest | EmbedRequest,
                 sink: RunSink, streams: bool) -> None:
        self.router = router
        self.request = request
        self.sink = sink
        self.streams = streams
        self.lock = threading.Lock()
        self.tried: set[str] = set()
        self.own_left = 1 + router.target.retries
        self.retry = 0
        self.fallbacks = list(router.target.fallbacks)
        self.committed = False
        self.cancel_reason: str | None = None
        self.canceller: Callable[[str], None] | None = None
        self.last_error: BaseException | None = None

    def begin(self) -> None:
        """The first attempt starts on the caller's thread (``start_*`` is called off the
        event loop, like any endpoint's); retries start on timer threads."""
        self.sink.on_cancel(self._cancel)
        self._attempt()

    def _cancel(self, reason: str) -> None:
        with self.lock:
            self.cancel_reason = reason
            canceller = self.canceller
        if canceller is not None:
            canceller(reason)

    def _next(self, delay: float) -> None:
        """Start the next attempt on a timer thread (never on the producer thread that
        reported the failure: it may be a transport loop)."""
        timer = threading.Timer(delay, self._attempt)
        timer.daemon = True
        timer.start()

    def _attempt(self) -> None:
        router = self.router
        if self.cancel_reason is not None:
            self.sink.fail(CancelledError(f"request cancelled ({self.cancel_reason})"))
            return
        while self.own_left > 0:
            self.own_left -= 1
            member = router.pick(self.tried)
            if member is None:
                self.own_left = 0
                break
            self.tried.add(member.name)
            self._launch(member.endpoint, _AttemptSink(self, member, None))
            return
        while self.fallbacks:
            name = self.fallbacks.pop(0)
            endpoint = router.fallback_endpoint(name)
            if endpoint is None:
                logger.info("fallback skipped (not ready or disabled)",
                            extra={"target": router.target.name, "fallback": name})
                continue
            with router._lock:
                router.fallbacks_used[name] += 1
            attempt = _AttemptSink(self, None, name)
            # a routed fallback names the deployment that served it itself
            attempt.names_itself = not isinstance(endpoint, RouterEndpoint)
            self._launch(endpoint, attempt)
            return
        with router._lock:
            router.exhausted += 1
        error = self.last_error or TargetNotReadyError(
            f"no deployment of target {router.target.name} is available (all cooling down)")
        self.sink.fail(error)

    def _launch(self, endpoint: Endpoint, attempt: _AttemptSink) -> None:
        request = _fit(self.request, endpoint.accepts)
        try:
            if isinstance(request, TextRequest):
                endpoint.start_text(request, attempt)
            else:
                endpoint.start_embed(request, attempt)
        except SippError as exc:
            attempt.fail(exc)

    # ------------------------------------------------------------------ attempt events
    def commit(self, attempt: _AttemptSink) -> None:
        with self.lock:
            if self.committed:
                return
            self.committed = True
        router = self.router
        if attempt.member is not None:
            router.attribution.set(self.request.request_id, attempt.member.name)
            router.succeeded(attempt.member, time.perf_counter() - attempt.started)
        elif attempt.fallback is not None and attempt.names_itself:
            router.attribution.set(self.request.request_id, attempt.fallback)

    def set_canceller(self, canceller: Callable[[str], None]) -> None:
        with self.lock:
            self.canceller = canceller
            reason = self.cancel_reason
        if reason is not None:
            canceller(reason)

    def failed(self, attempt: _AttemptSink, error: BaseException) -> None:
        router = self.router
        if attempt.member is not None:
            if retryable(error) or self.committed:
                router.failed(attempt.member, error)
            else:  # it answered (a refusal of this request): reachable, so a trial passed
                router.settled(attempt.member)
        with self.lock:
            self.canceller = None
            final = self.committed or self.cancel_reason is not None or not retryable(error)
        if final:
            self.sink.fail(error)
            return
        self.last_error = error
        logger.info("deployment failed before the first token; trying the next", extra={
            "target": router.target.name, "deployment": attempt.label,
            "error": f"{type(error).__name__}: {error}"})
        delay = 0.0
        if attempt.member is not None and self.own_left > 0:
            delay = router.target.retry_backoff_seconds * (2 ** self.retry)
            self.retry += 1
        self._next(delay)


class _AttemptSink:
    """The sink one attempt writes to: forwards to the caller's sink once committed."""

    def __init__(self, run: _RoutedRun, member: Member | None, fallback: str | None) -> None:
        self.run = run
        self.member = member
        self.fallback = fallback
        self.label = member.name if member is not None else f"fallback {fallback}"
        self.wants_tokens = run.streams
        self.started = time.perf_counter()
        self.names_itself = True
        self._done = False
        self._lock = threading.Lock()

    def _finish(self) -> bool:
        with self._lock:
            if self._done:
                return False
            self._done = True
        if self.member is not None:
            self.run.router.finished(self.member)
        return True

    def push(self, text: str, token_count: int,
             tool_calls: tuple[dict[str, Any], ...] = ()) -> None:
        if self._done or not self.wants_tokens:
            return
        if not text and token_count == 0 and not tool_calls:
            return
        self.run.commit(self)
        self.run.sink.push(text, token_count, tool_calls)

    def complete(self, payload: dict[str, Any]) -> None:
        if not self._finish():
            return
        self.run.commit(self)
        self.run.sink.complete(payload)

    def fail(self, error: BaseException) -> None:
        if not self._finish():
            return
        self.run.failed(self, error)

    def on_cancel(self, canceller: Callable[[str], None]) -> None:
        self.run.set_canceller(canceller)


def _fit(request: TextRequest | EmbedRequest, accepts: frozenset[OptionGroup]
         ) -> TextRequest | EmbedRequest:
    """The request without the option groups a fallback of another kind does not take."""
    changes: dict[str, Any] = {}
    if request.local is not None and "local" not in accepts:
        changes["local"] = None
    if request.endpoint_options and "endpoint_options" not in accepts:
        changes["endpoint_options"] = None
    if request.provider_options and "provider_options" not in accepts:
        changes["provider_options"] = None
    return dataclasses.replace(request, **changes) if changes else request


def router_metric_lines(routers: Mapping[str, RouterEndpoint]) -> list[str]:
    """Per-deployment Prometheus series of every router (labels: target, deployment)."""
    out: list[str] = []
    families = (
        ("sipp_gateway_deployment_attempts_total", "counter",
         "Runs started on a deployment.", "attempts"),
        ("sipp_gateway_deployment_served_total", "counter",
         "Runs a deployment served (first token or response reached the caller).", "served"),
        ("sipp_gateway_deployment_failures_total", "counter",
         "Runs a deployment failed (retried elsewhere when nothing was sent yet).", "failures"),
        ("sipp_gateway_deployment_cooldowns_total", "counter",
         "Times a deployment was taken out for its cooldown.", "cooldowns"),
        ("sipp_gateway_deployment_in_flight", "gauge", "Runs on a deployment now.",
         "in_flight"),
    )
    for metric, kind, help, attribute in families:
        out.append(f"# HELP {metric} {help}")
        out.append(f"# TYPE {metric} {kind}")
        for target, router in sorted(routers.items()):
            for m in router.members:
                out.append(f'{metric}{{target="{escape_label(target)}",'
                           f'deployment="{escape_label(m.name)}"}} {getattr(m, attribute)}')
    out.append("# HELP sipp_gateway_deployment_healthy 1 when a deployment takes traffic, "
               "0 while it cools down or is being probed.")
    out.append("# TYPE sipp_gateway_deployment_healthy gauge")
    for target, router in sorted(routers.items()):
        for m in router.members:
            healthy = 1 if m.cooled_until is None else 0
            out.append(f'sipp_gateway_deployment_healthy{{target="{escape_label(target)}",'
                       f'deployment="{escape_label(m.name)}"}} {healthy}')
    out.append("# HELP sipp_gateway_fallbacks_total Requests a target handed to a fallback.")
    out.append("# TYPE sipp_gateway_fallbacks_total counter")
    for target, router in sorted(routers.items()):
        for fallback, n in sorted(router.fallbacks_used.items()):
            out.append(f'sipp_gateway_fallbacks_total{{target="{escape_label(target)}",'
                       f'fallback="{escape_label(fallback)}"}} {n}')
    return out
