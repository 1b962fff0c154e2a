"""The management listener's ASGI app, :class:`ManagementApp`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sipp._version import __version__
from sipp.gateway.server.admin.api import AdminApp
from sipp.gateway.server.cache_metrics import render_cache_metrics
from sipp.gateway.server.http import Exchange, Receive, Scope, Send
from sipp.gateway.server.state import GatewayState

__all__ = ["ManagementApp"]


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
            degraded = self.state.replication.degraded()
            await ex.text(200, f"ready (degraded: {degraded})" if degraded else "ready")
            return
        waiting = [f"{n}={s.status}" for n, s in targets.states.items() if s.status != "ready"]
        reason = "draining" if self.state.draining else ", ".join(waiting)
        await ex.text(503, f"not ready: {reason}")

    async def _metrics(self, ex: Exchange) -> None:
        text = self.state.metrics.render(self.state.targets.local_metrics,
                                         self.state.targets.router_metrics)
        text += render_cache_metrics(self.state)
        if (shared := self.state.shared) is not None:
            text += (
                "# HELP sipp_gateway_state_unavailable_total Shared state (Redis) calls that "
                "failed because it was unreachable.\n"
                "# TYPE sipp_gateway_state_unavailable_total counter\n"
                f"sipp_gateway_state_unavailable_total {shared.unavailable_total}\n"
                "# HELP sipp_gateway_state_available Whether the shared state store answered "
                "the last call.\n"
                "# TYPE sipp_gateway_state_available gauge\n"
                f"sipp_gateway_state_available {int(shared.available)}\n")
        await ex.respond(200, text.encode(), b"text/plain; version=0.0.4; charset=utf-8")
