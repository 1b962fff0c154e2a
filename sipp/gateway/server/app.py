"""The public listener's ASGI app, :class:`PublicApp`.

Public pipeline, in order: client IP → blocklist (403 ``blocked``) → CORS preflight →
method → rate limit (429) → body size (413) → bearer auth (401) → JSON decode (400) →
token allowlist (403) → target (404; 503 while loading or disabled) → tokens-per-minute
budgets of caller and target (429) → admission (429) → run on the gateway's SippClient,
started off the event loop (errors by their ``http_status``/``code``; an upstream rate
limit is 429 ``rate_limited`` with its ``Retry-After``, see
:func:`~sipp.gateway.server.execution.caller_error`) → JSON or SSE. Every finished request
is recorded in the metrics and the dashboard's :class:`Activity`, and its tokens are
charged to the caller's and the target's budgets.
"""

from __future__ import annotations

import logging
import time
from functools import partial

from sipp.errors import (
    AdmissionError,
    AuthenticationError,
    AuthorizationError,
    BlockedError,
    RateLimitedError,
    RequestTooLargeError,
    SippError,
    TargetNotFoundError,
)
from sipp.gateway.server.activity import RequestEvent
from sipp.gateway.server.execution import ClientGone, Execution, Route, caller_error
from sipp.gateway.server.http import Exchange, Receive, Scope, Send
from sipp.gateway.server.logging import logger
from sipp.gateway.server.openai_compat import openai_error, openai_routes
from sipp.gateway.server.profile_routes import profile_routes
from sipp.gateway.server.router import DEPLOYMENT_HEADER
from sipp.gateway.server.state import GatewayState

__all__ = ["PublicApp"]


class _NoRoute(SippError):
    """No route at this path (OpenAI-shaped under the OpenAI prefix)."""

    default_code = "not_found"
    http_status = 404


class _WrongMethod(SippError):
    default_code = "method_not_allowed"
    http_status = 405


def _error_headers(exc: SippError) -> list[tuple[bytes, bytes]]:
    if isinstance(exc, AuthenticationError):
        return [(b"www-authenticate", b'Bearer realm="sipp-gateway"')]
    if isinstance(exc, AdmissionError):
        return [(b"retry-after", b"1")]
    retry = getattr(exc, "retry_after", None)
    if isinstance(exc, RateLimitedError) and retry is not None:
        return [(b"retry-after", str(max(1, int(retry + 0.999))).encode())]
    return []


class PublicApp:
    """The public listener's ASGI app."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        config = state.config
        self._limit = config.max_request_bytes
        self._origins = frozenset(config.allowed_origins)
        execution = Execution(state)
        self.routes: dict[str, Route] = profile_routes(execution, config.routes)
        self._openai = None if config.routes.openai is None else \
            config.routes.openai.rstrip("/") + "/"
        if config.routes.openai is not None:
            self.routes.update(openai_routes(execution, config.routes.openai))
        # routes whose key ends in "/" serve every path below it (GET /v1/models/{id})
        self._below = [(key, route) for key, route in self.routes.items() if key.endswith("/")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        ex = Exchange(scope, receive, send)
        path = ex.path.rstrip("/") or "/"
        route = self.routes.get(path)
        if route is None:
            route = next((r for key, r in self._below
                          if path.startswith(key) and len(path) > len(key)), None)
        if route is None:
            error = _NoRoute(f"no route for {ex.path}")
            if self._openai is not None and (path + "/").startswith(self._openai):
                await ex.json(*openai_error(error))
            else:
                await ex.json(404, error.to_dict())
            return
        if self.state.targets.routers:
            ex.late_headers = partial(self._deployment_header, ex)
        await self._serve(ex, route)

    def _deployment_header(self, ex: Exchange) -> list[tuple[bytes, bytes]]:
        """``x-sipp-deployment``: the deployment of a routed target that served the call."""
        served = self.state.targets.attribution.get(ex.request_id)
        return [(DEPLOYMENT_HEADER, served.encode("utf-8", "replace"))] if served else []

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
                status, body = route.error_style(
                    _WrongMethod(f"use {route.method} for {ex.path}"))
                await ex.json(status, body, [(b"allow", route.method.encode())])
                return
            if state.rate_limiter is not None:
                wait = await state.replication.take_request(client)
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
            caller = ex.caller = token.caller
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
            await self._account(ex, route, client, caller, target, status, elapsed,
                                rejection)
            deployment = (state.targets.attribution.pop(ex.request_id)
                          if ex.late_headers is not None else None)
            if logger.isEnabledFor(logging.INFO):
                logger.info("request", extra={
                    "request_id": ex.request_id, "operation": route.operation,
                    "target": target, "caller": caller, "client": client, "status": status,
                    "ms": round(elapsed * 1000, 3), "rejection": rejection,
                    **({"deployment": deployment} if deployment else {})})

    async def _account(self, ex: Exchange, route: Route, client: str, caller: str | None,
                 target: str | None, status: int, elapsed: float,
                 rejection: str | None) -> None:
        usage = ex.usage if isinstance(ex.usage, dict) else {}
        input_tokens = int(usage.get("input_tokens") or 0)
        output_tokens = int(usage.get("output_tokens") or 0)
        # output tokens that streamed were charged as they were generated
        uncharged = max(0, output_tokens - ex.charged_output)
        self.state.replication.charge_soon(caller, target, input_tokens + uncharged)
        output_tokens = max(output_tokens, ex.charged_output)
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
        # every answer depends on Origin (allowed ones get CORS headers, others do not), so a
        # shared cache must key on it: Vary on all of them, not only the allowed ones
        ex.extra_headers.append((b"vary", b"Origin"))
        if allowed and origin is not None:
            ex.extra_headers += [(b"access-control-allow-origin", origin),
                                 (b"access-control-expose-headers",
                                  b"x-request-id, x-sipp-deployment, x-sipp-cache, "
                                  b"x-sipp-route, x-sipp-rag-sources")]
        if ex.method != "OPTIONS" or ex.header(b"access-control-request-method") is None:
            return True
        if not allowed:
            await ex.json(403, {"error": {"code": "cors", "message": "origin is not allowed"}})
            return False
        await ex.respond(204, b"", b"text/plain", [
            (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
            (b"access-control-allow-headers", b"authorization, content-type, x-request-id"),
            (b"access-control-max-age", b"600")])
        return False
