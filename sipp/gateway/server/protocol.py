"""The gateway's HTTP/1.1 connection protocol: uvicorn's httptools protocol with limits.

uvicorn with httptools puts no bound on a request head and no deadline on reading one:
a single 128 MiB header cost 21 s of CPU on the shared event loop (quadratic buffering),
and idle, header-trickling or slow-body connections stayed open for minutes. Here:

* a request head (request line + headers) over :data:`MAX_HEAD_BYTES` or with more than
  :data:`MAX_HEADERS` header lines is answered ``431`` and the connection closed, before
  the parser buffers more;
* a new connection, and each next request on a kept-alive one, must deliver its whole head
  within :data:`HEAD_TIMEOUT` seconds (``408`` and close otherwise; this is also the idle
  limit of a connection that never sends a request);
* while a request body is being read, each chunk must arrive within :data:`BODY_TIMEOUT`
  seconds; a stalled upload is treated as a client that went away (the request never
  reaches a target);
* :data:`MAX_CONNECTIONS` connections per listener (uvicorn's ``limit_concurrency``: a
  request beyond it gets ``503``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

__all__ = [
    "BODY_TIMEOUT",
    "HEAD_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "LimitedHttpToolsProtocol",
]

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
MAX_CONNECTIONS = 2048
_END_OF_HEAD = b"\r\n\r\n"
_TIMER_SLACK = 0.001  # a timer this close to its deadline counts as on time


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head size/count caps and per-phase read deadlines.

    Every request passes through here, so the common case costs little: a chunk that
    cannot take the head past its cap is counted whole, header lines are counted once the
    head is complete (the byte cap already bounds how many can arrive), and the deadlines
    share one timer per connection that rarely moves (see :meth:`_arm`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._tail = b""  # last bytes of the previous chunk (an end of head split in two)
        self._refused = False
        # one timer per connection (see _arm): when it fires, _on_due runs if _due passed
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._on_due: Callable[[], None] | None = None

    # ------------------------------------------------------------------ deadlines
    def _arm(self, seconds: float, handler: Callable[[], None]) -> None:
        """Run ``handler`` ``seconds`` from now unless re-armed or disarmed before.

        Each request re-arms several times. Rather than cancel and schedule a timer each
        time, the deadline is only written down; the connection's one timer is moved only
        when the new deadline comes before it, and it is always set no later than the
        shortest deadline from now, so the next arm on a busy connection never moves it. A
        timer that fires before the deadline in force schedules itself again."""
        now = self.loop.time()
        due = now + seconds
        self._due = due
        self._on_due = handler
        timer = self._timer
        if timer is not None:
            if timer.when() <= due:
                return
            timer.cancel()
        self._timer = self.loop.call_at(min(due, now + min(HEAD_TIMEOUT, BODY_TIMEOUT)),
                                        self._fire)

    def _disarm(self) -> None:
        self._on_due = None

    def _fire(self) -> None:
        self._timer = None
        handler = self._on_due
        if handler is None:
            return
        now = self.loop.time()
        if now + _TIMER_SLACK < self._due:
            self._timer = self.loop.call_at(
                min(self._due, now + min(HEAD_TIMEOUT, BODY_TIMEOUT)), self._fire)
            return
        self._on_due = None
        handler()

    def _head_timed_out(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a response is being produced: the request head arrived long ago
        self._refuse(408, "request head not received in time")

    def _body_timed_out(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.response_complete:
            cycle.disconnected = True  # the app reads this as a client that went away
            cycle.message_event.set()
            self.transport.close()

    # ------------------------------------------------------------------ protocol
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(HEAD_TIMEOUT, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            size = len(data)
            if self._head_bytes + size <= MAX_HEAD_BYTES:
                # even if all of it is head the cap holds (bytes past the head's end are
                # counted too, and forgotten when the head completes)
                self._head_bytes += size
                self._tail = data[-3:] if size >= 3 else (self._tail + data)[-3:]
            else:
                seen = self._tail + data
                end = seen.find(_END_OF_HEAD)
                self._head_bytes += size if end < 0 else max(0, end + 4 - len(self._tail))
                self._tail = seen[-3:]
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._refuse(431, f"request head over {MAX_HEAD_BYTES} bytes")
                    return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._tail = b""
        if len(self.headers) > MAX_HEADERS:
            self._refuse(431, f"more than {MAX_HEADERS} header lines")
            return
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.more_body:
            self._arm(BODY_TIMEOUT, self._body_timed_out)
        else:
            self._disarm()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        super().on_body(body)
        self._arm(BODY_TIMEOUT, self._body_timed_out)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._in_head = True  # the next bytes on this connection start the next request
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            # uvicorn's keep-alive timer covers the idle wait; ours the next head
            self._arm(HEAD_TIMEOUT + self.timeout_keep_alive, self._head_timed_out)

    # ------------------------------------------------------------------ refusals
    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with ``message`` and close; the request never reaches the app."""
        self._refused = True
        self._disarm()
        if self.transport.is_closing():
            return
        body = message.encode()
        self.transport.write(b"".join([
            STATUS_LINE[status],
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: ", str(len(body)).encode(), b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]))  # fmt: skip
        self.transport.close()
