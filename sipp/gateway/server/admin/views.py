"""JSON views of gateway state for the admin API (never a secret value)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sipp._version import __version__
from sipp.gateway.server.config import LocalTarget, Target
from sipp.gateway.server.logging import redact
from sipp.gateway.server.state import GatewayState
from sipp.native import backend_info

__all__ = ["overview", "routes", "security", "targets"]

_ROUTE_NAMES = (("query", "public"), ("chat", "public"), ("embed", "public"),
                ("openai", "public"), ("index", "management"), ("health", "management"),
                ("readiness", "management"), ("metrics", "management"), ("admin", "management"))


def security(state: GatewayState) -> dict[str, Any]:
    rate = state.rate_limit
    limiter = state.rate_limiter
    return {
        "clientIpSource": state.config.client_ip.source,
        "trustedProxyCidrs": [str(n) for n in state.config.client_ip.trusted_proxy_cidrs],
        "rateLimit": {"enabled": rate.enabled, "requestsPerMinute": rate.requests_per_minute,
                      "burst": rate.burst,
                      "trackedClients": len(limiter) if limiter is not None else 0},
        "blocklist": state.blocklist.entries(),
        "tokenLimits": state.budgets.snapshot(),
        "callers": [t.caller for t in state.config.tokens],
    }


def concurrency(state: GatewayState) -> dict[str, Any]:
    return {"limit": state.admission.limit, "active": state.admission.active}


def _backend(target: Target, loaded: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(target, LocalTarget):
        return None
    selected = loaded.get("backend") if loaded else None
    reason = (f"{target.backend} requested" if target.backend != "auto"
              else f"auto selected {selected}" if selected else "auto (not loaded yet)")
    return {"requested": target.backend, "selected": selected, "reason": reason,
            "gpuOffloadExpected": bool(loaded.get("gpu_offload")) if loaded else None}


def _native_info(state: GatewayState) -> dict[str, Any] | None:
    """The loaded native backend, only when a local target has already loaded it."""
    if not any(s.status == "ready" and isinstance(s.target, LocalTarget)
               for s in state.targets.states.values()):
        return None
    try:
        return dict(backend_info())
    except Exception:  # the dashboard shows "unknown" rather than failing
        return None


def targets(state: GatewayState) -> list[dict[str, Any]]:
    loaded = _native_info(state)
    out: list[dict[str, Any]] = []
    for name, target_state in state.targets.states.items():
        target = target_state.target
        model = Path(target.model).name if isinstance(target, LocalTarget) else target.model
        out.append({
            "name": name,
            "kind": target.type,
            "model": model,
            "status": target_state.status,
            "enabled": name not in state.disabled_targets,
            "error": redact(target_state.error) if target_state.error else None,
            "backend": _backend(target, loaded),
            "providerBaseUrl": getattr(target, "base_url", None),
            "tokensPerMinute": state.budgets.limit("target", name),
            "routing": _routing(state, name),
        })
    return out


def _routing(state: GatewayState, name: str) -> dict[str, Any] | None:
    """A routed target's strategy, fallback chain and per-deployment health (None for a
    single-model target)."""
    router = state.targets.routers.get(name)
    return router.snapshot() if router is not None else None


def routes(state: GatewayState) -> list[dict[str, Any]]:
    configured = state.config.routes
    return [{"name": name, "path": getattr(configured, name), "listener": listener}
            for name, listener in _ROUTE_NAMES if getattr(configured, name) is not None]


def overview(state: GatewayState) -> dict[str, Any]:
    activity = state.activity
    config = state.config
    return {
        "version": __version__,
        "uptimeSeconds": int(time.time() - state.started),
        "ready": state.targets.ready,
        "draining": state.draining,
        "replica": {"id": state.replication.replica_id,
                    "sharedState": state.config.state.backend,
                    "degraded": state.replication.degraded()},
        "maxRequestBytes": config.max_request_bytes,
        "configuredConcurrencyLimit": config.max_concurrent_requests,
        "metrics": {"totals": activity.summary(state.metrics.in_flight),
                    "operations": activity.operation_rows(),
                    "targets": activity.target_rows()},
        "controls": {"concurrency": concurrency(state)},
        "security": security(state),
        "backends": [{"target": t["name"], **t["backend"]}
                     for t in targets(state) if t["backend"] is not None],
    }
