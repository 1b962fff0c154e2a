"""Hostile upstreams behind provider and gateway targets: an upstream that never answers,
trickles, sends garbage or non-UTF-8, an SSE event over the size limit, closes mid-event,
answers 200 with an error body or redirects. Each time the caller gets a Sipp error within
the configured deadline (never a hang or a foreign exception), the connection is closed,
and the next request to the same endpoint succeeds."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from sipp import ChatMessage, SippClient
from sipp.descriptors import GatewayDescriptor, ProviderDescriptor, TimeoutPolicy
from sipp.errors import SippError

DEADLINE = 1.0  # every TimeoutPolicy field
SLACK = 3.0  # scheduling on a loaded CI machine

OPENAI_OK = json.dumps({
    "id": "c1", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}).encode()  # fmt: skip
PROFILE_OK = json.dumps({"id": "r1", "model": "t", "text": "fine", "finish_reason": "stop",
                         "usage": {"input_tokens": 1, "output_tokens": 1,
                                   "total_tokens": 2}}).encode()  # fmt: skip


def _http(status: str, ctype: bytes, body: bytes = b"", length: bool = True) -> bytes:
    head = f"HTTP/1.1 {status}\r\n".encode() + b"content-type: " + ctype + b"\r\n"
    if length:
        head += b"content-length: %d\r\n" % len(body)
    return head + b"connection: close\r\n\r\n" + body


class Hostile:
    """A loopback HTTP server whose next answers follow ``self.mode``."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.closed_by_peer: list[float] = []  # when the client closed each connection
        self.sent_all: list[bool] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn, self.mode), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            body += conn.recv(65536)
        return head

    def _handle(self, conn: socket.socket, mode: str) -> None:
        with conn:
            head = self._read_request(conn)
            gateway = b"/v1/query" in head or b"/v1/chat " in head
            stream = b"text/event-stream" in head
            try:
                self._answer(conn, mode, gateway, stream)
                self.sent_all.append(True)
            except OSError:
                self.sent_all.append(False)
            conn.settimeout(10)
            try:
                while conn.recv(65536):
                    pass
                self.closed_by_peer.append(time.monotonic())
            except OSError:
                self.closed_by_peer.append(time.monotonic())

    def _answer(self, conn: socket.socket, mode: str, gateway: bool, stream: bool) -> None:
        sse = b"text/event-stream"
        if mode == "ok":
            conn.sendall(_http("200 OK", b"application/json", PROFILE_OK if gateway else OPENAI_OK))
        elif mode == "silent":
            time.sleep(DEADLINE + SLACK + 2)
        elif mode == "trickle":
            for byte in _http("200 OK", b"application/json", OPENAI_OK):
                conn.sendall(bytes([byte]))
                time.sleep(0.5)
        elif mode == "garbage":
            conn.sendall(b"\xff\xfe\x00 this is not HTTP\r\n\r\n\x89PNG")
        elif mode == "non_utf8":
            conn.sendall(_http("200 OK", sse, length=False) + b"data: \xff\xfe\xfd\n\n")
        elif mode == "non_utf8_json":
            conn.sendall(_http("200 OK", b"application/json", b'{"id": "\xff\xfe"}'))
        elif mode == "huge_event":
            conn.sendall(_http("200 OK", sse, length=False) + b"data: ")
            for _ in range(64):  # 16 MiB in one event, past the 1 MiB event limit
                conn.sendall(b"x" * (256 * 1024))
        elif mode == "close_mid_event":
            conn.sendall(_http("200 OK", sse, length=False) + b'data: {"choices": [{"del')
        elif mode == "error_body":
            conn.sendall(_http("200 OK", b"application/json",
                               b'{"error": {"message": "upstream exploded", "type": "x"}}'))
        elif mode == "redirect":
            conn.sendall(b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/elsewhere\r\n"
                         b"content-length: 0\r\nconnection: close\r\n\r\n")


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    server = Hostile()
    yield server
    server.close()


MODES = ["silent", "trickle", "garbage", "non_utf8", "non_utf8_json", "huge_event",
         "close_mid_event", "error_body", "redirect"]  # fmt: skip
TIMEOUT = TimeoutPolicy(connect=DEADLINE, request=DEADLINE, stream_read=DEADLINE)


def _provider(hostile: Hostile) -> ProviderDescriptor:
    return ProviderDescriptor("openai_compatible", "m", api_key="k",
                              base_url=f"http://127.0.0.1:{hostile.port}/v1", timeout=TIMEOUT)


def _gateway(hostile: Hostile) -> GatewayDescriptor:
    return GatewayDescriptor("t", f"http://127.0.0.1:{hostile.port}", timeout=TIMEOUT)


@pytest.mark.parametrize("kind", ["provider", "gateway"])
@pytest.mark.parametrize("stream", [False, True], ids=["finite", "stream"])
@pytest.mark.parametrize("mode", MODES)
def test_hostile_upstream_gives_a_sipp_error_in_time(
    hostile: Hostile, kind: str, stream: bool, mode: str
) -> None:
    with SippClient() as client:
        ref = client.add("up", _provider(hostile) if kind == "provider" else _gateway(hostile))
        hostile.mode = mode
        started = time.monotonic()
        with pytest.raises(SippError) as info:
            run = client.chat([ChatMessage("user", "hi")], endpoint=ref, emit_tokens=stream)
            if stream:
                for _ in run:
                    pass
            run.result(DEADLINE + SLACK + 5)
        elapsed = time.monotonic() - started
        assert str(info.value)
        assert elapsed < DEADLINE + SLACK, (mode, elapsed, info.value)
        hostile.mode = "ok"
        # the hostile connection is closed by the client (nothing is kept half-read)
        deadline = time.monotonic() + DEADLINE + SLACK
        while not hostile.closed_by_peer and time.monotonic() < deadline:
            time.sleep(0.02)
        if mode != "silent":  # the silent server holds its side until it gives up
            assert hostile.closed_by_peer, mode
        if mode == "huge_event" and stream:
            assert hostile.sent_all[:1] == [False]  # reading stopped at the event limit
        answer = client.chat([ChatMessage("user", "hi")], endpoint=ref).result(10)
        assert answer["text"] == "fine"
