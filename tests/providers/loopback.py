"""Real HTTP servers on loopback ports for transport tests (stdlib ``http.server``).

A test passes a handler ``fn(exchange)``; it runs on the server's thread for every request
and answers with JSON, raw bytes or a chunked / close-delimited stream written piece by
piece. Writes to a client that has gone away set ``server.disconnected``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Exchange:
    """One request seen by the server and the means to answer it."""

    def __init__(self, handler: BaseHTTPRequestHandler, server: LoopbackServer) -> None:
        self._h = handler
        self._server = server
        self.method = handler.command
        self.peer = handler.client_address  # (host, port): which connection it came on
        self.path = handler.path
        self.headers = {k.lower(): v for k, v in handler.headers.items()}
        length = int(handler.headers.get("Content-Length") or 0)
        self.body = handler.rfile.read(length) if length else b""
        self._chunked = False

    def json(self) -> Any:
        return json.loads(self.body)

    def send_bytes(
        self, status: int, body: bytes, content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self._h.send_response(status)
        self._h.send_header("Content-Type", content_type)
        self._h.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self._h.send_header(key, value)
        self._h.end_headers()
        self._h.wfile.write(body)
        self._h.wfile.flush()

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), headers=headers)

    def start_stream(
        self, status: int = 200, content_type: str = "text/event-stream",
        *, chunked: bool = True, headers: dict[str, str] | None = None,
    ) -> None:
        self._chunked = chunked
        self._h.send_response(status)
        self._h.send_header("Content-Type", content_type)
        if chunked:
            self._h.send_header("Transfer-Encoding", "chunked")
        else:
            self._h.send_header("Connection", "close")
            self._h.close_connection = True
        for key, value in (headers or {}).items():
            self._h.send_header(key, value)
        self._h.end_headers()
        self._h.wfile.flush()

    def write(self, data: bytes) -> bool:
        """Send one piece now; False (and ``server.disconnected`` set) if the peer is gone."""
        try:
            if self._chunked:
                self._h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            else:
                self._h.wfile.write(data)
            self._h.wfile.flush()
            return True
        except OSError:
            self._server.disconnected.set()
            self._h.close_connection = True
            return False

    def end_stream(self) -> None:
        if self._chunked:
            self.write(b"")  # the zero-length terminating chunk

    def reset(self) -> None:
        """Drop the connection abruptly (RST), mid-response."""
        sock = self._h.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self._h.close_connection = True
        sock.close()


class LoopbackServer:
    """``with LoopbackServer(handler) as server: server.url``; ``server.requests`` records
    every exchange."""

    def __init__(self, handler: Callable[[Exchange], None]) -> None:
        self.requests: list[Exchange] = []
        self.disconnected = threading.Event()
        self.errors: list[BaseException] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                exchange = Exchange(self, outer)
                outer.requests.append(exchange)
                try:
                    handler(exchange)
                except OSError:
                    outer.disconnected.set()
                    self.close_connection = True
                except BaseException as exc:  # surfaced by the test through server.errors
                    outer.errors.append(exc)
                    self.close_connection = True

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


class BlackholeListener:
    """A listening socket whose accept queue is full, so new connects hang (connect timeout)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0)
        self._fillers: list[socket.socket] = []
        for _ in range(3):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            try:
                filler.connect(self._sock.getsockname())
            except BlockingIOError:
                pass
            self._fillers.append(filler)

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()
        return f"http://{host}:{port}"

    def close(self) -> None:
        for filler in self._fillers:
            filler.close()
        self._sock.close()
