"""Gateway replicas that share limits, budgets, admin sessions and controls through a real
Redis (``[state] backend = "redis"``), and what happens while Redis is down."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sipp.gateway.server.config import GatewayConfigError, parse_config
from tests.gateway.server.conftest import BASE_CONFIG, ENV, RunningGateway, auth
from tests.gateway.server.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]

ADMIN = "/admin/api"
CSRF_HEADER = "x-sipp-admin-csrf"


def _config(redis: RedisServer, **state: Any) -> tuple[dict[str, Any], dict[str, str]]:
    config = copy.deepcopy(BASE_CONFIG)
    config["state"] = {"backend": "redis", "url_env": "REDIS_URL", "key_prefix": "t:", **state}
    return config, {**ENV, "REDIS_URL": redis.url}


def _replicas(start: Callable[..., RunningGateway], redis: RedisServer, n: int = 3,
              **state: Any) -> list[RunningGateway]:
    config, env = _config(redis, **state)
    return [start(config, env=env) for _ in range(n)]


def _query(gateway: RunningGateway, prompt: str = "hello") -> requests.Response:
    return requests.post(gateway.url + "/v1/query", headers=auth(), timeout=10,
                         json={"model": "alpha", "prompt": prompt, "max_tokens": 8})


def _until(check: Callable[[], bool], seconds: float) -> float:
    """Seconds until ``check()`` held (fails after ``seconds``)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.02)
    return time.monotonic() - start


def test_state_section_is_validated() -> None:
    config = copy.deepcopy(BASE_CONFIG)
    config["state"] = {"backend": "redis"}
    with pytest.raises(GatewayConfigError, match=r"state\.url_env: is required"):
        parse_config(config)
    config["state"] = {"backend": "etcd", "on_unavailable": "maybe", "extra": 1}
    with pytest.raises(GatewayConfigError) as info:
        parse_config(config)
    text = str(info.value)
    assert "state.backend" in text and "state.on_unavailable" in text and "state.extra" in text
    assert parse_config(BASE_CONFIG).state.backend == "memory"


def test_a_per_client_limit_holds_across_replicas(
        redis_server: RedisServer, start_gateway: Callable[..., RunningGateway]) -> None:
    config, env = _config(redis_server)
    config["security"]["rate_limit"] = {"enabled": True, "requests_per_minute": 60, "burst": 60}
    replicas = [start_gateway(config, env=env) for _ in range(3)]
    statuses = [requests.get(replicas[i % 3].url + "/v1/models", headers=auth(),
                             timeout=10).status_code for i in range(90)]
    admitted = sum(1 for s in statuses if s == 200)
    assert {200, 429} >= set(statuses)
    # one shared bucket of 60 (plus at most a token or two refilled during the run);
    # three separate ones would have admitted all 90
    assert 58 <= admitted <= 62, admitted


def test_a_token_budget_holds_across_replicas(
        redis_server: RedisServer, start_gateway: Callable[..., RunningGateway]) -> None:
    config, env = _config(redis_server)
    config["security"]["token_limit"] = {"callers": {"all": 50}}
    replicas = [start_gateway(config, env=env) for _ in range(3)]
    admitted = 0
    for i in range(30):  # each request costs 5 tokens (3 in, 2 out)
        response = _query(replicas[i % 3])
        if response.status_code == 200:
            admitted += 1
        else:
            assert response.status_code == 429
            assert response.json()["error"]["code"] == "rate_limited"
    assert 10 <= admitted <= 11, admitted  # 50 tokens / 5 per request; not 3 x 10


def _login(gateway: RunningGateway) -> tuple[requests.Session, str]:
    http = requests.Session()
    r = http.post(gateway.management_url + ADMIN + "/session", json={"password": "pw"},
                  timeout=5)
    assert r.status_code == 200, r.text
    return http, str(r.json()["csrfToken"])


def test_admin_session_and_controls_from_one_replica_apply_on_the_others(
        redis_server: RedisServer, start_gateway: Callable[..., RunningGateway]) -> None:
    a, b, c = _replicas(start_gateway, redis_server)
    http, csrf = _login(a)
    # the cookie and CSRF token obtained from A work on B
    on_b = http.get(b.management_url + ADMIN + "/session", timeout=5)
    assert on_b.status_code == 200 and on_b.json()["csrfToken"] == csrf
    without_csrf = http.put(b.management_url + ADMIN + "/controls/targets/alpha",
                            json={"enabled": False}, timeout=5)
    assert without_csrf.status_code == 403
    # a target disabled through B is refused by C within a second
    r = http.put(b.management_url + ADMIN + "/controls/targets/alpha",
                 json={"enabled": False}, headers={CSRF_HEADER: csrf}, timeout=5)
    assert r.status_code == 200, r.text
    _until(lambda: _query(c).status_code == 503, 1.0)
    assert _query(c).json()["error"]["code"] == "target_disabled"
    http.put(a.management_url + ADMIN + "/controls/targets/alpha", json={"enabled": True},
             headers={CSRF_HEADER: csrf}, timeout=5)
    _until(lambda: _query(c).status_code == 200, 1.0)
    # a blocklist entry set on A is enforced by B within a second, and lifted likewise
    r = http.post(a.management_url + ADMIN + "/security/blocklist/127.0.0.1",
                 headers={CSRF_HEADER: csrf}, timeout=5)
    assert r.status_code == 200, r.text
    _until(lambda: _query(b).status_code == 403, 1.0)
    r = http.delete(c.management_url + ADMIN + "/security/blocklist/127.0.0.1",
                    headers={CSRF_HEADER: csrf}, timeout=5)
    assert r.status_code == 200, r.text
    _until(lambda: _query(b).status_code == 200, 1.0)
    # the overview says which replica answers
    overview = http.get(b.management_url + ADMIN + "/overview", timeout=5).json()
    assert overview["replica"]["sharedState"] == "redis"
    assert overview["replica"]["id"] and overview["replica"]["degraded"] is None
    # logging out on C ends the session everywhere
    assert http.delete(c.management_url + ADMIN + "/session", timeout=5).status_code == 200
    assert http.get(a.management_url + ADMIN + "/session", timeout=5).status_code == 401


def test_a_concurrency_limit_and_rate_limit_set_on_one_replica_reach_the_others(
        redis_server: RedisServer, start_gateway: Callable[..., RunningGateway]) -> None:
    a, b = _replicas(start_gateway, redis_server, n=2)
    http, csrf = _login(a)
    r = http.put(a.management_url + ADMIN + "/controls/concurrency", json={"limit": 3},
                 headers={CSRF_HEADER: csrf}, timeout=5)
    assert r.status_code == 200, r.text
    _until(lambda: b.server.state.admission.limit == 3, 1.0)
    r = http.put(a.management_url + ADMIN + "/security/rate-limit",
                 json={"enabled": True, "requestsPerMinute": 600, "burst": 5},
                 headers={CSRF_HEADER: csrf}, timeout=5)
    assert r.status_code == 200, r.text
    _until(lambda: b.server.state.rate_limit.burst == 5, 1.0)
    statuses = [requests.get(b.url + "/v1/models", headers=auth(), timeout=5).status_code
                for _ in range(8)]
    assert statuses.count(429) >= 2  # burst 5 (+ a token refilled per 0.1 s at most)


def _readyz(gateway: RunningGateway) -> str:
    return requests.get(gateway.management_url + "/readyz", timeout=5).text


def test_redis_down_fail_closed_refuses_limited_requests_then_recovers(
        redis_server: RedisServer, start_gateway: Callable[..., RunningGateway]) -> None:
    config, env = _config(redis_server)
    config["security"]["rate_limit"] = {"enabled": True, "requests_per_minute": 6000,
                                        "burst": 1000}
    gateway = start_gateway(config, env=env)
    http, _csrf = _login(gateway)
    assert _query(gateway).status_code == 200
    redis_server.stop()
    refused = _query(gateway)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "state_unavailable"
    assert "degraded" in _readyz(gateway)
    metrics = requests.get(gateway.management_url + "/metrics", timeout=5).text
    assert "sipp_gateway_state_available 0" in metrics
    assert "sipp_gateway_state_unavailable_total 0" not in metrics
    # admin sessions fail closed too (no crash, a clear 503)
    assert http.get(gateway.management_url + ADMIN + "/session", timeout=5).status_code == 503
    redis_server.start()
    _until(lambda: _query(gateway).status_code == 200, 5.0)
    assert "degraded" not in _readyz(gateway)
    # sessions lived in the old (now empty) Redis: logging in again works
    _login(gateway)


def test_redis_down_fail_open_keeps_serving(
        redis_server: RedisServer, start_gateway: Callable[..., RunningGateway]) -> None:
    config, env = _config(redis_server, on_unavailable="fail_open")
    config["security"]["rate_limit"] = {"enabled": True, "requests_per_minute": 60, "burst": 60}
    config["security"]["token_limit"] = {"callers": {"all": 1000}}
    gateway = start_gateway(config, env=env)
    redis_server.stop()
    assert all(_query(gateway).status_code == 200 for _ in range(3))
    assert "degraded" in _readyz(gateway)
    redis_server.start()
    _until(lambda: "degraded" not in _readyz(gateway), 5.0)


@pytest.fixture
def gateway_processes(tmp_path: Path, redis_server: RedisServer
                      ) -> Iterator[Callable[[int], list[str]]]:
    """``start(n)``: n ``sipp-gateway serve`` processes sharing ``redis_server``."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(n: int) -> list[str]:
        urls = []
        for i in range(n):
            public, management = _ports()
            toml = tmp_path / f"gateway-{i}.toml"
            toml.write_text(f"""
public_bind = "127.0.0.1:{public}"
management_bind = "127.0.0.1:{management}"
admin_password_env = "ADMIN_PW"
[state]
backend = "redis"
url_env = "REDIS_URL"
[security.client_ip]
source = "peer"
trusted_proxy_cidrs = []
[security.rate_limit]
enabled = true
requests_per_minute = 60
burst = 60
[[tokens]]
env = "TOKEN_ALL"
caller = "all"
targets = []
[[targets]]
name = "alpha"
type = "openai"
model = "m"
api_key_env = "KEY_A"
base_url = "http://127.0.0.1:9/v1"
""")
            env = {**os.environ, **ENV, "REDIS_URL": redis_server.url,
                   "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
            with (tmp_path / f"gateway-{i}.log").open("wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "sipp.gateway.server.cli", "serve", "--config",
                     str(toml)], stdout=log, stderr=subprocess.STDOUT, env=env))
            urls.append(f"http://127.0.0.1:{public}")
        for url in urls:
            _until(lambda u=url: _up(u), 30.0)  # type: ignore[misc]
        return urls

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(15)


def _ports() -> tuple[int, int]:
    import socket

    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        return int(a.getsockname()[1]), int(b.getsockname()[1])


def _up(url: str) -> bool:
    try:
        requests.get(url + "/v1/models", timeout=1)
    except requests.ConnectionError:
        return False
    return True


def test_three_serve_processes_share_one_rate_limit(
        gateway_processes: Callable[[int], list[str]]) -> None:
    urls = gateway_processes(3)
    # _up() spent a few tokens; count what the shared bucket still admits, from all three
    statuses = [requests.get(urls[i % 3] + "/v1/models", headers=auth(), timeout=10)
                .status_code for i in range(90)]
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}
    assert 55 <= admitted <= 62, admitted  # 60 minus the readiness probes; never 90
