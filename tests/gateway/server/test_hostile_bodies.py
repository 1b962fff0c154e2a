"""Bodies that gave 500 ``internal`` (or escaped the request handler) now give 400 naming the
problem, and never reach a target (red-team findings)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from tests.gateway.server.conftest import RunningGateway, Script, auth

DEEP = b"[" * 100_000 + b"]" * 100_000
CASES = [
    ("/v1/query", DEEP, "nested deeper than"),
    ("/v1/chat/completions", b'{"model":"alpha","x":' + DEEP + b"}", "nested deeper than"),
    ("/v1/query", b'{"model":"alpha","prompt":"hi","max_tokens":' + b"9" * 5000 + b"}",
     "not accepted JSON"),
    ("/v1/completions", b'{"model":"alpha","prompt":"hi","max_tokens":' + b"9" * 5000 + b"}",
     "not accepted JSON"),
    ("/v1/query", b'{"model":"alpha","prompt":"a\\ud800"}', "lone UTF-16 surrogate"),
    ("/v1/chat", b'{"model":"alpha","messages":[{"role":"user","content":"\\udfff"}]}',
     "lone UTF-16 surrogate"),
    ("/v1/embed", b'{"model":"alpha","input":"\\ud800"}', "lone UTF-16 surrogate"),
    ("/v1/embeddings", b'{"model":"alpha","input":["ok","\\ud800"]}', "lone UTF-16 surrogate"),
    ("/v1/chat/completions", b'{"model":"\\ud800","messages":[{"role":"user","content":"hi"}]}',
     "lone UTF-16 surrogate"),
    ("/v1/query", b'{"model":"\\ud800","prompt":"hi"}', "lone UTF-16 surrogate"),
    ("/v1/chat/completions",
     b'{"model":"alpha","messages":[{"role":"user","content":"hi"}],"temperature":NaN}',
     "NaN is not a JSON number"),
]  # fmt: skip


@pytest.fixture
def big(start_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return start_gateway(max_request_bytes=1_000_000)


@pytest.mark.parametrize(("route", "body", "words"), CASES, ids=lambda v: str(v)[:40])
def test_hostile_body_is_a_400(
    big: RunningGateway, script: Script, route: str, body: bytes, words: str
) -> None:
    r = requests.post(big.url + route, data=body, timeout=30,
                      headers={**auth(), "content-type": "application/json"})  # fmt: skip
    assert r.status_code == 400, r.text[:300]
    assert words in r.json()["error"]["message"]
    assert script.requests == []


def test_null_max_completion_tokens_keeps_max_tokens(
    gateway: RunningGateway, script: Script
) -> None:
    body = {"model": "alpha", "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 7, "max_completion_tokens": None}  # fmt: skip
    r = requests.post(gateway.url + "/v1/chat/completions", json=body, headers=auth(), timeout=30)
    assert r.status_code == 200, r.text
    assert script.requests[-1].options.max_tokens == 7


@pytest.mark.parametrize("route", ["/v1/query", "/v1/completions"])
def test_stop_lists_are_capped(big: RunningGateway, script: Script, route: str) -> None:
    # 60,000 stop strings took 15 s per request and slowed every neighbour 8-13x
    body = {"model": "alpha", "prompt": "hello", "stop": ["x"] * 60_000}
    r = requests.post(big.url + route, json=body, headers=auth(), timeout=30)
    assert r.status_code == 400
    assert "60000 strings; at most 32" in r.json()["error"]["message"]
    assert script.requests == []


def test_non_object_stream_options_is_a_400(gateway: RunningGateway, script: Script) -> None:
    body = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": 5}  # fmt: skip
    r = requests.post(gateway.url + "/v1/chat/completions", json=body, headers=auth(), timeout=30)
    assert r.status_code == 400, r.text
    assert "stream_options" in r.json()["error"]["message"]
    assert script.requests == []
