"""Every status of the public pipeline, JSON shapes, SSE framing, disconnects."""

from __future__ import annotations

import copy
import json
import socket
import time
from collections.abc import Callable

import requests

from tests.gateway.server.conftest import (
    BASE_CONFIG,
    LIMITED_TOKEN,
    RunningGateway,
    Script,
    auth,
)


def post(gw: RunningGateway, route: str, body: object, headers: dict[str, str] | None = None,
         **kw: object) -> requests.Response:
    return requests.post(gw.url + route, json=body, headers=headers if headers is not None
                         else auth(), timeout=10, **kw)  # type: ignore[arg-type]


def sse_events(response: requests.Response) -> list[tuple[str, dict[str, object]]]:
    events = []
    for frame in response.text.split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_query_chat_embed_return_profile_json(gateway: RunningGateway) -> None:
    r = post(gateway, "/v1/query", {"model": "alpha", "prompt": "hello", "max_tokens": 8},
             headers={**auth(), "x-request-id": "abc-1"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "abc-1"
    assert r.json() == {"id": "abc-1", "model": "alpha", "text": "Hello", "finish_reason": "stop",
                        "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}
    r = post(gateway, "/v1/chat", {"model": "beta", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "long hello"}]})
    assert r.status_code == 200 and r.json()["finish_reason"] == "length"
    r = post(gateway, "/v1/embed", {"model": "alpha", "input": "abcd"})
    assert r.status_code == 200
    assert r.json()["embedding"] == [0.25, -0.5, 4.0] and r.json()["model"] == "alpha"


def test_status_codes_and_error_bodies(gateway: RunningGateway) -> None:
    cases = [
        ({}, {"model": "alpha", "prompt": "hello"}, 401, "authentication"),
        ({"Authorization": "Basic abc"}, {"model": "alpha", "prompt": "x"}, 401,
         "authentication"),
        (auth("wrong"), {"model": "alpha", "prompt": "x"}, 401, "authentication"),
        (auth(), {"model": "alpha"}, 400, "invalid_request"),
        (auth(), {"model": "alpha", "prompt": "x", "max_tokens": -1}, 400, "invalid_request"),
        (auth(), {"model": "alpha", "prompt": "x", "bogus": 1}, 400, "invalid_request"),
        (auth(), {"model": "nope", "prompt": "x"}, 404, "target_not_found"),
        (auth(LIMITED_TOKEN), {"model": "beta", "prompt": "x"}, 403, "authorization"),
        (auth(), {"model": "alpha", "prompt": "fail-early"}, 500, "engine"),
    ]
    for headers, body, status, code in cases:
        r = post(gateway, "/v1/query", body, headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["message"]
    r = requests.post(gateway.url + "/v1/query", data=b"{not json", headers=auth(), timeout=5)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = requests.post(gateway.url + "/v1/query", headers={}, timeout=5)
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert requests.get(gateway.url + "/v1/query", headers=auth(), timeout=5).status_code == 405
    assert requests.post(gateway.url + "/nope", headers=auth(), timeout=5).status_code == 404


def test_limited_token_reaches_its_allowed_target(gateway: RunningGateway) -> None:
    r = post(gateway, "/v1/query", {"model": "alpha", "prompt": "hello"}, auth(LIMITED_TOKEN))
    assert r.status_code == 200


def test_body_over_limit_is_413_json(gateway: RunningGateway) -> None:
    r = post(gateway, "/v1/query", {"model": "alpha", "prompt": "x" * 5000})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    # chunked upload without content-length is cut off as well
    r = requests.post(gateway.url + "/v1/query", data=iter([b"{" + b" " * 3000, b" " * 3000]),
                      headers=auth(), timeout=5)
    assert r.status_code == 413


def test_admission_limit_gives_429(start_gateway: Callable[..., RunningGateway]) -> None:
    import concurrent.futures

    gw = start_gateway(max_concurrent_requests=1)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(post, gw, "/v1/query", {"model": "alpha", "prompt": "slow"})
        time.sleep(0.15)
        fast = post(gw, "/v1/query", {"model": "alpha", "prompt": "hello"})
        assert fast.status_code == 429 and fast.json()["error"]["code"] == "admission"
        assert fast.headers["retry-after"] == "1"
        assert slow.result().status_code == 200
    assert post(gw, "/v1/query", {"model": "alpha", "prompt": "hello"}).status_code == 200


def test_stream_frames(gateway: RunningGateway) -> None:
    r = post(gateway, "/v1/query", {"model": "alpha", "prompt": "hello", "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    assert r.text.startswith('event: token\ndata: {"text":"Hel","sequence":0}\n\n')
    assert sse_events(r) == [
        ("token", {"text": "Hel", "sequence": 0}),
        ("token", {"text": "lo", "sequence": 1}),
        ("usage", {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}),
        ("done", {"finish_reason": "stop"}),
    ]


def test_stream_error_before_first_token_is_a_status(gateway: RunningGateway) -> None:
    r = post(gateway, "/v1/chat", {"model": "alpha", "stream": True,
                                   "messages": [{"role": "user", "content": "fail-early"}]})
    assert r.status_code == 500 and r.json()["error"]["code"] == "engine"


def test_stream_error_mid_stream_is_an_error_event(gateway: RunningGateway) -> None:
    r = post(gateway, "/v1/query", {"model": "alpha", "prompt": "fail-mid", "stream": True})
    assert r.status_code == 200
    events = sse_events(r)
    assert events[0] == ("token", {"text": "Hel", "sequence": 0})
    assert events[-1] == ("error", {"error": {"code": "engine",
                                              "message": "engine exploded mid-stream"}})


def _raw_request(gw: RunningGateway, body: dict[str, object]) -> socket.socket:
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", gw.server.public_port), timeout=5)
    sock.sendall(b"POST /v1/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-all\r\n"
                 b"Content-Type: application/json\r\nContent-Length: "
                 + str(len(data)).encode() + b"\r\n\r\n" + data)
    return sock


def test_client_disconnect_cancels_the_run(gateway: RunningGateway, script: Script) -> None:
    for stream in (True, False):
        script.cancels.clear()
        sock = _raw_request(gateway, {"model": "alpha", "prompt": "block", "stream": stream})
        if stream:
            seen = b""
            while b"event: token" not in seen:
                chunk = sock.recv(4096)
                assert chunk, seen
                seen += chunk
        else:
            time.sleep(0.2)
        sock.close()
        deadline = time.monotonic() + 5
        while not script.cancels and time.monotonic() < deadline:
            time.sleep(0.02)
        assert script.cancels == ["client_disconnected"]
    time.sleep(0.1)
    metrics = requests.get(gateway.management_url + "/metrics", timeout=5).text
    assert "sipp_gateway_client_disconnects_total 2" in metrics
    assert "sipp_gateway_in_flight_requests 0" in metrics


def test_cors_only_for_allowed_origins(start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway(allowed_origins=["https://app.example.com"])
    pre = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    r = requests.options(gw.url + "/v1/query", headers=pre, timeout=5)
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in r.headers["access-control-allow-headers"]
    r = requests.options(gw.url + "/v1/query", timeout=5,
                         headers={**pre, "Origin": "https://evil.example"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    r = post(gw, "/v1/query", {"model": "alpha", "prompt": "hello"},
             {**auth(), "Origin": "https://app.example.com"})
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"


def test_vary_origin_on_every_answer_when_cors_is_on(
        start_gateway: Callable[..., RunningGateway]) -> None:
    # a disallowed (or absent) Origin gets an answer without CORS headers: without Vary a
    # shared cache could hand that answer to an allowed origin, or the reverse
    gw = start_gateway(allowed_origins=["https://app.example.com"])
    for origin in ("https://evil.example", None, "https://app.example.com"):
        headers = {**auth(), **({"Origin": origin} if origin else {})}
        r = post(gw, "/v1/query", {"model": "alpha", "prompt": "hello"}, headers)
        assert r.status_code == 200
        assert r.headers.get("vary") == "Origin", (origin, dict(r.headers))


def test_no_cors_headers_when_disabled(gateway: RunningGateway) -> None:
    r = post(gateway, "/v1/query", {"model": "alpha", "prompt": "hello"},
             {**auth(), "Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in r.headers
    pre = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    assert requests.options(gateway.url + "/v1/query", headers=pre, timeout=5).status_code == 405


def test_stream_batches_that_arrive_together(start_gateway: Callable[..., RunningGateway]
                                             ) -> None:
    """Batches that reach the gateway together go out in one write: every chunk is still
    there in order, and each batch's tokens are charged (and counted once)."""
    config = copy.deepcopy(BASE_CONFIG)
    config["security"]["token_limit"] = {"callers": {"all": 6}, "targets": {}}
    gw = start_gateway(config, clock=lambda: 0.0)  # no refill
    r = post(gw, "/v1/chat/completions", {"model": "alpha", "stream": True,
                                          "messages": [{"role": "user", "content": "burst"}]})
    assert r.status_code == 200
    chunks = [json.loads(line[6:]) for line in r.text.splitlines()
              if line.startswith("data: {")]
    assert [c["choices"][0]["delta"].get("content") for c in chunks[:6]] == list("abcdef")
    assert chunks[6]["choices"][0]["finish_reason"] == "stop"
    assert r.text.endswith("data: [DONE]\n\n")
    profile = post(gw, "/v1/query", {"model": "alpha", "prompt": "burst", "stream": True})
    assert profile.status_code == 429  # the caller's 6 tokens a minute are spent
    metrics = requests.get(gw.management_url + "/metrics", timeout=5).text
    assert 'sipp_gateway_output_tokens_total{target="alpha"} 6' in metrics
