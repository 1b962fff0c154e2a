"""2,000 requests at concurrency 64, mixed targets, streams and client cancels: every
request gets a well-formed answer and the gateway's memory stays flat."""

from __future__ import annotations

import gc
import json
import random
import socket
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.gateway.server.conftest import RunningGateway

pytestmark = pytest.mark.slow


def _one(port: int, index: int) -> str:
    rng = random.Random(index)
    target = rng.choice(["alpha", "beta"])
    kind = rng.choice(["json", "json", "stream", "stream", "cancel", "embed", "bad"])
    route, body = "/v1/query", {"model": target, "prompt": "hello"}
    if kind == "stream":
        body["stream"] = True
    elif kind == "cancel":
        body = {"model": target, "prompt": "block", "stream": True}
    elif kind == "embed":
        route, body = "/v1/embed", {"model": target, "input": "abc"}
    elif kind == "bad":
        body = {"model": target}
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(f"POST {route} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-all\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                     + data)
        seen = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            seen += chunk
            if kind == "cancel" and b"event: token" in seen:
                return "cancelled"
    head, _, payload = seen.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if kind == "bad":
        assert status == 400 and b'"code":"invalid_request"' in payload
    elif kind == "stream":
        assert status == 200 and b"event: done" in payload, seen
    else:
        assert status == 200 and b'"model":"' + target.encode() in payload, seen
    return kind


def test_load_mixed_requests_and_cancels(start_gateway: Callable[..., RunningGateway]) -> None:
    gw = start_gateway()
    port = gw.server.public_port
    with ThreadPoolExecutor(64) as pool:
        list(pool.map(lambda i: _one(port, i), range(300)))  # warm up
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kinds = list(pool.map(lambda i: _one(port, i), range(300, 2300)))
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    assert len(kinds) == 2000 and kinds.count("cancelled") > 100
    assert after - before < 2_000_000, f"gateway memory grew by {after - before} bytes"
    state = gw.server.state
    import time

    deadline = time.monotonic() + 10
    while state.metrics.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.metrics.in_flight == 0 and state.admission.active == 0
    assert sum(state.metrics.requests.values()) == 2300
