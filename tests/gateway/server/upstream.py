"""A mock OpenAI upstream on a loopback port (threaded stdlib HTTP server).

It answers with the OpenAI wire format (finite JSON and SSE) when the bearer key is
``sk-a`` (401 otherwise), or with ``reply`` when a test sets one; ``seen`` records every
request's path, headers and body."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: MockOpenAI

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.seen.append((self.path, dict(self.headers), body))
        if self.server.reply is not None:
            status, obj, headers = self.server.reply
            self._json(status, obj, headers)
            return
        if self.headers.get("authorization") != "Bearer sk-a":
            self._json(401, {"error": {"message": "bad key", "type": "authentication_error"}})
            return
        usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
        if self.path.endswith("/embeddings"):
            self._json(200, {"object": "list", "model": body["model"], "usage": usage,
                             "data": [{"object": "embedding", "index": 0,
                                       "embedding": [0.5, 0.25]}]})
            return
        chat = self.path.endswith("/chat/completions")
        if body.get("stream"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for piece in ("He", "llo"):
                choice = {"index": 0, "delta": {"content": piece}} if chat else \
                    {"index": 0, "text": piece}
                self._chunk({"id": "x", "model": body["model"], "choices": [
                    {**choice, "finish_reason": None}]})
                self.server.stall.wait(self.server.stall_seconds)
            end = {"index": 0, "delta": {}} if chat else {"index": 0, "text": ""}
            self._chunk({"id": "x", "model": body["model"],
                         "choices": [{**end, "finish_reason": "stop"}]})
            self._raw(b"data: [DONE]\n\n")
            self._raw(b"")
            return
        choice = ({"index": 0, "message": {"role": "assistant", "content": "Hello"}} if chat
                  else {"index": 0, "text": "Hello"})
        self._json(200, {"id": "up-1", "model": body["model"], "usage": usage,
                         "choices": [{**choice, "finish_reason": "stop"}]})

    def _chunk(self, obj: Any) -> None:
        self._raw(b"data: " + json.dumps(obj).encode() + b"\n\n")

    def _raw(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class MockOpenAI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, dict[str, str], Any]] = []
        # (status, JSON body, headers) to answer every request with, instead of the script.
        self.reply: tuple[int, Any, dict[str, str]] | None = None
        # seconds each streamed piece waits (ended early by setting ``stall``)
        self.stall_seconds = 0.0
        self.stall = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
