"""Routed targets on real gateways on loopback: deployments, retries, fallbacks, cooldowns,
the deployment header, and streams whose replica dies after the first token."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from sipp.client import SippClient
from sipp.gateway.server.admin import views
from sipp.gateway.server.config import GatewayConfigError, RoutedTarget, parse_config
from tests.gateway.server.conftest import (
    BASE_CONFIG,
    ENV,
    TOKEN,
    RunningGateway,
    Script,
    auth,
)
from tests.gateway.server.replicas import GatewayProcess, free_port
from tests.gateway.server.upstream import MockOpenAI

FAIL_500 = (500, {"error": {"message": "upstream broke", "type": "server_error"}}, {})


def upstream_target(name: str, url: str) -> dict[str, Any]:
    return {"name": name, "type": "openai_compatible", "model": "m", "base_url": url,
            "token_env": "KEY_A"}


def config_with(*targets: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(BASE_CONFIG)
    config["tokens"] = [{"env": "TOKEN_ALL", "caller": "all", "targets": []}]
    config["targets"] = list(targets)
    return config


@pytest.fixture
def upstreams() -> Iterator[Callable[[], MockOpenAI]]:
    started: list[MockOpenAI] = []

    def make() -> MockOpenAI:
        server = MockOpenAI()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stall.set()
        server.stop()


@pytest.fixture
def serve() -> Iterator[Callable[[dict[str, Any]], RunningGateway]]:
    running: list[RunningGateway] = []

    def start(config: dict[str, Any]) -> RunningGateway:
        gateway = RunningGateway(config, ENV, SippClient())
        running.append(gateway)
        return gateway

    yield start
    for gateway in running:
        gateway.stop()


def chat(gateway: RunningGateway, target: str = "chat", text: str = "hi",
         **extra: Any) -> requests.Response:
    return requests.post(f"{gateway.url}/v1/chat", headers=auth(), timeout=30, json={
        "model": target, "messages": [{"role": "user", "content": text}], **extra})


def events(response: requests.Response) -> list[tuple[str, Any]]:
    out = []
    for block in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


# --------------------------------------------------------------------------- config
def test_check_validates_every_routing_field() -> None:
    good = config_with({
        "name": "chat", "strategy": "weighted", "fallbacks": ["backup"], "retries": 2,
        "retry_backoff_seconds": 0, "cooldown_after_failures": 2,
        "cooldown_window_seconds": 10, "cooldown_seconds": 5,
        "deployments": [
            {"name": "a", "weight": 3, **{k: v for k, v in upstream_target(
                "x", "http://127.0.0.1:9/v1").items() if k != "name"}},
            {"name": "b", "type": "gateway", "base_url": "http://127.0.0.1:8/",
             "target": "chat", "token_env": "TOKEN_ALL",
             "readiness_url": "http://127.0.0.1:7/readyz"},
            {"name": "lan", "type": "gateway", "base_url": "http://10.0.0.2:8080",
             "target": "chat", "allow_plain_http": True,
             "readiness_url": "http://10.0.0.2:9090/readyz"},
        ]}, upstream_target("backup", "http://127.0.0.1:9/v1"))
    parsed = parse_config(good)
    routed = parsed.targets[0]
    assert isinstance(routed, RoutedTarget)
    assert [d.target.name for d in routed.deployments] == ["chat/a", "chat/b", "chat/lan"]
    assert routed.deployments[0].weight == 3.0 and routed.retries == 2

    bad = config_with({
        "name": "chat", "type": "local", "strategy": "fastest", "fallbacks": ["ghost", "chat"],
        "retries": -1, "retry_backoff_seconds": "soon", "cooldown_seconds": 0,
        "deployments": [
            {"name": "a/b", "type": "gateway", "target": "x"},
            {"name": "c", "type": "gateway", "base_url": "http://127.0.0.1:8", "target": "x",
             "weight": 0, "pii": {"mode": "mask"}},
            {"name": "c", "type": "openai", "model": "m", "api_key_env": "KEY_A"},
            {"name": "d", "type": "gateway", "base_url": "http://10.0.0.2:8080", "target": "x",
             "allow_plain_http": "yes"},
        ]}, {"name": "empty", "deployments": []},
        {"name": "loop-a", "deployments": [upstream_target("a", "http://127.0.0.1:9/v1")],
         "fallbacks": ["loop-b"]},
        {"name": "loop-b", "deployments": [upstream_target("a", "http://127.0.0.1:9/v1")],
         "fallbacks": ["loop-a"]})
    with pytest.raises(GatewayConfigError) as info:
        parse_config(bad)
    issues = {issue.path: issue.message for issue in info.value.issues}
    assert issues["targets[0].type"].startswith("a target with deployments takes no type")
    assert issues["targets[0].strategy"] == ("must be one of: least_busy, round_robin, "
                                             "lowest_latency, weighted; got 'fastest'")
    assert issues["targets[0].fallbacks[0]"] == "unknown target: ghost"
    assert issues["targets[0].fallbacks[1]"] == "a target cannot fall back to itself"
    assert "zero or more" in issues["targets[0].retries"]
    assert "zero or more" in issues["targets[0].retry_backoff_seconds"]
    assert "greater than zero" in issues["targets[0].cooldown_seconds"]
    assert issues["targets[0].deployments[0].name"] == "must not contain '/', got 'a/b'"
    assert issues["targets[0].deployments[0].base_url"].startswith("is required")
    assert "greater than zero" in issues["targets[0].deployments[1].weight"]
    assert issues["targets[0].deployments[1].pii"].startswith("set pii on the routed target")
    assert issues["targets[0].deployments[2].name"] == "duplicate deployment: c"
    assert issues["targets[0].deployments[3].allow_plain_http"] == \
        "must be true or false, got 'yes'"
    assert issues["targets[0].deployments[3].base_url"] == \
        "must use https unless the host is loopback, got 'http://10.0.0.2:8080'"
    assert issues["targets[1].deployments"].startswith("must be a non-empty array")
    assert "loops back to loop-a" in issues["targets[2].fallbacks[0]"]


# --------------------------------------------------------------------------- failover
def test_failing_and_refused_deployments_are_skipped_without_caller_errors(
        upstreams: Callable[[], MockOpenAI], serve: Callable[..., RunningGateway]) -> None:
    broken, good = upstreams(), upstreams()
    broken.reply = FAIL_500
    refused = f"http://127.0.0.1:{free_port()}/v1"
    gateway = serve(config_with({
        "name": "chat", "strategy": "round_robin", "retries": 2, "retry_backoff_seconds": 0,
        "cooldown_after_failures": 1000,
        "deployments": [upstream_target("broken", broken.url),
                        upstream_target("refused", refused),
                        upstream_target("good", good.url)]}))
    for _ in range(3):
        response = chat(gateway)
        assert response.status_code == 200, response.text
        assert response.json()["text"] == "Hello"
        assert response.headers["x-sipp-deployment"] == "chat/good"
        stream = chat(gateway, stream=True)
        assert stream.status_code == 200
        assert stream.headers["x-sipp-deployment"] == "chat/good"
        kinds = [kind for kind, _ in events(stream)]
        assert "error" not in kinds and kinds[-1] == "done"
    embedded = requests.post(f"{gateway.url}/v1/embed", headers=auth(), timeout=30,
                             json={"model": "chat", "input": "hi"})
    assert embedded.status_code == 200 and embedded.json()["embedding"] == [0.5, 0.25]
    assert embedded.headers["x-sipp-deployment"] == "chat/good"
    assert broken.seen, "the broken deployment was never tried"
    metrics = requests.get(f"{gateway.management_url}/metrics", timeout=10).text
    assert 'sipp_gateway_deployment_served_total{target="chat",deployment="chat/good"} 7' \
        in metrics
    assert 'sipp_gateway_deployment_served_total{target="chat",deployment="chat/broken"} 0' \
        in metrics
    assert 'sipp_gateway_deployment_failures_total{target="chat",deployment="chat/refused"}' \
        in metrics


def test_fallbacks_in_order_skip_disabled_targets(
        upstreams: Callable[[], MockOpenAI], serve: Callable[..., RunningGateway],
        caplog: pytest.LogCaptureFixture) -> None:
    broken, spare, backup = upstreams(), upstreams(), upstreams()
    broken.reply = FAIL_500
    gateway = serve(config_with(
        {"name": "chat", "fallbacks": ["spare", "backup"], "retries": 0,
         "deployments": [upstream_target("only", broken.url)]},
        upstream_target("spare", spare.url), upstream_target("backup", backup.url)))
    gateway.server.state.disabled_targets.add("spare")
    caplog.set_level(logging.INFO, logger="sipp.gateway.server")
    response = chat(gateway, stream=True)
    assert response.status_code == 200
    assert response.headers["x-sipp-deployment"] == "backup"
    deadline = time.monotonic() + 5  # the access line is written once the response ended
    while not (access := [r for r in caplog.records if r.getMessage() == "request"]):
        assert time.monotonic() < deadline, "no access log line"
        time.sleep(0.02)
    assert [getattr(r, "deployment", None) for r in access] == ["backup"]
    assert [kind for kind, _ in events(response)] == ["token", "token", "done"]
    assert len(broken.seen) == 1 and not spare.seen and len(backup.seen) == 1
    # nothing left to try: the caller gets the last deployment's error
    gateway.server.state.disabled_targets.add("backup")
    failed = chat(gateway)
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "provider"
    metrics = requests.get(f"{gateway.management_url}/metrics", timeout=10).text
    assert 'sipp_gateway_fallbacks_total{target="chat",fallback="backup"} 1' in metrics


def test_a_cooled_down_deployment_is_probed_back(
        upstreams: Callable[[], MockOpenAI], serve: Callable[..., RunningGateway]) -> None:
    flaky, steady = upstreams(), upstreams()
    flaky.reply = FAIL_500
    gateway = serve(config_with({
        "name": "chat", "strategy": "round_robin", "retries": 1, "retry_backoff_seconds": 0,
        "cooldown_after_failures": 1, "cooldown_seconds": 3,
        "deployments": [upstream_target("flaky", flaky.url),
                        upstream_target("steady", steady.url)]}))
    served = [chat(gateway).headers["x-sipp-deployment"] for _ in range(4)]
    assert served == ["chat/steady"] * 4
    assert len(flaky.seen) == 1  # tried once, then cooling down
    routing = views.targets(gateway.server.state)[0]["routing"]
    flaky_view = routing["deployments"][0]
    assert flaky_view["health"] == "cooling_down" and flaky_view["cooldowns"] == 1
    assert 0 < flaky_view["cooldownRemainingSeconds"] <= 3
    flaky.reply = None  # repaired, but still cooling down
    assert {chat(gateway).headers["x-sipp-deployment"] for _ in range(3)} == {"chat/steady"}
    assert len(flaky.seen) == 1
    time.sleep(3.1)
    served = [chat(gateway).headers["x-sipp-deployment"] for _ in range(4)]
    assert "chat/flaky" in served and len(flaky.seen) >= 2
    routing = views.targets(gateway.server.state)[0]["routing"]
    assert routing["deployments"][0]["health"] == "healthy"


def test_least_busy_spreads_concurrent_requests(start_gateway: Callable[..., RunningGateway]
                                                ) -> None:
    local = {"type": "local", "model": "/models/replica.gguf"}
    gateway = start_gateway(config_with({
        "name": "chat", "strategy": "least_busy",
        "deployments": [{"name": "r1", **local}, {"name": "r2", **local}]}))
    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(lambda _: chat(gateway, text="slow"), range(32)))
    assert all(r.status_code == 200 for r in responses)
    counts = Counter(r.headers["x-sipp-deployment"] for r in responses)
    assert set(counts) == {"chat/r1", "chat/r2"}
    assert all(12 <= n <= 20 for n in counts.values()), counts  # 16 ± 25 %


# --------------------------------------------------------------------------- gateway targets
def test_gateway_target_forwards_streams_and_maps_errors(
        start_gateway: Callable[..., RunningGateway], script: Script,
        serve: Callable[..., RunningGateway]) -> None:
    replica = start_gateway()  # fake targets alpha and beta
    replica_requests = script.requests
    remote = {"type": "gateway", "base_url": replica.url, "token_env": "TOKEN_ALL"}
    front = serve(config_with({"name": "remote", "target": "alpha", **remote},
                              {"name": "missing", "target": "nope", **remote},
                              {"name": "limited", "target": "beta", **{
                                  **remote, "token_env": "TOKEN_LIMITED"}}))
    stream = chat(front, "remote", "hello", stream=True)
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert [(k, d.get("text")) for k, d in events(stream)] == [
        ("token", "Hel"), ("token", "lo"), ("usage", None), ("done", None)]
    plain = requests.post(f"{front.url}/v1/chat", timeout=30,
                          headers={**auth(), "x-request-id": "trace-42"},
                          json={"model": "remote", "messages": [
                              {"role": "user", "content": "hello"}]})
    assert plain.json()["text"] == "Hello" and plain.json()["model"] == "remote"
    # both hops carry the caller's request id (the replica echoes what the front sent)
    assert plain.headers["x-request-id"] == "trace-42"
    assert any(r.request_id == "trace-42" for r in replica_requests)
    for name, remote_name, text in (("remote", "alpha", "fail-early"),
                                    ("missing", "nope", "hello")):
        direct = chat(replica, remote_name, text)
        forwarded = chat(front, name, text)
        assert forwarded.status_code == direct.status_code
        assert forwarded.json()["error"]["code"] == direct.json()["error"]["code"]
    assert chat(front, "missing").status_code == 404
    refused = chat(front, "limited")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "authorization"
    replica.server.state.disabled_targets.add("alpha")
    disabled = chat(front, "remote")
    assert disabled.status_code == 503 and disabled.json()["error"]["code"] == "target_disabled"


def test_a_stream_whose_replica_dies_ends_in_an_error_event(
        tmp_path: Path, upstreams: Callable[[], MockOpenAI],
        serve: Callable[..., RunningGateway]) -> None:
    slow, backup = upstreams(), upstreams()
    slow.stall_seconds = 30  # the first token arrives, then nothing
    replica = GatewayProcess(tmp_path, config_with(upstream_target("chat", slow.url)),
                             {"ADMIN_PW": "pw", "TOKEN_ALL": TOKEN, "KEY_A": "sk-a"})
    try:
        front = serve(config_with(
            {"name": "chat", "retries": 2, "retry_backoff_seconds": 0,
             "fallbacks": ["backup"],
             "deployments": [{"name": "r1", "type": "gateway", "base_url": replica.url,
                              "target": "chat", "token_env": "TOKEN_ALL",
                              "readiness_url": replica.readiness_url}]},
            upstream_target("backup", backup.url)))
        response = requests.post(f"{front.url}/v1/chat", headers=auth(), stream=True,
                                 timeout=20, json={"model": "chat", "stream": True,
                                                   "messages": [{"role": "user",
                                                                 "content": "hi"}]})
        assert response.headers["x-sipp-deployment"] == "chat/r1"
        lines = response.iter_lines(decode_unicode=True)
        seen: list[str] = []
        for line in lines:
            seen.append(line)
            if line.startswith("data:") and '"He"' in line:
                break
        started = time.monotonic()
        replica.kill()
        seen.extend(lines)  # returns once the front ends the stream
        assert time.monotonic() - started < 15
        response.close()
    finally:
        replica.kill()
    assert "event: error" in seen, seen
    error = json.loads(seen[seen.index("event: error") + 1].removeprefix("data: "))
    assert error["error"]["code"]
    assert not backup.seen  # nothing is retried once a token reached the caller


def test_a_cooled_gateway_deployment_comes_back_when_its_readyz_does(
        start_gateway: Callable[..., RunningGateway],
        serve: Callable[..., RunningGateway]) -> None:
    a, b = start_gateway(), start_gateway()

    def replica(name: str, gateway: RunningGateway) -> dict[str, Any]:
        return {"name": name, "type": "gateway", "base_url": gateway.url, "target": "alpha",
                "token_env": "TOKEN_ALL", "readiness_url": f"{gateway.management_url}/readyz"}

    front = serve(config_with({
        "name": "chat", "strategy": "round_robin", "retries": 1, "retry_backoff_seconds": 0,
        "cooldown_after_failures": 1, "cooldown_seconds": 0.3,
        "deployments": [replica("a", a), replica("b", b)]}))
    a.server.state.disabled_targets.add("alpha")  # a answers 503 target_disabled ...
    a.server.state.targets.ready = False  # ... and its /readyz says not ready
    assert {chat(front).headers["x-sipp-deployment"] for _ in range(3)} == {"chat/b"}
    a.server.state.disabled_targets.clear()  # a could serve again, but /readyz says no
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert chat(front).headers["x-sipp-deployment"] == "chat/b"
        time.sleep(0.05)
    a.server.state.targets.ready = True
    served: set[str] = set()
    deadline = time.monotonic() + 10
    while "chat/a" not in served and time.monotonic() < deadline:
        served.add(chat(front).headers["x-sipp-deployment"])
        time.sleep(0.05)
    assert "chat/a" in served
