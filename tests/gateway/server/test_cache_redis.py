"""The response cache with ``[state] backend = "redis"``: two replicas against one real
redis-server share exact and semantic hits (never across callers), Redis' TTL and the
entry limit evict, and a flush on one replica empties the cache for both."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import requests

from tests.gateway.server.conftest import BASE_CONFIG, ENV, LIMITED_TOKEN, RunningGateway, auth
from tests.gateway.server.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]


def replicas(start: Callable[..., RunningGateway], redis: RedisServer,
             **cache: Any) -> tuple[RunningGateway, RunningGateway]:
    config = copy.deepcopy(BASE_CONFIG)
    config["state"] = {"backend": "redis", "url_env": "REDIS_URL", "key_prefix": "t:"}
    # the fake embedding target (beta) embeds a text as [0.25, -0.5, its length]
    config["caches"] = [{"name": "answers", **cache}]
    config["targets"][0]["cache"] = config["caches"][0]["name"]
    env = {**ENV, "REDIS_URL": redis.url}
    return start(config, env=env), start(config, env=env)


def ask(gw: RunningGateway, content: str = "hello", token: str = "tok-all"
        ) -> requests.Response:
    """One request; a miss returns once its answer is filed (the fill follows the response,
    so another replica could otherwise ask before it is in Redis)."""
    cache = next(iter(gw.server.state.caches.caches.values()))
    stores = cache.stores
    r = requests.post(f"{gw.url}/v1/chat/completions", headers=auth(token), timeout=10,
                      json={"model": "alpha", "temperature": 0,
                            "messages": [{"role": "user", "content": content}]})
    deadline = time.monotonic() + 5
    while r.headers.get("x-sipp-cache") == "miss" and cache.stores == stores:
        assert time.monotonic() < deadline and not cache.errors, cache.snapshot()
        time.sleep(0.005)
    return r


def test_two_replicas_share_exact_and_semantic_hits(
        redis_server: RedisServer, start_gateway: Callable[..., RunningGateway]) -> None:
    a, b = replicas(start_gateway, redis_server)
    first = ask(a)
    assert first.headers["x-sipp-cache"] == "miss"
    hit = ask(b)
    assert hit.headers["x-sipp-cache"] == "hit"
    assert hit.json()["choices"] == first.json()["choices"]
    assert ask(b, token=LIMITED_TOKEN).headers["x-sipp-cache"] == "miss"  # per caller

    a, b = replicas(start_gateway, redis_server, name="semantic", mode="semantic",
                    embedding_target="beta", threshold=0.9999)
    assert ask(a, "hello").headers["x-sipp-cache"] == "miss"
    # b never saw "hello": it finds a's question vector through the shared stream
    assert ask(b, "hallo").headers["x-sipp-cache"] == "hit"
    assert ask(b, "a longer question").headers["x-sipp-cache"] == "miss"
    assert ask(a, "a longer questioN").headers["x-sipp-cache"] == "hit"


def test_redis_ttl_entry_limit_and_flush(
        redis_server: RedisServer, start_gateway: Callable[..., RunningGateway]) -> None:
    a, b = replicas(start_gateway, redis_server, ttl_seconds=0.5, max_entries=2)
    assert ask(a, "one").headers["x-sipp-cache"] == "miss"
    assert ask(b, "one").headers["x-sipp-cache"] == "hit"
    time.sleep(0.7)
    assert ask(b, "one").headers["x-sipp-cache"] == "miss"  # expired in Redis

    a, b = replicas(start_gateway, redis_server, name="small", max_entries=2)
    for content in ("x", "y", "z"):
        assert ask(a, content).headers["x-sipp-cache"] == "miss"
    assert ask(b, "z").headers["x-sipp-cache"] == "hit"
    assert ask(b, "x").headers["x-sipp-cache"] == "miss"  # the least recently used went
    assert a.server.state.caches.caches["small"].snapshot()["evictions"] >= 1
    assert ask(b, "z").headers["x-sipp-cache"] == "hit"
    flushed = a.server.state.caches.caches["small"]
    admin = requests.Session()
    login = admin.post(f"{a.management_url}/admin/api/session", json={"password": "pw"},
                       timeout=5)
    gone = admin.delete(f"{a.management_url}/admin/api/caches/small", timeout=5,
                        headers={"x-sipp-admin-csrf": login.json()["csrfToken"]})
    assert gone.status_code == 200 and gone.json()["flushed"] >= 2
    assert flushed.snapshot()["entries"] == 0
    assert ask(b, "z").headers["x-sipp-cache"] == "miss"
