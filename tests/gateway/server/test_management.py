"""Management listener: index, health, readiness before/after load, metrics, drain."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable

import requests

from tests.gateway.server.conftest import RunningGateway, Script, auth


def test_readiness_is_503_until_targets_load(start_gateway: Callable[..., RunningGateway],
                                             script: Script) -> None:
    script.load_gate.clear()
    gw = start_gateway(wait_ready=False)
    r = requests.get(gw.management_url + "/readyz", timeout=5)
    assert r.status_code == 503 and "alpha=loading" in r.text
    assert requests.get(gw.management_url + "/healthz", timeout=5).text == "ok"
    r = requests.post(gw.url + "/v1/query", json={"model": "alpha", "prompt": "hello"},
                      headers=auth(), timeout=5)
    assert r.status_code == 503 and r.json()["error"]["code"] == "target_not_ready"
    script.load_gate.set()
    deadline = time.monotonic() + 5
    while requests.get(gw.management_url + "/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert requests.get(gw.management_url + "/readyz", timeout=5).text == "ready"


def test_index_and_unknown_routes(gateway: RunningGateway) -> None:
    index = requests.get(gateway.management_url + "/", timeout=5).json()
    assert index["capabilities"] == ["query", "chat", "embed"]
    assert [t["name"] for t in index["targets"]] == ["alpha", "beta"]
    assert "tok-all" not in str(index) and "sk-a" not in str(index)
    assert requests.get(gateway.management_url + "/nope", timeout=5).status_code == 404
    assert requests.post(gateway.management_url + "/healthz", timeout=5).status_code == 405
    # management routes are not served on the public listener and vice versa
    assert requests.get(gateway.url + "/healthz", timeout=5).status_code == 404
    assert requests.post(gateway.management_url + "/v1/query", timeout=5).status_code == 404


def test_metrics_text(gateway: RunningGateway) -> None:
    body = {"model": "alpha", "prompt": "hello"}
    requests.post(gateway.url + "/v1/query", json=body, headers=auth(), timeout=5)
    requests.post(gateway.url + "/v1/query", json={**body, "stream": True}, headers=auth(),
                  timeout=5)
    requests.post(gateway.url + "/v1/chat", json=body, headers=auth(), timeout=5)  # 400
    requests.post(gateway.url + "/v1/embed", json=body, headers={}, timeout=5)  # 401
    r = requests.get(gateway.management_url + "/metrics", timeout=5)
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    for line in (
        'sipp_gateway_requests_total{operation="query"} 2',
        'sipp_gateway_requests_total{operation="chat"} 1',
        'sipp_gateway_errors_total{operation="chat"} 1',
        'sipp_gateway_errors_total{operation="embed"} 1',
        'sipp_gateway_responses_total{operation="embed",status="401"} 1',
        'sipp_gateway_rejected_total{reason="authentication"} 1',
        'sipp_gateway_input_tokens_total{target="alpha"} 6',
        'sipp_gateway_output_tokens_total{target="alpha"} 4',
        'sipp_gateway_output_tokens_total{target="beta"} 0',
        'sipp_gateway_request_duration_seconds_count{operation="query"} 2',
        'sipp_gateway_time_to_first_token_seconds_count{operation="query"} 1',
        "sipp_gateway_in_flight_requests 0",
        "# TYPE sipp_gateway_request_duration_seconds histogram",
    ):
        assert line in text, line


def test_shutdown_drains_in_flight_requests(start_gateway: Callable[..., RunningGateway]
                                            ) -> None:
    gw = start_gateway()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(requests.post, gw.url + "/v1/query",
                           json={"model": "alpha", "prompt": "slow"}, headers=auth(), timeout=5)
        time.sleep(0.15)
        assert gw.stop() == 0
        assert slow.result().status_code == 200
