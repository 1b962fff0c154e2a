"""Minimal raw-ASGI plumbing: one :class:`Exchange` per HTTP request."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sipp.errors import RequestTooLargeError
from sipp.gateway.server.request_ids import new_request_id


class ClientGone(Exception):
    """The client disconnected (mid-body, or while its run was going); answered 499."""

__all__ = ["ASGIApp", "ClientGone", "Exchange", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON = b"application/json"


class Exchange:
    """The request side (method, path, headers, body) and the response side of one call.

    ``extra_headers`` (request id echo, CORS) are added to every response start, and so
    are those ``late_headers`` returns then (what is only known once the response starts,
    such as the deployment that served it).
    """

    __slots__ = ("_disconnect", "_receive", "_send", "budget_target", "caller",
                 "charged_output", "extra_headers", "headers", "late_headers", "method", "path",
                 "request_id", "scope", "started", "status", "streaming", "usage")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers: list[tuple[bytes, bytes]] = scope["headers"]
        self.started = time.perf_counter()
        self.status = 0
        self.usage: Any = None  # the run's usage mapping, once known (for accounting)
        # token budgets: who is charged, for which target, and the output tokens charged so
        # far (as they stream, so a client that leaves early still pays for them)
        self.caller: str | None = None
        self.budget_target: str | None = None
        self.charged_output = 0
        self.streaming = False
        rid = self.header(b"x-request-id")
        if rid is None or not rid or len(rid) > 128 or not all(0x21 <= b <= 0x7E for b in rid):
            self.request_id = new_request_id()
        else:
            self.request_id = rid.decode("ascii")
        self.extra_headers: list[tuple[bytes, bytes]] = [
            (b"x-request-id", self.request_id.encode("ascii"))
        ]
        self._disconnect: asyncio.Event | None = None
        self.late_headers: Callable[[], list[tuple[bytes, bytes]]] | None = None

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def peer(self) -> str | None:
        client = self.scope.get("client")
        return str(client[0]) if client else None

    async def read_body(self, limit: int) -> bytes:
        """The whole body; :class:`RequestTooLargeError` as soon as it passes ``limit``;
        :class:`ClientGone` if the client goes away before the body ends (a truncated body
        is never parsed, so it never reaches a target)."""
        length = self.header(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise RequestTooLargeError(
                f"request body is {int(length)} bytes; max_request_bytes is {limit}")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._mark_disconnected()
                raise ClientGone("the client went away before its request body ended")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestTooLargeError(
                    f"request body exceeds max_request_bytes ({limit} bytes)")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _mark_disconnected(self) -> None:
        if self._disconnect is None:
            self._disconnect = asyncio.Event()
        self._disconnect.set()

    async def wait_disconnect(self) -> None:
        """Return once the client has gone away (call after the body was read)."""
        if self._disconnect is not None and self._disconnect.is_set():
            return
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._mark_disconnected()
                return

    async def start(self, status: int, content_type: bytes,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        all_headers = [(b"content-type", content_type), *self.extra_headers]
        if self.late_headers is not None:
            all_headers.extend(self.late_headers())
        if headers:
            all_headers.extend(headers)
        await self._send({"type": "http.response.start", "status": status,
                          "headers": all_headers})

    async def body(self, data: bytes, *, more: bool = False) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def respond(self, status: int, data: bytes, content_type: bytes = _JSON,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
        extra = [(b"content-length", str(len(data)).encode())]
        if headers:
            extra.extend(headers)
        await self.start(status, content_type, extra)
        await self.body(data)

    async def json(self, status: int, obj: Any,
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
        data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()
        await self.respond(status, data, _JSON, headers)

    async def text(self, status: int, text: str) -> None:
        await self.respond(status, text.encode(), b"text/plain; charset=utf-8")
