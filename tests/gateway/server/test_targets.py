"""Real endpoints behind the gateway: provider targets on a mock OpenAI upstream (mapping,
correlation headers, upstream errors as the caller sees them, through a gateway endpoint
too) and local targets on the tiny test model (metrics by ``stats`` level, relative model
paths)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sipp import GatewayDescriptor
from sipp.client import SippClient
from sipp.errors import RateLimitedError, TargetNotReadyError
from sipp.gateway.server.config import LocalTarget, parse_config
from sipp.gateway.server.targets import descriptor_for, starts_off_loop
from tests.gateway.server.conftest import BASE_CONFIG, ENV, TOKEN, RunningGateway, auth
from tests.gateway.server.upstream import MockOpenAI


@pytest.fixture
def upstream() -> Iterator[MockOpenAI]:
    server = MockOpenAI()
    yield server
    server.stop()


def _start(config: dict[str, object]) -> RunningGateway:
    return RunningGateway(config, ENV, SippClient())


def test_provider_target_through_mock_upstream(upstream: MockOpenAI) -> None:
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["targets"] = [{"name": "alpha", "type": "openai", "model": "up-model",
                       "api_key_env": "KEY_A", "base_url": upstream.url}]
    gw = _start(cfg)
    try:
        r = requests.post(gw.url + "/v1/chat", headers={**auth(), "x-request-id": "corr-7"},
                          json={"model": "alpha", "messages": [{"role": "user", "content": "hi"}]},
                          timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["text"] == "Hello" and r.json()["usage"]["total_tokens"] == 6
        path, headers, body = upstream.seen[-1]
        assert headers["Authorization"] == "Bearer sk-a"
        assert path == "/v1/chat/completions" and body["model"] == "up-model"
        assert headers["x-client-request-id"] == "corr-7"  # OpenAI's correlation header
        r = requests.post(gw.url + "/v1/query", headers=auth(), timeout=10,
                          json={"model": "alpha", "prompt": "hi", "stream": True})
        assert r.status_code == 200
        assert '"text":"He"' in r.text and "event: done" in r.text
        r = requests.post(gw.url + "/v1/embed", headers=auth(), timeout=10,
                          json={"model": "alpha", "input": "hi"})
        assert r.json()["embedding"] == [0.5, 0.25]
    finally:
        gw.stop()


def test_provider_upstream_auth_failure_is_an_error(upstream: MockOpenAI) -> None:
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["targets"] = [{"name": "alpha", "type": "openai", "model": "m",
                       "api_key_env": "KEY_B", "base_url": upstream.url}]
    gw = _start(cfg)
    try:
        r = requests.post(gw.url + "/v1/query", headers=auth(), timeout=10,
                          json={"model": "alpha", "prompt": "hi"})
        assert r.status_code >= 500 and r.json()["error"]["code"]
        assert "sk-b" not in r.text
    finally:
        gw.stop()


def test_local_target_generates(tiny_llama_path: Path) -> None:
    import sipp
    from sipp.errors import BackendError

    try:
        sipp.backend_info()
    except BackendError as exc:
        pytest.skip(f"no usable native backend: {exc.message.splitlines()[0]}")
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["targets"] = [{"name": "alpha", "type": "local", "model": str(tiny_llama_path),
                       "backend": "cpu", "stats": "basic"}]
    gw = _start(cfg)
    try:
        r = requests.post(gw.url + "/v1/query", headers=auth(), timeout=60,
                          json={"model": "alpha", "prompt": "hello", "max_tokens": 4})
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["output_tokens"] <= 4
        r = requests.post(gw.url + "/v1/query", headers=auth(), timeout=60,
                          json={"model": "alpha", "prompt": "hello", "max_tokens": 4,
                                "stream": True})
        assert r.status_code == 200 and "event: done" in r.text
        metrics = requests.get(gw.management_url + "/metrics", timeout=5).text
        assert 'sipp_gateway_output_tokens_total{target="alpha"}' in metrics
    finally:
        gw.stop()


def _compatible(upstream: MockOpenAI, **extra: object) -> dict[str, object]:
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["targets"] = [{"name": "alpha", "type": "openai_compatible", "model": "m",
                       "token_env": "KEY_A", "base_url": upstream.url, **extra}]
    return cfg


def test_openai_compatible_correlation_header_carries_the_request_id(
    upstream: MockOpenAI,
) -> None:
    gw = _start(_compatible(upstream, correlation_header="X-Correlation-Id"))
    try:
        r = requests.post(gw.url + "/v1/query", headers={**auth(), "x-request-id": "corr-9"},
                          json={"model": "alpha", "prompt": "hi"}, timeout=10)
        assert r.status_code == 200, r.text
        headers = upstream.seen[-1][1]
        assert headers["X-Correlation-Id"] == "corr-9"
        assert "x-client-request-id" not in {k.lower() for k in headers}
        # Without an incoming id the gateway's own id (echoed to the caller) is forwarded.
        r = requests.post(gw.url + "/v1/query", headers=auth(), timeout=10,
                          json={"model": "alpha", "prompt": "hi", "stream": True})
        assert r.status_code == 200
        assert upstream.seen[-1][1]["X-Correlation-Id"] == r.headers["x-request-id"]
        r = requests.post(gw.url + "/v1/embed", headers={**auth(), "x-request-id": "e-1"},
                          json={"model": "alpha", "input": "hi"}, timeout=10)
        assert r.status_code == 200
        assert upstream.seen[-1][1]["X-Correlation-Id"] == "e-1"
    finally:
        gw.stop()


def test_openai_compatible_without_correlation_header_sends_none(upstream: MockOpenAI) -> None:
    gw = _start(_compatible(upstream))
    try:
        r = requests.post(gw.url + "/v1/query", headers={**auth(), "x-request-id": "corr-9"},
                          json={"model": "alpha", "prompt": "hi"}, timeout=10)
        assert r.status_code == 200, r.text
        assert "corr-9" not in upstream.seen[-1][1].values()
    finally:
        gw.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_rate_limit_is_429_with_retry_after(upstream: MockOpenAI, stream: bool) -> None:
    upstream.reply = (429, {"error": {"message": "slow down", "type": "rate_limit_exceeded"}},
                      {"Retry-After": "7"})
    gw = _start(_compatible(upstream))
    try:
        r = requests.post(gw.url + "/v1/query", headers=auth(), timeout=10,
                          json={"model": "alpha", "prompt": "hi", "stream": stream})
        assert r.status_code == 429, r.text
        assert r.headers["retry-after"] == "7"
        assert r.json()["error"]["code"] == "rate_limited"
        assert "slow down" in r.json()["error"]["message"]
        # A gateway endpoint rebuilds it as RateLimitedError carrying retry_after.
        with SippClient() as client:
            ref = client.add("gw", GatewayDescriptor(
                "alpha", gw.url, authentication_kind="bearer", authentication_value=TOKEN))
            with pytest.raises(RateLimitedError) as info:
                client.query("hi", endpoint=ref, emit_tokens=stream).result(timeout=10)
        assert info.value.retry_after == 7.0
    finally:
        gw.stop()


@pytest.mark.parametrize("status", [401, 403, 500, 503])
def test_other_upstream_failures_are_target_failures(upstream: MockOpenAI, status: int) -> None:
    """An upstream 401/403 is the gateway's key being refused, not the caller's: 500."""
    upstream.reply = (status, {"error": {"message": "upstream says no"}}, {})
    gw = _start(_compatible(upstream))
    try:
        r = requests.post(gw.url + "/v1/query", headers=auth(), timeout=10,
                          json={"model": "alpha", "prompt": "hi"})
        assert r.status_code == 500, r.text
        assert r.json()["error"]["code"] == "provider"
        assert "www-authenticate" not in r.headers and "retry-after" not in r.headers
        assert "sk-a" not in r.text
    finally:
        gw.stop()


def test_disabled_target_round_trips_as_target_not_ready(upstream: MockOpenAI) -> None:
    gw = _start(_compatible(upstream))
    gw.server.state.disabled_targets.add("alpha")
    try:
        with SippClient() as client:
            ref = client.add("gw", GatewayDescriptor(
                "alpha", gw.url, authentication_kind="bearer", authentication_value=TOKEN))
            with pytest.raises(TargetNotReadyError, match="disabled") as info:
                client.query("hi", endpoint=ref).result(timeout=10)
        assert info.value.code == "target_disabled"
        assert upstream.seen == []
    finally:
        gw.stop()


def _local_backend() -> None:
    import sipp
    from sipp.errors import BackendError

    try:
        sipp.backend_info()
    except BackendError as exc:
        pytest.skip(f"no usable native backend: {exc.message.splitlines()[0]}")


def test_local_scheduler_metrics_follow_the_stats_level(tiny_llama_path: Path) -> None:
    _local_backend()
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["tokens"] = [{"env": "TOKEN_ALL", "caller": "all", "targets": []}]
    cfg["targets"] = [{"name": level, "type": "local", "model": str(tiny_llama_path),
                       "backend": "cpu", "stats": level} for level in ("off", "basic", "profile")]
    gw = _start(cfg)
    try:
        for level in ("off", "basic", "profile"):
            r = requests.post(gw.url + "/v1/query", headers=auth(), timeout=60,
                              json={"model": level, "prompt": "hello", "max_tokens": 2})
            assert r.status_code == 200, r.text
        text = requests.get(gw.management_url + "/metrics", timeout=5).text
    finally:
        gw.stop()
    local = [line for line in text.splitlines() if line.startswith("sipp_local_")]

    def names(target: str) -> set[str]:
        return {line.split("{")[0] for line in local if f'{{target="{target}"}}' in line}

    assert names("off") == set()
    basic, profile = names("basic"), names("profile")
    for metric in ("sipp_local_scheduler_admitted", "sipp_local_decode_calls",
                   "sipp_local_requests_running"):
        assert metric in basic and metric in profile, sorted(basic)
    assert not any(n.startswith("sipp_local_backend_") for n in basic)
    assert any(n.startswith("sipp_local_backend_") for n in profile), sorted(profile)
    admitted = [line for line in local
                if line.startswith('sipp_local_scheduler_admitted{target="basic"}')]
    assert admitted and float(admitted[0].split()[-1]) >= 1
    assert "# TYPE sipp_local_decode_calls gauge" in text


def test_relative_local_model_path_resolves_from_the_working_directory(
    tiny_llama_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _local_backend()
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["targets"] = [{"name": "alpha", "type": "local", "backend": "cpu",
                       "model": f"{tiny_llama_path.parent.name}/{tiny_llama_path.name}"}]
    parsed = parse_config(cfg)
    target = parsed.targets[0]
    assert isinstance(target, LocalTarget)
    monkeypatch.chdir(tiny_llama_path.parent.parent)
    descriptor = descriptor_for(target, None)
    assert Path(descriptor.model_path) == tiny_llama_path.resolve()
    gw = _start(cfg)
    try:
        r = requests.post(gw.url + "/v1/query", headers=auth(), timeout=60,
                          json={"model": "alpha", "prompt": "hello", "max_tokens": 2})
        assert r.status_code == 200, r.text
    finally:
        gw.stop()


def test_only_targets_whose_runs_start_with_cpu_work_start_off_the_loop() -> None:
    """Local models (and anything that may route to one) and PII policies start runs on a
    submission thread; plain provider and gateway targets start them inline."""
    remote = {"type": "openai", "model": "m", "api_key_env": "KEY_A",
              "base_url": "http://127.0.0.1:9/v1"}
    local = {"type": "local", "model": "/models/tiny.gguf"}
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["targets"] = [
        {"name": "alpha", **remote},
        {"name": "local", **local},
        {"name": "masked", **remote, "pii": {"mode": "mask"}},
        {"name": "unmasked", **remote, "pii": {"mode": "off"}},
        {"name": "peer", "type": "gateway", "base_url": "http://127.0.0.1:8/",
         "target": "x", "token_env": "KEY_A"},
        {"name": "routed", "deployments": [{"name": "a", **remote}, {"name": "b", **remote}]},
        {"name": "mixed", "deployments": [{"name": "a", **remote}, {"name": "b", **local}]},
        {"name": "falls-back", "deployments": [{"name": "a", **remote}],
         "fallbacks": ["local"]},
    ]
    parsed = parse_config(cfg)
    by_name = {t.name: t for t in parsed.targets}
    off_loop = {t.name: starts_off_loop(t, by_name) for t in parsed.targets}
    assert off_loop == {"alpha": False, "local": True, "masked": True, "unmasked": False,
                        "peer": False, "routed": False, "mixed": True, "falls-back": True}
