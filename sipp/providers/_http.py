"""HTTP transport shared by gateway and provider endpoints.

One :class:`HttpClient` per endpoint owns a ``requests.Session`` (thread-safe pooled
connections, no redirects, no retries). Every run gets an :class:`HttpCall` executed on its
own worker thread; another thread can :meth:`HttpCall.abort` it at any moment, which shuts
the socket down so a blocked read returns at once and the peer sees the connection close.
The same mechanism enforces the total deadline of finite calls.
"""

from __future__ import annotations

import email.utils
import http.client
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from sipp._version import __version__
from sipp.errors import CancelledError
from sipp.runs import RunSink

__all__ = [
    "MAX_ERROR_BODY_BYTES",
    "MAX_RESPONSE_BYTES",
    "AbortReason",
    "CallFailure",
    "HttpCall",
    "HttpClient",
    "RunDriver",
    "retry_after_seconds",
]

MAX_ERROR_BODY_BYTES = 1 << 20
MAX_RESPONSE_BYTES = 64 << 20
_CHUNK = 65536

AbortReason = Literal["cancelled", "deadline", "closed"]

_tls = threading.local()


class _TrackedConnectionMixin:
    """Hands each connection to the HttpCall running on this thread, so it can be aborted."""

    sock: socket.socket | None

    def request(self, *args: Any, **kwargs: Any) -> None:
        call: HttpCall | None = getattr(_tls, "call", None)
        if call is not None:
            call._attach(self)
        super().request(*args, **kwargs)  # type: ignore[misc]
        if call is not None and call.aborted is not None:
            call._shutdown()


class _TrackedHTTPConnection(_TrackedConnectionMixin, HTTPConnection):
    pass


class _TrackedHTTPSConnection(_TrackedConnectionMixin, HTTPSConnection):
    pass


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class _TrackedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _TrackedHTTPPool,
            "https": _TrackedHTTPSPool,
        }


class CallFailure(Exception):
    """Why an HTTP exchange failed, before an endpoint turns it into its own error type.

    ``kind`` is ``"timeout"``, ``"transport"``, ``"cancelled"`` or ``"closed"``.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class HttpCall:
    """One POST whose connection another thread can abort."""

    def __init__(self, client: HttpClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._conn: _TrackedConnectionMixin | None = None
        self._response: requests.Response | None = None
        self._timer: threading.Timer | None = None
        self.aborted: AbortReason | None = None

    # ------------------------------------------------------------ worker side
    def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        stream: bool,
    ) -> requests.Response:
        """Send the request and return once the response headers arrived.

        Finite calls get a total deadline (``timeouts.request``) that keeps running while
        the body is read; streams get none, only the per-read ``stream_read`` limit.
        """
        timeouts = self._client.timeouts
        read_limit = timeouts.stream_read if stream else timeouts.request
        if not stream:
            self._timer = threading.Timer(timeouts.request, self.abort, args=("deadline",))
            self._timer.daemon = True
            self._timer.start()
        _tls.call = self
        try:
            self._raise_if_aborted()
            response = self._client.session.post(
                url,
                data=body,
                headers=dict(headers),
                timeout=(timeouts.connect, read_limit),
                stream=True,
                allow_redirects=False,
            )
        except Exception as exc:
            raise self._failure(exc) from exc
        finally:
            _tls.call = None
        with self._lock:
            self._response = response
        if self.aborted is not None:
            response.close()
            raise self._failure(None)
        return response

    def chunks(self, response: requests.Response) -> Iterator[bytes]:
        """The body as it arrives (each chunk as soon as the socket delivers it)."""
        raw: urllib3.BaseHTTPResponse = response.raw
        while True:
            try:
                data = raw.read1(_CHUNK)
            except Exception as exc:
                raise self._failure(exc) from exc
            if not data:
                if self.aborted is not None:
                    raise self._failure(None)
                return
            yield data

    def read_body(self, response: requests.Response, limit: int) -> tuple[bytes, bool]:
        """Up to ``limit`` bytes of the body, and whether it was cut short."""
        parts: list[bytes] = []
        size = 0
        for chunk in self.chunks(response):
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                return b"".join(parts)[:limit], True
        return b"".join(parts), False

    def finish(self) -> None:
        """Stop the deadline timer and release the connection."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            response = self._response
        if response is not None:
            response.close()
        self._client._forget(self)

    # ------------------------------------------------------------ any thread
    def abort(self, reason: AbortReason) -> None:
        """Stop the exchange now: shut the socket so blocked reads return at once."""
        with self._lock:
            if self.aborted is not None:
                return
            self.aborted = reason
        self._shutdown()

    # ------------------------------------------------------------ internals
    def _attach(self, conn: _TrackedConnectionMixin) -> None:
        with self._lock:
            self._conn = conn
        self._raise_if_aborted()

    def _shutdown(self) -> None:
        with self._lock:
            conn = self._conn
        sock = getattr(conn, "sock", None) if conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _raise_if_aborted(self) -> None:
        if self.aborted is not None:
            raise self._failure(None)

    def _failure(self, exc: BaseException | None) -> CallFailure:
        if isinstance(exc, CallFailure):
            return exc
        timeouts = self._client.timeouts
        if isinstance(exc, requests.ConnectTimeout):
            return CallFailure("timeout", f"connect timed out after {timeouts.connect:g} s")
        if self.aborted == "deadline":
            return CallFailure("timeout", f"request timed out after {timeouts.request:g} s")
        if self.aborted == "cancelled":
            return CallFailure("cancelled", "request cancelled")
        if self.aborted == "closed":
            return CallFailure("closed", "endpoint closed while the request was in flight")
        if isinstance(exc, requests.ReadTimeout | urllib3.exceptions.ReadTimeoutError) or (
            isinstance(exc, requests.ConnectionError)
            and isinstance(exc.args[0] if exc.args else None, urllib3.exceptions.ReadTimeoutError)
        ):
            return CallFailure("timeout", "read timed out waiting for the server")
        if isinstance(exc, TimeoutError | socket.timeout):
            return CallFailure("timeout", "read timed out waiting for the server")
        detail = _describe(exc)
        return CallFailure("transport", f"connection failed: {detail}")


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "connection closed"
    if isinstance(exc, urllib3.exceptions.ProtocolError | http.client.HTTPException):
        return f"connection broken ({type(exc).__name__}: {exc})"
    return f"{type(exc).__name__}: {exc}"


class HttpClient:
    """The pooled session and deadlines of one endpoint; tracks live calls to abort them on
    :meth:`close`."""

    def __init__(self, timeouts: Any) -> None:
        self.timeouts = timeouts
        self.session = requests.Session()
        adapter = _TrackedAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(
            {"User-Agent": f"sipppy/{__version__}", "Accept-Encoding": "identity"}
        )
        self._lock = threading.Lock()
        self._calls: set[HttpCall] = set()
        self._closed = False

    def new_call(self) -> HttpCall:
        call = HttpCall(self)
        with self._lock:
            if self._closed:
                raise CallFailure("closed", "endpoint is closed")
            self._calls.add(call)
        return call

    def spawn(self, work: Callable[[], None], name: str) -> None:
        """Run ``work`` on a new daemon thread (one per run; ``start_*`` never blocks)."""
        threading.Thread(target=work, name=name, daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            calls = list(self._calls)
        for call in calls:
            call.abort("closed")
        self.session.close()

    def _forget(self, call: HttpCall) -> None:
        with self._lock:
            self._calls.discard(call)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms`` (milliseconds) or ``Retry-After`` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value / 1000
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class RunDriver:
    """Serialises a worker's deliveries with ``cancel()`` for one run.

    A cancel completes a text run at once with ``finish_reason="cancelled"`` and the text
    delivered so far (an embedding run fails with ``CancelledError``), then aborts the call;
    whatever the worker learns afterwards is dropped.
    """

    def __init__(self, sink: RunSink, call: HttpCall, *, text: bool) -> None:
        self.sink = sink
        self.call = call
        self._text = text
        self._lock = threading.Lock()
        self._parts: list[str] = []
        self._done = False
        sink.on_cancel(self._cancel)

    @property
    def text(self) -> str:
        with self._lock:
            return "".join(self._parts)

    def token(self, text: str, token_count: int = 1) -> bool:
        """Record and deliver one batch; False once the run is finished."""
        with self._lock:
            if self._done:
                return False
            self._parts.append(text)
            self.sink.push(text, token_count)
            return True

    def complete(self, payload: dict[str, Any]) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self.sink.complete(payload)

    def fail(self, error: BaseException) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self.sink.fail(error)

    def _cancel(self, reason: str) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            text = "".join(self._parts)
        self.call.abort("cancelled")
        if self._text:
            self.sink.complete(
                {"text": text, "finish_reason": "cancelled", "usage": None, "local_stats": None}
            )
        else:
            self.sink.fail(CancelledError(f"request cancelled ({reason})"))

