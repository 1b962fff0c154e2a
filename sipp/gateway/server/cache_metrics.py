"""The response caches and RAG collections in Prometheus text and the admin dashboard's
JSON (labels: configured cache, collection and target names only)."""

from __future__ import annotations

from typing import Any

from sipp._prometheus import escape_label
from sipp.gateway.server.state import GatewayState

__all__ = ["cache_overview", "render_cache_metrics"]


def cache_overview(state: GatewayState) -> dict[str, Any]:
    """What the dashboard shows: every cache's counts and every collection's size."""
    caches = state.caches.snapshot()
    for cache in caches:
        looked = cache["hits"] + cache["misses"]
        cache["hitRate"] = round(cache["hits"] / looked, 4) if looked else None
    return {"caches": caches, "collections": state.rag.snapshot()}


def render_cache_metrics(state: GatewayState) -> str:
    caches = state.caches.snapshot()
    collections = state.rag.snapshot()
    if not caches and not collections:
        return ""
    out: list[str] = []

    def family(name: str, kind: str, help: str) -> None:
        out.append(f"# HELP {name} {help}")
        out.append(f"# TYPE {name} {kind}")

    if caches:
        family("sipp_gateway_cache_requests_total", "counter",
               "Cache lookups by result (hit, miss, bypass).")
        for c in caches:
            for result, key in (("hit", "hits"), ("miss", "misses"), ("bypass", "bypasses")):
                out.append(f'sipp_gateway_cache_requests_total{{cache="{escape_label(c["name"])}",'
                           f'result="{result}"}} {c[key]}')
        for key, kind, help in (
                ("entries", "gauge", "Entries held."), ("bytes", "gauge", "Bytes held."),
                ("evictions", "counter", "Entries evicted by the entry or byte limit."),
                ("expirations", "counter", "Entries dropped after their TTL."),
                ("stores", "counter", "Answers filed.")):
            name = f"sipp_gateway_cache_{key}" + ("_total" if kind == "counter" else "")
            family(name, kind, help)
            for c in caches:
                out.append(f'{name}{{cache="{escape_label(c["name"])}"}} {c[key]}')
        family("sipp_gateway_cache_routed_total", "counter",
               "Requests a route-on-hit rule sent to another target.")
        for c in caches:
            for row in c["routed"]:
                out.append(f'sipp_gateway_cache_routed_total{{cache="{escape_label(c["name"])}",'
                           f'on="{row["on"]}",target="{escape_label(row["target"])}"}} '
                           f'{row["count"]}')
    if collections:
        for key, kind, help in (("chunks", "gauge", "Chunks indexed."),
                                ("documents", "gauge", "Documents indexed."),
                                ("searches", "counter", "Searches run.")):
            name = f"sipp_gateway_rag_{key}" + ("_total" if kind == "counter" else "")
            family(name, kind, help)
            for col in collections:
                out.append(f'{name}{{collection="{escape_label(col["name"])}"}} {col[key]}')
    return "\n".join(out) + "\n"
