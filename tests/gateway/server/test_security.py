"""Rate limiting (injectable clock), client IP from trusted proxies, log redaction."""

from __future__ import annotations

import copy
import io
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import requests

from sipp.gateway.server.logging import JsonFormatter, parse_filter
from sipp.gateway.server.ratelimit import RateLimiter
from tests.gateway.server.conftest import BASE_CONFIG, TOKEN, RunningGateway, auth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_with_the_clock() -> None:
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=60, burst=2, clock=clock)
    assert limiter.acquire("a") is None and limiter.acquire("a") is None
    wait = limiter.acquire("a")
    assert wait is not None and abs(wait - 1.0) < 1e-9
    assert limiter.acquire("b") is None  # buckets are per client
    clock.now += 0.5
    assert limiter.acquire("a") is not None
    clock.now += 0.6
    assert limiter.acquire("a") is None
    clock.now += 3600
    assert [limiter.acquire("a") for _ in range(3)][:2] == [None, None]  # capped at burst


def _config(source: str, cidrs: list[str]) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["security"] = {"client_ip": {"source": source, "trusted_proxy_cidrs": cidrs},
                       "rate_limit": {"enabled": True, "requests_per_minute": 6, "burst": 1}}
    return cfg


def _query(gw: RunningGateway, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(gw.url + "/v1/query", json={"model": "alpha", "prompt": "hello"},
                         headers={**auth(), **(headers or {})}, timeout=5)


def test_rate_limit_429_then_refill(start_gateway: Callable[..., RunningGateway]) -> None:
    clock = Clock()
    gw = start_gateway(_config("peer", []), clock=clock)
    assert _query(gw).status_code == 200
    limited = _query(gw)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert limited.headers["retry-after"] == "10"
    clock.now += 10
    assert _query(gw).status_code == 200
    metrics = requests.get(gw.management_url + "/metrics", timeout=5).text
    assert 'sipp_gateway_rejected_total{reason="rate_limited"} 1' in metrics


def test_forwarded_header_honoured_only_from_trusted_proxy(
        start_gateway: Callable[..., RunningGateway]) -> None:
    # 10.0.0.1 is a trusted proxy hop: the client is the entry left of it
    trusted = start_gateway(_config("x_forwarded_for", ["127.0.0.0/8", "10.0.0.0/8"]))
    assert _query(trusted, {"X-Forwarded-For": "203.0.113.1, 10.0.0.1"}).status_code == 200
    assert _query(trusted, {"X-Forwarded-For": "203.0.113.2"}).status_code == 200
    assert _query(trusted, {"X-Forwarded-For": "203.0.113.1"}).status_code == 429
    untrusted = start_gateway(_config("x_forwarded_for", ["10.0.0.0/8"]))
    assert _query(untrusted, {"X-Forwarded-For": "203.0.113.1"}).status_code == 200
    assert _query(untrusted, {"X-Forwarded-For": "203.0.113.2"}).status_code == 429
    real_ip = start_gateway(_config("x_real_ip", ["127.0.0.1/32"]))
    assert _query(real_ip, {"X-Real-IP": "198.51.100.7"}).status_code == 200
    assert _query(real_ip, {"X-Real-IP": "198.51.100.8"}).status_code == 200
    assert _query(real_ip, {"X-Real-IP": "not-an-ip"}).status_code == 200  # falls back to peer
    assert _query(real_ip, {"X-Real-IP": "198.51.100.7"}).status_code == 429


def test_spoofed_forwarded_entries_do_not_bypass_the_rate_limit(
        start_gateway: Callable[..., RunningGateway]) -> None:
    # behind an appending proxy a client controls everything left of the proxy's entry;
    # taking the leftmost entry let it vary that and pass every limit (red-team finding)
    gw = start_gateway(_config("x_forwarded_for", ["127.0.0.0/8", "10.0.0.0/8"]))
    assert _query(gw, {"X-Forwarded-For": "1.1.1.1, 198.51.100.9, 10.0.0.1"}).status_code == 200
    spoofed = _query(gw, {"X-Forwarded-For": "2.2.2.2, 198.51.100.9, 10.0.0.1"})
    assert spoofed.status_code == 429


def test_request_logs_are_json_and_never_carry_tokens(gateway: RunningGateway) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("sipp.gateway.server")
    log.addHandler(handler)
    old = log.level
    log.setLevel(logging.INFO)
    try:
        _query(gateway, {"x-request-id": "log-1"})
        requests.post(gateway.url + "/v1/query", headers=auth("secret-guess"), timeout=5)
        # the access line is written once the response has gone out: wait for both
        deadline = time.monotonic() + 10
        while stream.getvalue().count('"msg": "request"') < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        log.removeHandler(handler)
        log.setLevel(old)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    first = next(line for line in lines if line.get("request_id") == "log-1")
    assert first["msg"] == "request" and first["status"] == 200
    assert first["caller"] == "all" and first["target"] == "alpha"
    assert any(line.get("status") == 401 for line in lines)
    assert TOKEN not in stream.getvalue() and "secret-guess" not in stream.getvalue()
    record = logging.makeLogRecord({"msg": "header Authorization: Bearer abc123 api_key=xyz"})
    text = JsonFormatter().format(record)
    assert "abc123" not in text and "xyz" not in text


def test_log_filter_spec() -> None:
    assert parse_filter("debug") == (logging.DEBUG, {})
    assert parse_filter("warn,sipp.gateway.server=debug") == (
        logging.WARNING, {"sipp.gateway.server": logging.DEBUG})
