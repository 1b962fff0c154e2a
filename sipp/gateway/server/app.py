"""The two ASGI applications: :class:`PublicApp` (inference routes) and
:class:`ManagementApp` (index, health, readiness, metrics), sharing :class:`GatewayState`.

Public pipeline, in order: client IP → blocklist (403 ``blocked``) → CORS preflight →
method → rate limit (429) → body size (413) → bearer auth (401) → JSON decode (400) →
token allowlist (403) → target (404; 503 while loading or disabled) → tokens-per-minute
budgets of caller and target (429) → admission (429) → run on the gateway's SippClient
(errors by their ``http_status``/``code``; an upstream rate limit is 429
``rate_limited`` with its ``Retry-After``, see :func:`caller_error`) → JSON or SSE. Every
finished request is recorded in the metrics and the dashboard's :class:`Activity`, and its
tokens are charged to the caller's and the target's budgets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from sipp._version import __version__
from sipp.client import SippClient
from sipp.errors import (
    AdmissionError,
    AuthenticationError,
    AuthorizationError,
    BlockedError,
    ProviderError,
    RateLimitedError,
    RequestTooLargeError,
    SippError,
    TargetNotFoundError,
    TargetNotReadyError,
)
from sipp.gateway import profile
from sipp.gateway.server.activity import Activity, RequestEvent
from sipp.gateway.server.admin import AdminApp
from sipp.gateway.server.admin.sessions import PasswordCheck
from sipp.gateway.server.admission import Admission
from sipp.gateway.server.auth import BearerAuth
from sipp.gateway.server.blocklist import Blocklist
from sipp.gateway.server.client_ip import ClientIpResolver
from sipp.gateway.server.config import GatewayConfig, RateLimitConfig, TokenConfig
from sipp.gateway.server.http import Exchange, Receive, Scope, Send
from sipp.gateway.server.logging import logger
from sipp.gateway.server.metrics import GatewayMetrics
from sipp.gateway.server.ratelimit import RateLimiter
from sipp.gateway.server.secrets import GatewaySecrets
from sipp.gateway.server.targets import TargetRegistry, TargetState
from sipp.gateway.server.traffic import TokenBudgets
from sipp.runs import SippEmbeddingRun, SippTextRun
from sipp.types import TokenBatch

__all__ = ["ClientGone", "GatewayState", "ManagementApp", "PublicApp", "caller_error"]



class ClientGone(Exception):
    """The client disconnected; its run was cancelled."""


class GatewayState:
    """Everything the listeners share: config, client, targets, security and metrics."""

    def __init__(self, config: GatewayConfig, secrets: GatewaySecrets,
                 client: SippClient | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.client = client or SippClient()
        self.targets = TargetRegistry(config, self.client, secrets.target_keys)
        by_caller = {t.caller: t for t in config.tokens}
        self.auth = BearerAuth([(by_caller[caller], value) for caller, value in secrets.tokens])
        self.client_ip = ClientIpResolver(config.client_ip)
        self.clock = clock
        self.rate_limit = config.rate_limit
        self.rate_limiter: RateLimiter | None = None
        self.set_rate_limit(config.rate_limit)
        self.admission = Admission(config.max_concurrent_requests)
        self.metrics = GatewayMetrics(t.name for t in config.targets)
        self.activity = Activity(t.name for t in config.targets)
        self.blocklist = Blocklist()
        self.budgets = TokenBudgets(config.token_limit.callers, config.token_limit.targets,
                                    clock)
        self.disabled_targets: set[str] = set()
        self.admin_password = PasswordCheck(secrets.admin_password)
        self.started = time.time()
        self.draining = False

    def set_rate_limit(self, settings: RateLimitConfig) -> None:
        """Apply per-client request rate-limit settings (every bucket starts full again)."""
        self.rate_limit = settings
        self.rate_limiter = (RateLimiter(settings.requests_per_minute, settings.burst,
                                         self.clock) if settings.enabled else None)

    def record_usage(self, ex: Exchange, target: str, usage: Any) -> None:
        """Count a finished run's usage for ``target`` (metrics, dashboard and budgets)."""
        self.metrics.record_usage(target, usage)
        ex.usage = usage

    def resolve_target(self, token: TokenConfig, name: str) -> TargetState:
        """The allowed, loaded target named ``name`` (403, 404 or 503 otherwise)."""
        if not token.allows(name):
            raise AuthorizationError(f"token is not allowed to access target: {name}")
        state = self.targets.get(name)
        if state is None:
            raise TargetNotFoundError(f"target not found: {name}")
        if state.status != "ready":
            raise TargetNotReadyError(f"target {name} is not ready ({state.status})")
        if name in self.disabled_targets:
            raise TargetNotReadyError(f"target {name} is disabled by the gateway administrator",
                                      code="target_disabled")
        self.budgets.check(token.caller, name)
        return state


class ErrorStyle(Protocol):
    def __call__(self, exc: SippError) -> tuple[int, Any]: ...


def profile_error(exc: SippError) -> tuple[int, Any]:
    return profile.error_response(exc)


def caller_error(exc: SippError) -> SippError:
    """The error as the gateway's caller sees it.

    A target's upstream rate limit (a :class:`ProviderError` of kind ``rate_limited``:
    HTTP 429 or a rate-limit error code from the provider) becomes 429 ``rate_limited``
    with the upstream's ``Retry-After``. Every other provider failure, an upstream 401 or
    403 included, stays a target failure (500 ``provider``): the gateway's caller did
    authenticate, the gateway's own key was refused."""
    if isinstance(exc, ProviderError) and exc.kind == "rate_limited":
        limited = RateLimitedError(f"target is rate limited by its upstream: {exc.message}",
                                   retry_after=exc.retry_after)
        limited.__cause__ = exc
        return limited
    return exc


def _error_headers(exc: SippError) -> list[tuple[bytes, bytes]]:
    if isinstance(exc, AuthenticationError):
        return [(b"www-authenticate", b'Bearer realm="sipp-gateway"')]
    if isinstance(exc, AdmissionError):
        return [(b"retry-after", b"1")]
    retry = getattr(exc, "retry_after", None)
    if isinstance(exc, RateLimitedError) and retry is not None:
        return [(b"retry-after", str(max(1, int(retry + 0.999))).encode())]
    return []


Handler = Callable[[Exchange, TokenConfig, bytes], Awaitable[str | None]]


class Route:
    """A public route: operation label, handler, error style and allowed method."""

    __slots__ = ("error_style", "handler", "method", "operation")

    def __init__(self, operation: str, handler: Handler, error_style: ErrorStyle,
                 method: str = "POST") -> None:
        self.operation = operation
        self.handler = handler
        self.error_style = error_style
        self.method = method


class PublicApp:
    """The public listener's ASGI app."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        config = state.config
        self._limit = config.max_request_bytes
        self._origins = frozenset(config.allowed_origins)
        self.routes: dict[str, Route] = {
            config.routes.query: Route("query", self._query, profile_error),
            config.routes.chat: Route("chat", self._chat, profile_error),
            config.routes.embed: Route("embed", self._embed, profile_error),
        }
        if config.routes.openai is not None:
            from sipp.gateway.server.openai_compat import openai_routes

            self.routes.update(openai_routes(self, config.routes.openai))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        ex = Exchange(scope, receive, send)
        route = self.routes.get(ex.path.rstrip("/") or "/")
        if route is None:
            await ex.json(404, {"error": {"code": "not_found",
                                          "message": f"no route for {ex.path}"}})
            return
        await self._serve(ex, route)

    # ------------------------------------------------------------------ pipeline
    async def _serve(self, ex: Exchange, route: Route) -> None:
        state = self.state
        metrics = state.metrics
        metrics.in_flight += 1
        rejection: str | None = None
        target: str | None = None
        caller: str | None = None
        client = ex.peer or "unknown"
        try:
            client = state.client_ip.resolve(ex.peer, ex.headers)
            if state.blocklist.blocks(client):
                rejection = "blocked"
                raise BlockedError("client is blocked by the gateway")
            if self._origins and not await self._cors(ex):
                return
            if ex.method != route.method:
                rejection = "method"
                await ex.json(405, {"error": {"code": "method_not_allowed",
                                              "message": f"use {route.method} for {ex.path}"}},
                              [(b"allow", route.method.encode())])
                return
            if state.rate_limiter is not None:
                wait = state.rate_limiter.acquire(client)
                if wait is not None:
                    rejection = "rate_limited"
                    raise RateLimitedError("client rate limit exceeded", retry_after=wait)
            if (length := ex.header(b"content-length")) and length.isdigit() and \
                    int(length) > self._limit:
                rejection = "body_too_large"
                raise RequestTooLargeError(
                    f"request body is {int(length)} bytes; max_request_bytes is {self._limit}")
            rejection = "authentication"
            token = state.auth.authenticate(ex.header(b"authorization"))
            caller = token.caller
            rejection = "body_too_large"
            body = await ex.read_body(self._limit) if route.method == "POST" else b""
            rejection = None
            target = await route.handler(ex, token, body)
        except ClientGone:
            rejection = "client_closed"
        except SippError as exc:
            if isinstance(exc, AuthorizationError | TargetNotFoundError | AdmissionError
                          | RateLimitedError) or exc.code == "target_disabled":
                rejection = exc.code
            elif rejection not in ("blocked", "rate_limited", "authentication",
                                   "body_too_large"):
                rejection = None
            await self._fail(ex, route, exc)
        except Exception:
            rejection = None
            logger.exception("unexpected error", extra={"request_id": ex.request_id})
            await self._fail(ex, route, SippError("internal gateway error"))
        finally:
            metrics.in_flight -= 1
            elapsed = time.perf_counter() - ex.started
            status = ex.status or 499
            metrics.record(route.operation, status, elapsed, rejection)
            self._account(ex, route, client, caller, target, status, elapsed, rejection)
            if logger.isEnabledFor(logging.INFO):
                logger.info("request", extra={
                    "request_id": ex.request_id, "operation": route.operation,
                    "target": target, "caller": caller, "client": client, "status": status,
                    "ms": round(elapsed * 1000, 3), "rejection": rejection})

    def _account(self, ex: Exchange, route: Route, client: str, caller: str | None,
                 target: str | None, status: int, elapsed: float,
                 rejection: str | None) -> None:
        usage = ex.usage if isinstance(ex.usage, dict) else {}
        input_tokens = int(usage.get("input_tokens") or 0)
        output_tokens = int(usage.get("output_tokens") or 0)
        self.state.budgets.charge(caller, target, input_tokens + output_tokens)
        self.state.activity.record(RequestEvent(
            route.operation, ex.request_id, client, caller, target, status, elapsed * 1000,
            input_tokens, output_tokens, ex.streaming, rejection))

    async def _fail(self, ex: Exchange, route: Route, exc: SippError) -> None:
        if ex.status:  # response already started: nothing more to say in this shape
            return
        exc = caller_error(exc)
        status, body = route.error_style(exc)
        await ex.json(status, body, _error_headers(exc))

    async def _cors(self, ex: Exchange) -> bool:
        """Add CORS headers for allowed origins; answer preflights. False = responded."""
        origin = ex.header(b"origin")
        allowed = origin is not None and origin.decode("latin-1") in self._origins
        if allowed and origin is not None:
            ex.extra_headers += [(b"access-control-allow-origin", origin), (b"vary", b"Origin"),
                                 (b"access-control-expose-headers", b"x-request-id")]
        if ex.method != "OPTIONS" or ex.header(b"access-control-request-method") is None:
            return True
        if not allowed:
            ex.extra_headers.append((b"vary", b"Origin"))
            await ex.json(403, {"error": {"code": "cors", "message": "origin is not allowed"}})
            return False
        await ex.respond(204, b"", b"text/plain", [
            (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
            (b"access-control-allow-headers", b"authorization, content-type, x-request-id"),
            (b"access-control-max-age", b"600")])
        return False

    # ------------------------------------------------------------------ execution
    async def admitted(self, run_factory: Callable[[], Any],
                       body: Callable[[Any], Awaitable[None]]) -> None:
        """Hold an admission slot while ``body(run)`` runs; 429 when the limit is full."""
        admission = self.state.admission
        if not admission.try_enter():
            raise AdmissionError("application concurrency limit exceeded "
                                 f"(max_concurrent_requests={admission.limit})")
        try:
            await body(run_factory())
        finally:
            admission.leave()

    async def await_run(self, ex: Exchange, run: SippTextRun | SippEmbeddingRun) -> Any:
        """The run's response; cancels the run if the client disconnects first."""
        watcher = asyncio.ensure_future(ex.wait_disconnect())
        result = asyncio.ensure_future(_await(run))
        try:
            await asyncio.wait((result, watcher), return_when=asyncio.FIRST_COMPLETED)
            if result.done():
                return result.result()
            run.cancel("client_disconnected")
            self.state.metrics.disconnects += 1
            result.add_done_callback(_consume)
            raise ClientGone
        finally:
            watcher.cancel()

    async def stream(self, ex: Exchange, run: SippTextRun, operation: str,
                     encode: StreamEncoder) -> Any:
        """Write SSE frames as batches arrive. Failures before the first token are plain
        error responses; later ones become an in-band error event. Returns the response
        (None when the stream ended in an error or the client left)."""
        tokens = run.atokens()
        watcher = asyncio.ensure_future(ex.wait_disconnect())
        watcher.add_done_callback(
            lambda t: None if t.cancelled() else run.cancel("client_disconnected"))
        metrics = self.state.metrics
        ex.streaming = True
        try:
            first = await _first(tokens)
            if watcher.done():
                raise ClientGone
            await ex.start(200, b"text/event-stream", [
                (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")])
            if first is not None:
                metrics.ttft[operation].observe(time.perf_counter() - ex.started)
                await ex.body(encode.token(first), more=True)
                async for batch in tokens:
                    await ex.body(encode.token(batch), more=True)
            response = await run
            if watcher.done():
                raise ClientGone
            await ex.body(encode.end(response), more=False)
            return response
        except ClientGone:
            metrics.disconnects += 1
            if ex.status:
                await ex.body(b"", more=False)
            raise
        except SippError as exc:
            if not ex.status:
                raise
            await ex.body(encode.error(caller_error(exc)), more=False)
            return None
        finally:
            watcher.cancel()

    # ------------------------------------------------------------------ profile routes
    async def _query(self, ex: Exchange, token: TokenConfig, body: bytes) -> str:
        return await self._text(ex, token, profile.decode_query_body(body))

    async def _chat(self, ex: Exchange, token: TokenConfig, body: bytes) -> str:
        return await self._text(ex, token, profile.decode_chat_body(body))

    async def _text(self, ex: Exchange, token: TokenConfig,
                    request: profile.GatewayTextRequest) -> str:
        target = self.state.resolve_target(token, request.target)
        client = self.state.client

        def start() -> SippTextRun:
            if request.operation == "query":
                assert request.prompt is not None
                return client.query(request.prompt, endpoint=target.ref,
                                    options=request.options, emit_tokens=request.stream,
                                    request_id=ex.request_id)
            assert request.messages is not None
            return client.chat(request.messages, endpoint=target.ref, options=request.options,
                               emit_tokens=request.stream, request_id=ex.request_id)

        async def execute(run: SippTextRun) -> None:
            if request.stream:
                response = await self.stream(ex, run, request.operation, _ProfileStream())
            else:
                response = await self.await_run(ex, run)
                await ex.json(200, profile.text_response_body(request.target, response,
                                                              id=ex.request_id))
            if response is not None:
                self.state.record_usage(ex, request.target, response.get("usage"))

        await self.admitted(start, execute)
        return request.target

    async def _embed(self, ex: Exchange, token: TokenConfig, body: bytes) -> str:
        request = profile.decode_embed_body(body)
        target = self.state.resolve_target(token, request.target)

        async def execute(run: SippEmbeddingRun) -> None:
            response = await self.await_run(ex, run)
            self.state.record_usage(ex, request.target, response.get("usage"))
            await ex.json(200, profile.embedding_response_body(request.target, response,
                                                               id=ex.request_id))

        await self.admitted(lambda: self.state.client.embed(
            request.input, endpoint=target.ref, request_id=ex.request_id), execute)
        return request.target


class StreamEncoder(Protocol):
    def token(self, batch: TokenBatch) -> bytes: ...
    def end(self, response: Any) -> bytes: ...
    def error(self, exc: SippError) -> bytes: ...


class _ProfileStream:
    def token(self, batch: TokenBatch) -> bytes:
        return profile.token_event(batch.text, batch.sequence_start)

    def end(self, response: Any) -> bytes:
        usage = response.get("usage")
        done = profile.done_event(response["finish_reason"])
        return profile.usage_event(usage) + done if usage is not None else done

    def error(self, exc: SippError) -> bytes:
        return profile.error_event(exc)


async def _await(run: SippTextRun | SippEmbeddingRun) -> Any:
    return await run


async def _first(tokens: AsyncIterator[TokenBatch]) -> TokenBatch | None:
    try:
        return await tokens.__anext__()
    except StopAsyncIteration:
        return None


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class ManagementApp:
    """The management listener: index JSON, health, readiness, Prometheus metrics and the
    admin dashboard (under the ``admin`` route)."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        routes = state.config.routes
        handlers: dict[str | None, Callable[[Exchange], Awaitable[None]]] = {
            routes.index: self._index, routes.health: self._health,
            routes.readiness: self._readiness, routes.metrics: self._metrics,
        }
        self.routes = {path: handler for path, handler in handlers.items() if path is not None}
        self.admin = AdminApp(state, routes.admin) if routes.admin is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        ex = Exchange(scope, receive, send)
        path = ex.path.rstrip("/") or "/"
        if self.admin is not None and path not in self.routes and self.admin.owns(ex.path):
            await self.admin(ex)
            return
        handler = self.routes.get(ex.path.rstrip("/") or "/")
        if handler is None:
            await ex.json(404, {"error": {"code": "not_found",
                                          "message": f"no route for {ex.path}"}})
            return
        if ex.method not in ("GET", "HEAD"):
            await ex.json(405, {"error": {"code": "method_not_allowed",
                                          "message": f"use GET for {ex.path}"}},
                          [(b"allow", b"GET, HEAD")])
            return
        await handler(ex)

    async def _index(self, ex: Exchange) -> None:
        config = self.state.config
        await ex.json(200, {
            "service": "sipp-gateway",
            "version": __version__,
            "capabilities": ["query", "chat", "embed"],
            "ready": self.state.targets.ready,
            "routes": {name: getattr(config.routes, name)
                       for name in ("query", "chat", "embed", "openai", "index", "health",
                                    "readiness", "metrics", "admin")},
            "targets": [{"name": name, "type": s.target.type, "status": s.status}
                        for name, s in self.state.targets.states.items()],
        })

    async def _health(self, ex: Exchange) -> None:
        await ex.text(200, "ok")

    async def _readiness(self, ex: Exchange) -> None:
        targets = self.state.targets
        if targets.ready and not self.state.draining:
            await ex.text(200, "ready")
            return
        waiting = [f"{n}={s.status}" for n, s in targets.states.items() if s.status != "ready"]
        reason = "draining" if self.state.draining else ", ".join(waiting)
        await ex.text(503, f"not ready: {reason}")

    async def _metrics(self, ex: Exchange) -> None:
        text = self.state.metrics.render(self.state.targets.local_metrics)
        await ex.respond(200, text.encode(), b"text/plain; version=0.0.4; charset=utf-8")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
