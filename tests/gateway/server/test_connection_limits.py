"""Connection-level limits of the public listener: head size and header count caps (431),
a deadline for each request head (408, also the idle limit), a deadline per body chunk, and
a client that leaves mid-body never reaching a target (red-team findings)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
import requests

from sipp.gateway.server import protocol
from tests.gateway.server.conftest import TOKEN, RunningGateway, Script, auth


def _connect(gw: RunningGateway) -> socket.socket:
    host, port = gw.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _answer(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


HEAD = (b"POST /v1/query HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + TOKEN.encode()
        + b"\r\nContent-Type: application/json\r\n")  # fmt: skip


def test_huge_header_is_431_and_the_loop_stays_responsive(gateway: RunningGateway) -> None:
    with _connect(gateway) as sock:
        sock.sendall(HEAD + b"X-Big: ")
        started = time.monotonic()
        try:
            for _ in range(64):  # up to 4 MiB; the gateway stops reading at 64 KiB
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert time.monotonic() - started < 5
    assert requests.get(gateway.management_url + "/healthz", timeout=2).status_code == 200


def test_too_many_header_lines_is_431(gateway: RunningGateway, script: Script) -> None:
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(protocol.MAX_HEADERS + 20))
    body = b'{"model":"alpha","prompt":"hello"}'
    with _connect(gateway) as sock:
        sock.sendall(HEAD + lines + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert script.requests == []


def test_normal_requests_still_pass(gateway: RunningGateway) -> None:
    headers = {**auth(), **{f"X-H{i}": "v" * 100 for i in range(50)}}
    r = requests.post(gateway.url + "/v1/query", json={"model": "alpha", "prompt": "hello"},
                      headers=headers, timeout=10)  # fmt: skip
    assert r.status_code == 200


@pytest.fixture
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "HEAD_TIMEOUT", 0.5)
    monkeypatch.setattr(protocol, "BODY_TIMEOUT", 0.5)


def test_idle_and_trickling_connections_are_closed(
    short_deadlines: None, start_gateway: Callable[..., RunningGateway]
) -> None:
    gw = start_gateway()
    with _connect(gw) as idle:
        started = time.monotonic()
        assert _answer(idle).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 3
    with _connect(gw) as trickle:
        started = time.monotonic()
        try:
            for byte in HEAD:
                trickle.sendall(bytes([byte]))
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert _answer(trickle).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 4


def test_stalled_or_abandoned_bodies_never_reach_a_target(
    short_deadlines: None, start_gateway: Callable[..., RunningGateway], script: Script
) -> None:
    gw = start_gateway()
    body = b'{"model":"alpha","prompt":"hello world"}'
    with _connect(gw) as stalled:
        stalled.sendall(HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        started = time.monotonic()
        assert _answer(stalled) == b""  # closed without an answer: nobody to answer
        assert time.monotonic() - started < 3
    with _connect(gw) as leaving:
        leaving.sendall(HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body[:-5])
        time.sleep(0.1)
    time.sleep(0.5)
    assert script.requests == []  # a truncated body was parsed and submitted before
    metrics = requests.get(gw.management_url + "/metrics", timeout=5).text
    assert 'status="499"' in metrics, metrics[:2000]
    assert requests.post(gw.url + "/v1/query", json={"model": "alpha", "prompt": "hello"},
                         headers=auth(), timeout=10).status_code == 200  # fmt: skip
