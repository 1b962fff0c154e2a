"""The admin dashboard on the management listener: session API, read views, runtime
controls (CSRF-protected) and the single-page app's static files.

Every response carries ``cache-control: no-store``. Errors are
``{"error": <code>, "message": <text>}``. Mutating routes need a live session cookie and
the session's CSRF token in the ``x-sipp-admin-csrf`` header.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from sipp._json import UntrustedJsonError, loads_untrusted
from sipp.errors import RequestTooLargeError
from sipp.gateway.server.admin import views
from sipp.gateway.server.admin.sessions import (
    DEFAULT_TTL_SECONDS,
    LoginThrottle,
    MemorySessions,
    Session,
    SessionStore,
    csrf_ok,
)
from sipp.gateway.server.admin.static import StaticFiles
from sipp.gateway.server.cache_metrics import cache_overview
from sipp.gateway.server.config import RateLimitConfig
from sipp.gateway.server.http import ClientGone, Exchange
from sipp.gateway.server.logging import logger
from sipp.gateway.server.shared_state import RedisSessions, SharedSession, StateUnavailableError
from sipp.gateway.server.state import GatewayState

__all__ = ["API_ROUTES", "COOKIE_NAME", "CSRF_HEADER", "AdminApp", "ApiRoute"]

COOKIE_NAME = "sipp_gateway_admin"
CSRF_HEADER = "x-sipp-admin-csrf"
_MAX_BODY = 16 * 1024
_NO_STORE = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"),
             (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]


class AdminError(Exception):
    """An admin API refusal: HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []


def _unauthorized() -> AdminError:
    return AdminError(401, "unauthorized", "admin session is required")


AnySession = Session | SharedSession
View = Callable[[Exchange, AnySession | None, str], Awaitable[Any]]


class ApiRoute(NamedTuple):
    """One admin API route: ``path`` under ``<admin>/api/`` (``*`` matches a final
    segment), the :class:`AdminApp` method serving it, and whether it needs a session and
    the CSRF header."""

    method: str
    path: str
    view: str
    session: bool
    csrf: bool


# The admin API's route table. Every route that changes state needs session and CSRF,
# except logging in and out (a test holds the table to that).
API_ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute("GET", "session", "_session_get", session=False, csrf=False),
    ApiRoute("POST", "session", "_session_post", session=False, csrf=False),
    ApiRoute("DELETE", "session", "_session_delete", session=False, csrf=False),
    ApiRoute("GET", "overview", "_overview", session=True, csrf=False),
    ApiRoute("GET", "timeseries", "_timeseries", session=True, csrf=False),
    ApiRoute("GET", "routes", "_routes_view", session=True, csrf=False),
    ApiRoute("GET", "targets", "_targets", session=True, csrf=False),
    ApiRoute("GET", "clients", "_clients", session=True, csrf=False),
    ApiRoute("GET", "security", "_security", session=True, csrf=False),
    ApiRoute("PUT", "security/rate-limit", "_set_rate_limit", session=True, csrf=True),
    ApiRoute("POST", "security/blocklist/*", "_block", session=True, csrf=True),
    ApiRoute("DELETE", "security/blocklist/*", "_unblock", session=True, csrf=True),
    ApiRoute("PUT", "controls/concurrency", "_set_concurrency", session=True, csrf=True),
    ApiRoute("PUT", "controls/targets/*", "_set_target", session=True, csrf=True),
    ApiRoute("PUT", "controls/token-limits/caller/*", "_set_caller_limit", session=True,
             csrf=True),
    ApiRoute("PUT", "controls/token-limits/target/*", "_set_target_limit", session=True,
             csrf=True),
    ApiRoute("GET", "caches", "_caches", session=True, csrf=False),
    ApiRoute("DELETE", "caches/*", "_flush_cache", session=True, csrf=True),
)


class AdminApp:
    """Serves every path under the configured admin route ``base``."""

    def __init__(self, state: GatewayState, base: str) -> None:
        self.state = state
        self.base = "" if base == "/" else base.rstrip("/")
        self.sessions: MemorySessions | RedisSessions = (
            RedisSessions(state.shared, DEFAULT_TTL_SECONDS) if state.shared is not None
            else MemorySessions(SessionStore(state.clock)))
        self.throttle = LoginThrottle(state.clock)
        self.static = StaticFiles(self.base + "/")
        self._routes: dict[tuple[str, str], tuple[View, bool, bool]] = {
            (route.method, route.path): (getattr(self, route.view), route.session, route.csrf)
            for route in API_ROUTES
        }

    def owns(self, path: str) -> bool:
        return path == self.base or path.startswith(self.base + "/")

    async def __call__(self, ex: Exchange) -> None:
        rest = ex.path[len(self.base):]
        if rest.startswith("/api/") or rest == "/api":
            await self._api(ex, rest[len("/api/"):])
            return
        if ex.method not in ("GET", "HEAD"):
            await self._json(ex, 405, {"error": "method_not_allowed",
                                       "message": f"use GET for {ex.path}"},
                             [(b"allow", b"GET, HEAD")])
            return
        if rest == "":
            await ex.respond(308, b"", b"text/plain",
                             [(b"location", (self.base + "/").encode()), *_NO_STORE])
            return
        found = self.static.lookup(rest[1:])
        if found is None:
            await ex.respond(404, b"", b"text/plain", _NO_STORE)
            return
        data, content_type, extra = found
        await ex.respond(200, data, content_type, [*_NO_STORE, *extra])

    # ------------------------------------------------------------------ dispatch
    def _match(self, method: str, path: str) -> tuple[View, bool, bool, str] | None:
        path = path.rstrip("/")
        found = self._routes.get((method, path))
        if found is not None:
            return (*found, "")
        for (route_method, pattern), entry in self._routes.items():
            if route_method == method and pattern.endswith("/*"):
                prefix = pattern[:-1]
                if path.startswith(prefix) and len(path) > len(prefix):
                    return (*entry, path[len(prefix):])
        return None

    async def _api(self, ex: Exchange, path: str) -> None:
        try:
            match = self._match(ex.method, path)
            if match is None:
                known = any(self._match(m, path) for m in ("GET", "POST", "PUT", "DELETE"))
                if known:
                    raise AdminError(405, "method_not_allowed",
                                     f"{ex.method} is not allowed on {ex.path}")
                raise AdminError(404, "not_found", f"no admin API route for {ex.path}")
            view, needs_session, needs_csrf, argument = match
            try:
                session = await self.sessions.get(self._cookie(ex))
            except StateUnavailableError as exc:  # sessions fail closed
                raise AdminError(503, exc.code, exc.message) from exc
            if needs_session and session is None:
                raise _unauthorized()
            if needs_csrf and (session is None
                               or not csrf_ok(session.csrf_token,
                                              ex.header(CSRF_HEADER.encode()))):
                logger.warning("admin CSRF check failed", extra={"path": ex.path})
                raise AdminError(403, "csrf_failed", "admin CSRF token is invalid")
            try:
                result = await view(ex, session, argument)
            except StateUnavailableError as exc:
                raise AdminError(503, exc.code, exc.message) from exc
            if result is not None:
                await self._json(ex, 200, result)
        except AdminError as exc:
            await self._json(ex, exc.status, {"error": exc.code, "message": exc.message},
                             exc.headers)
        except ClientGone:
            return  # nobody is left to answer
        except Exception:
            logger.exception("admin API error", extra={"path": ex.path})
            await self._json(ex, 500, {"error": "internal", "message": "admin API error"})

    async def _json(self, ex: Exchange, status: int, obj: Any,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
        await ex.json(status, obj, [*_NO_STORE, *(headers or [])])

    @staticmethod
    def _cookie(ex: Exchange) -> str | None:
        header = ex.header(b"cookie")
        if header is None:
            return None
        for part in header.decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE_NAME and value:
                return value
        return None

    def _set_cookie(self, ex: Exchange, value: str, max_age: int) -> tuple[bytes, bytes]:
        https = ex.scope.get("scheme") == "https" or self.state.client_ip.forwarded_https(
            ex.peer, ex.headers)
        secure = "; Secure" if https else ""
        path = self.base or "/"
        return (b"set-cookie", f"{COOKIE_NAME}={value}; Max-Age={max_age}; Path={path}; "
                               f"HttpOnly; SameSite=Strict{secure}".encode())

    async def _body(self, ex: Exchange) -> dict[str, Any]:
        try:
            raw = await ex.read_body(_MAX_BODY)
        except RequestTooLargeError as exc:
            raise AdminError(413, "too_large", exc.message) from exc
        try:
            obj = loads_untrusted(raw or b"null", max_depth=8)
        except UntrustedJsonError as exc:
            raise AdminError(400, "bad_request", f"body: {exc}") from None
        if not isinstance(obj, dict):
            raise AdminError(400, "bad_request", "body must be a JSON object")
        return obj

    def _session_body(self, session: AnySession) -> dict[str, Any]:
        return {"authenticated": True, "csrfToken": session.csrf_token,
                "csrfHeader": CSRF_HEADER, "basePath": self.base + "/",
                "expiresInSeconds": max(0, int(session.expires - self.sessions.now()))}

    # ------------------------------------------------------------------ session
    async def _session_get(self, ex: Exchange, session: AnySession | None, _: str) -> Any:
        if session is None:
            raise _unauthorized()
        return self._session_body(session)

    async def _session_post(self, ex: Exchange, session: AnySession | None, _: str) -> Any:
        client = self.state.client_ip.resolve(ex.peer, ex.headers)
        wait = self.throttle.begin(client)
        if wait is not None:
            seconds = max(1, int(wait + 0.999))
            logger.warning("admin login throttled", extra={"client": client})
            raise AdminError(429, "login_throttled",
                             f"too many failed logins (or one still being checked); retry in "
                             f"{seconds} s", [(b"retry-after", str(seconds).encode())])
        try:
            await self._login(ex, client)
        finally:
            self.throttle.end(client)

    async def _login(self, ex: Exchange, client: str) -> None:
        body = await self._body(ex)
        password = body.get("password")
        if not isinstance(password, str):
            raise AdminError(400, "bad_request", "field 'password' must be a string")
        if not self.state.admin_password.matches(password):
            self.throttle.failure(client)
            logger.warning("admin login failed", extra={"client": client})
            raise AdminError(401, "unauthorized", "wrong admin password")
        self.throttle.success(client)
        await self.sessions.delete(self._cookie(ex))
        new = await self.sessions.create()
        logger.info("admin login", extra={"client": client})
        await self._json(ex, 200, self._session_body(new),
                         [self._set_cookie(ex, new.id, int(self.sessions.ttl))])

    async def _session_delete(self, ex: Exchange, session: AnySession | None, _: str) -> Any:
        await self.sessions.delete(self._cookie(ex))
        await self._json(ex, 200, {"authenticated": False}, [self._set_cookie(ex, "", 0)])
        return None

    # ------------------------------------------------------------------ views
    async def _overview(self, ex: Exchange, session: AnySession | None, _: str) -> Any:
        return views.overview(self.state)

    async def _timeseries(self, ex: Exchange, session: AnySession | None, _: str) -> Any:
        return {"bucketSeconds": 10, "timeseries": self.state.activity.timeseries()}

    async def _routes_view(self, ex: Exchange, session: AnySession | None, _: str) -> Any:
        return {"routes": views.routes(self.state)}

    async def _targets(self, ex: Exchange, session: AnySession | None, _: str) -> Any:
        return {"targets": views.targets(self.state),
                "metrics": self.state.activity.target_rows()}

    async def _clients(self, ex: Exchange, session: AnySession | None, _: str) -> Any:
        return {"clients": self.state.activity.clients(), "recent": self.state.activity.recent()}

    async def _security(self, ex: Exchange, session: AnySession | None, _: str) -> Any:
        return {"security": views.security(self.state)}

    async def _caches(self, ex: Exchange, session: AnySession | None, _: str) -> Any:
        return cache_overview(self.state)

    # ------------------------------------------------------------------ controls
    async def _flush_cache(self, ex: Exchange, session: AnySession | None, name: str) -> Any:
        cache = self.state.caches.caches.get(name)
        if cache is None:
            raise AdminError(404, "not_found", f"cache not found: {name}")
        flushed = await cache.flush()
        logger.info("admin flushed cache", extra={"cache": name, "entries": flushed})
        return {"flushed": flushed, **cache_overview(self.state)}

    async def _set_rate_limit(self, ex: Exchange, session: AnySession | None, _: str) -> Any:
        body = await self._body(ex)
        enabled = body.get("enabled")
        if not isinstance(enabled, bool):
            raise AdminError(400, "bad_request", "field 'enabled' must be true or false")
        rpm = _positive(body, "requestsPerMinute")
        burst = _positive(body, "burst")
        await self.state.replication.set_rate_limit(RateLimitConfig(enabled, rpm, burst))
        logger.info("admin changed rate limit", extra={
            "enabled": enabled, "requests_per_minute": rpm, "burst": burst})
        return {"security": views.security(self.state)}

    async def _block(self, ex: Exchange, session: AnySession | None, client: str) -> Any:
        try:
            entry = await self.state.replication.block(client)
        except ValueError as exc:
            raise AdminError(400, "bad_request", str(exc)) from exc
        logger.info("admin blocked client", extra={"entry": entry})
        return {"security": views.security(self.state)}

    async def _unblock(self, ex: Exchange, session: AnySession | None, client: str) -> Any:
        try:
            removed = await self.state.replication.unblock(client)
        except ValueError as exc:
            raise AdminError(400, "bad_request", str(exc)) from exc
        if not removed:
            raise AdminError(404, "not_found", f"client is not on the blocklist: {client}")
        logger.info("admin unblocked client", extra={"entry": client})
        return {"security": views.security(self.state)}

    async def _set_concurrency(self, ex: Exchange, session: AnySession | None, _: str) -> Any:
        body = await self._body(ex)
        if "limit" not in body:
            raise AdminError(400, "bad_request",
                             "field 'limit' is required (an integer > 0, or null for unbounded)")
        limit = None if body["limit"] is None else _positive(body, "limit")
        await self.state.replication.set_concurrency(limit)
        logger.info("admin changed concurrency limit", extra={"limit": limit})
        return {"concurrency": views.concurrency(self.state)}

    async def _set_target(self, ex: Exchange, session: AnySession | None, name: str) -> Any:
        if name not in self.state.targets.states:
            raise AdminError(404, "not_found", f"target not found: {name}")
        body = await self._body(ex)
        enabled = body.get("enabled")
        if not isinstance(enabled, bool):
            raise AdminError(400, "bad_request", "field 'enabled' must be true or false")
        await self.state.replication.set_target_enabled(name, enabled)
        logger.info("admin changed target", extra={"target": name, "enabled": enabled})
        return {"targets": views.targets(self.state),
                "metrics": self.state.activity.target_rows()}

    async def _set_caller_limit(self, ex: Exchange, session: AnySession | None, name: str) -> Any:
        if name not in {t.caller for t in self.state.config.tokens}:
            raise AdminError(404, "not_found", f"token caller not found: {name}")
        return await self._set_token_limit(ex, "caller", name)

    async def _set_target_limit(self, ex: Exchange, session: AnySession | None, name: str) -> Any:
        if name not in self.state.targets.states:
            raise AdminError(404, "not_found", f"target not found: {name}")
        return await self._set_token_limit(ex, "target", name)

    async def _set_token_limit(self, ex: Exchange, kind: str, name: str) -> Any:
        body = await self._body(ex)
        if "tokensPerMinute" not in body:
            raise AdminError(400, "bad_request", "field 'tokensPerMinute' is required (an "
                                                 "integer > 0, or null for no limit)")
        limit = None if body["tokensPerMinute"] is None else _positive(body, "tokensPerMinute")
        await self.state.replication.set_token_limit(
            "caller" if kind == "caller" else "target", name, limit)
        logger.info("admin changed token limit", extra={"kind": kind, "limited": name,
                                                        "tokens_per_minute": limit})
        return {"security": views.security(self.state)}


_MAX_LIMIT = 10**9  # per minute: far above any real limit, far below float/overflow trouble


def _positive(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AdminError(400, "bad_request",
                         f"field '{key}' must be an integer greater than zero, got "
                         f"{json.dumps(value)[:40]}")
    if value > _MAX_LIMIT:
        raise AdminError(400, "bad_request",
                         f"field '{key}' must be at most {_MAX_LIMIT}, got {str(value)[:40]}")
    return value
