"""The dashboard's targets view of a routed target: deployments, health, counts and the
fallback chain, through the admin API."""

from __future__ import annotations

from collections.abc import Callable

from tests.gateway.admin.conftest import Admin, public
from tests.gateway.server.conftest import RunningGateway


def test_targets_view_shows_deployments_and_fallbacks(
        admin_gateway: Callable[..., RunningGateway],
        admin_client: Callable[..., Admin]) -> None:
    local = {"type": "local", "model": "/models/replica.gguf"}
    gateway = admin_gateway(targets=[
        {"name": "alpha", "strategy": "round_robin", "fallbacks": ["beta"], "retries": 1,
         "cooldown_seconds": 9, "deployments": [{"name": "r1", **local},
                                                {"name": "r2", "weight": 2, **local}]},
        {"name": "beta", "type": "openai", "model": "m-b", "api_key_env": "KEY_B",
         "base_url": "http://127.0.0.1:9/v1"}])
    answer = public(gateway)
    assert answer.status_code == 200
    served = answer.headers["x-sipp-deployment"]
    admin = admin_client(gateway)
    assert admin.login().status_code == 200
    targets = {t["name"]: t for t in admin.get("/api/targets").json()["targets"]}
    assert targets["beta"]["routing"] is None
    alpha = targets["alpha"]
    assert alpha["kind"] == "router" and alpha["model"] == "r1, r2"
    routing = alpha["routing"]
    assert (routing["strategy"], routing["fallbacks"], routing["retries"],
            routing["cooldownSeconds"]) == ("round_robin", ["beta"], 1, 9.0)
    rows = {d["name"]: d for d in routing["deployments"]}
    assert set(rows) == {"alpha/r1", "alpha/r2"}
    assert rows["alpha/r2"]["weight"] == 2.0 and rows["alpha/r1"]["kind"] == "local"
    assert all(d["health"] == "healthy" and d["cooldownRemainingSeconds"] == 0
               for d in rows.values())
    assert rows[served]["served"] == 1 and rows[served]["latencyMs"] is not None
