"""Real endpoints behind the gateway: a provider target on a mock OpenAI upstream, and a
local target on the tiny test model."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sipp.client import SippClient
from tests.gateway.server.conftest import BASE_CONFIG, ENV, RunningGateway, auth
from tests.gateway.server.upstream import MockOpenAI


@pytest.fixture
def upstream() -> Iterator[MockOpenAI]:
    server = MockOpenAI()
    yield server
    server.stop()


def _start(config: dict[str, object]) -> RunningGateway:
    return RunningGateway(config, ENV, SippClient())


def test_provider_target_through_mock_upstream(upstream: MockOpenAI) -> None:
    pytest.importorskip("sipp.endpoints.provider", reason="provider endpoints not built yet")
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
    pytest.importorskip("sipp.endpoints.provider", reason="provider endpoints not built yet")
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
    pytest.importorskip("sipp.endpoints.local", reason="local endpoints not built yet")
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
