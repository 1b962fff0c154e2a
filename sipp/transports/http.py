"""HTTP on ``aiohttp``, shared by gateway and provider endpoints.

Every exchange runs as a task on one process-wide background event loop (:func:`io_loop`,
a daemon thread; uvloop when installed), so ``start_*`` never blocks, sync callers need no
event loop of their own, and async callers (the gateway server included) are woken through
their run handle. One :class:`HttpClient` per endpoint owns a pooled ``aiohttp`` session on
that loop (keep-alive, no redirects, no retries, no cookies). Any thread can
:meth:`HttpCall.abort` an exchange at any moment: its task is cancelled and its connection
closed, so the peer sees the connection go away. The same mechanism enforces the total
deadline of finite calls.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import threading
import time
import urllib.parse
import urllib.request
import weakref
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any, Literal

import aiohttp

from sipp._version import __version__
from sipp.errors import InvalidRequestError

__all__ = [
    "MAX_ERROR_BODY_BYTES",
    "MAX_RESPONSE_BYTES",
    "AbortReason",
    "CallFailure",
    "HttpCall",
    "HttpClient",
    "Response",
    "encode_json",
    "io_loop",
    "retry_after_seconds",
]

MAX_ERROR_BODY_BYTES = 1 << 20
MAX_RESPONSE_BYTES = 64 << 20
_CLOSE_WAIT_S = 5.0
_CONNECT_GRACE_S = 0.02
# What a stream's body may still hold after its final event, and how long it may take to
# end, for its connection to go back to the pool (see HttpCall.drain)
_DRAIN_BYTES = 64 << 10
_DRAIN_S = 1.0

AbortReason = Literal["cancelled", "deadline", "closed"]
Response = aiohttp.ClientResponse

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None
_loop_pid = 0


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def io_loop() -> asyncio.AbstractEventLoop:
    """The background event loop that runs every HTTP exchange (started on first use, and
    again in a forked child)."""
    global _loop, _loop_thread, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid():
            loop = _new_loop()
            thread = threading.Thread(target=loop.run_forever, name="sipp-http", daemon=True)
            thread.start()
            _loop, _loop_thread, _loop_pid = loop, thread, os.getpid()
        return _loop


def _on_io_thread() -> bool:
    return threading.current_thread() is _loop_thread


class CallFailure(Exception):
    """Why an HTTP exchange failed, before an endpoint turns it into its own error type.

    ``kind`` is ``"timeout"``, ``"transport"``, ``"cancelled"`` or ``"closed"``.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class HttpCall:
    """One POST running as a task on the I/O loop; any thread may :meth:`abort` it."""

    def __init__(self, client: HttpClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._response: Response | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._grace = False
        self.aborted: AbortReason | None = None

    # ------------------------------------------------------------ I/O loop side
    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        stream: bool,
    ) -> Response:
        """Send the request and return once the response headers arrived.

        Finite calls get a total deadline (``timeouts.request``) that keeps running while
        the body is read. Streams get it until their response headers arrive (an upstream
        trickling its head one byte at a time would otherwise reset ``stream_read`` forever),
        then only the per-read ``stream_read`` limit.
        """
        timeouts = self._client.timeouts
        self._timer = asyncio.get_running_loop().call_later(timeouts.request, self._deadline)
        self._raise_if_aborted()
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=timeouts.connect,
            sock_read=timeouts.stream_read if stream else timeouts.request,
        )
        try:
            session = await self._client._session()
            response = await session.post(
                url, data=body, headers=dict(headers), timeout=timeout, allow_redirects=False,
                proxy=self._client._proxy_for(url),
            )
        except BaseException as exc:
            raise self._failure(exc) from exc
        self._response = response
        self._raise_if_aborted()
        if stream and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return response

    async def chunks(self, response: Response) -> AsyncIterator[bytes]:
        """The body as it arrives (each chunk as soon as the socket delivers it)."""
        content = response.content
        while True:
            try:
                data = await content.readany()
            except BaseException as exc:
                raise self._failure(exc) from exc
            if not data:
                self._raise_if_aborted()
                return
            yield data

    async def read_body(self, response: Response, limit: int) -> tuple[bytes, bool]:
        """Up to ``limit`` bytes of the body, and whether it was cut short."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks(response):
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                return b"".join(parts)[:limit], True
        return b"".join(parts), False

    async def drain(self, response: Response) -> None:
        """After a stream's final event: read the rest of the body so that :meth:`finish`
        returns the connection to the pool rather than closing it.

        The rest is normally only the end of the chunked encoding, written just after the
        final event and often read in a later chunk; without this, a stream whose end had
        not arrived yet cost its connection and the next request a new one. At most
        ``_DRAIN_BYTES`` within ``_DRAIN_S`` seconds; past either (or on any failure) the
        connection is closed as before."""
        content = response.content
        if self.aborted is not None or content.at_eof():
            return
        try:
            await asyncio.wait_for(_read_rest(content, _DRAIN_BYTES), _DRAIN_S)
        except Exception:  # too slow, too long or broken: finish() closes the connection
            pass

    def finish(self) -> None:
        """Stop the deadline timer and release (or, if unread or aborted, close) the
        connection."""
        if self._timer is not None:
            self._timer.cancel()
        response = self._response
        if response is not None:
            if self.aborted is None and response.content.at_eof():
                response.release()
            else:
                response.close()
        self._client._forget(self)

    # ------------------------------------------------------------ any thread
    def abort(self, reason: AbortReason) -> None:
        """Stop the exchange now: cancel its task and close its connection."""
        with self._lock:
            if self.aborted is not None:
                return
            self.aborted = reason
        if _on_io_thread():
            self._cancel_task()
        else:
            try:
                io_loop().call_soon_threadsafe(self._cancel_task)
            except RuntimeError:  # the loop is gone (interpreter exit): nothing to stop
                pass

    # ------------------------------------------------------------ internals
    def _deadline(self) -> None:
        """The finite call's total deadline. Before the response arrives, a connect timeout
        due at the same moment wins: the deadline waits a short grace first."""
        timeouts = self._client.timeouts
        if self._response is None and not self._grace and timeouts.connect <= timeouts.request:
            self._grace = True
            self._timer = asyncio.get_running_loop().call_later(_CONNECT_GRACE_S, self._deadline)
            return
        self.abort("deadline")

    def _run(self, work: Coroutine[Any, Any, None]) -> None:
        """Start ``work`` as this call's task (on the I/O loop)."""
        self._task = asyncio.get_running_loop().create_task(work)
        if self.aborted is not None:
            self._cancel_task()

    def _cancel_task(self) -> None:
        if self._response is not None:
            self._response.close()
        task = self._task
        if task is not None and not task.done():
            task.cancel()

    def _raise_if_aborted(self) -> None:
        if self.aborted is not None:
            raise self._failure(None)

    def _failure(self, exc: BaseException | None) -> CallFailure:
        if isinstance(exc, CallFailure):
            return exc
        timeouts = self._client.timeouts
        if self.aborted == "deadline":
            return CallFailure("timeout", f"request timed out after {timeouts.request:g} s")
        if self.aborted == "cancelled":
            return CallFailure("cancelled", "request cancelled")
        if self.aborted == "closed":
            return CallFailure("closed", "endpoint closed while the request was in flight")
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return CallFailure("timeout", f"connect timed out after {timeouts.connect:g} s")
        if isinstance(exc, TimeoutError):
            return CallFailure("timeout", "read timed out waiting for the server")
        return CallFailure("transport", f"connection failed: {_describe(exc)}")


async def _read_rest(content: aiohttp.StreamReader, limit: int) -> None:
    """Read ``content`` to its end, or stop once more than ``limit`` bytes came."""
    size = 0
    while not content.at_eof():
        data = await content.readany()
        if not data:
            return
        size += len(data)
        if size > limit:
            return


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "connection closed"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return f"connection broken ({type(exc).__name__}: {exc})"
    if isinstance(exc, asyncio.CancelledError):
        return "exchange cancelled"
    return f"{type(exc).__name__}: {exc}"


def _close_session(
    holder: list[aiohttp.ClientSession | None], lock: threading.Lock, wait: bool
) -> None:
    """Close the session in ``holder`` on the I/O loop (module-level for weakref.finalize)."""
    with lock:
        session = holder[0]
        holder[0] = None
    if session is None or session.closed:
        return
    loop = io_loop()
    if _on_io_thread():
        loop.create_task(session.close())
        return
    try:
        future = asyncio.run_coroutine_threadsafe(session.close(), loop)
    except RuntimeError:  # loop closed at interpreter exit
        return
    if wait:
        try:
            future.result(_CLOSE_WAIT_S)
        except Exception:  # closing is best effort; the sockets die with the process
            pass


class HttpClient:
    """The pooled session and deadlines of one endpoint; tracks live calls to abort them on
    :meth:`close`."""

    def __init__(self, timeouts: Any) -> None:
        self.timeouts = timeouts
        self._lock = threading.Lock()
        self._calls: set[HttpCall] = set()
        self._closed = False
        self._holder: list[aiohttp.ClientSession | None] = [None]
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._finalizer = weakref.finalize(self, _close_session, self._holder, self._lock, True)

    def new_call(self) -> HttpCall:
        call = HttpCall(self)
        with self._lock:
            if self._closed:
                raise CallFailure("closed", "endpoint is closed")
            self._calls.add(call)
        return call

    def start(self, call: HttpCall, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (the call's exchange) on the I/O loop; returns at once."""
        try:
            io_loop().call_soon_threadsafe(call._run, work)
        except BaseException:
            work.close()
            raise

    def close(self) -> None:
        """Abort live calls (reason ``closed``) and close the pooled connections."""
        with self._lock:
            self._closed = True
            calls = list(self._calls)
        for call in calls:
            call.abort("closed")
        self._finalizer()

    async def _session(self) -> aiohttp.ClientSession:
        """The session, created on first use (on the I/O loop, where it lives)."""
        with self._lock:
            if self._closed:
                raise CallFailure("closed", "endpoint is closed")
            session = self._holder[0]
        if session is None:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=60),
                headers={"User-Agent": f"sipppy/{__version__}", "Accept-Encoding": "identity"},
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
            with self._lock:
                self._holder[0] = session
        return session

    def _proxy_for(self, url: str) -> str | None:
        """The ``*_proxy`` environment proxy for ``url`` (honouring ``no_proxy``), looked up
        once per scheme and host: aiohttp's own ``trust_env`` re-reads the environment and
        ``~/.netrc`` in a worker thread on every request."""
        split = urllib.parse.urlsplit(url)
        key = (split.scheme, split.netloc)
        try:
            return self._proxies[key]
        except KeyError:
            pass
        proxies = urllib.request.getproxies_environment()
        proxy = proxies.get(split.scheme)
        if proxy is not None and urllib.request.proxy_bypass(split.netloc):
            proxy = None
        self._proxies[key] = proxy
        return proxy

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


def encode_json(body: dict[str, Any]) -> bytes:
    """A request body as compact JSON; a value JSON cannot carry is the caller's error."""
    try:
        return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"request body is not JSON-serialisable: {exc}") from exc
