"""Run handles: the consumer side (``SippTextRun``, ``SippEmbeddingRun``) and the producer
side (:class:`RunSink`, implementing :class:`sipp.requests.RunSink`) that engines and
transports feed from their own threads.

A run is thread-safe. Sync callers block on a condition; asyncio callers are woken through
``loop.call_soon_threadsafe`` (never by polling), so ``await run`` and
``async for batch in run.atokens()`` never block the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any, Generic, TypeVar, cast

from sipp.errors import CancelledError
from sipp.types import (
    EndpointRef,
    SippEmbeddingResponse,
    SippTextResponse,
    TokenBatch,
)

__all__ = ["RunSink", "SippEmbeddingRun", "SippTextRun", "SippTokenIterator"]

R = TypeVar("R")

_PENDING, _DONE, _FAILED = 0, 1, 2


class RunSink:
    """The producer handle of one run.

    Producers call :meth:`push` for each token batch, then exactly one of :meth:`complete`
    or :meth:`fail`; later calls are ignored. :meth:`on_cancel` registers the callback that
    :meth:`SippTextRun.cancel` invokes (at most once, with the reason).
    """

    __slots__ = (
        "_async_waiters",
        "_batches",
        "_callbacks",
        "_cancel_reason",
        "_canceller",
        "_cond",
        "_endpoint",
        "_error",
        "_payload",
        "_request_id",
        "_state",
        "_tokens_emitted",
        "wants_tokens",
    )

    def __init__(self, endpoint: EndpointRef, *, wants_tokens: bool, request_id: str = "") -> None:
        self._endpoint = endpoint
        self.wants_tokens = wants_tokens
        self._request_id = request_id
        self._cond = threading.Condition(threading.Lock())
        self._state = _PENDING
        self._payload: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._batches: list[TokenBatch] = []
        self._tokens_emitted = 0
        self._canceller: Callable[[str], None] | None = None
        self._cancel_reason: str | None = None
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._callbacks: list[Callable[[], None]] = []

    # ----------------------------------------------------------------- producer API
    @property
    def endpoint(self) -> EndpointRef:
        return self._endpoint

    @property
    def cancel_reason(self) -> str | None:
        """The reason passed to ``cancel()``, or None while not cancelled."""
        return self._cancel_reason

    @property
    def finished(self) -> bool:
        return self._state != _PENDING

    def push(
        self, text: str, token_count: int, tool_calls: tuple[dict[str, Any], ...] = ()
    ) -> None:
        """Deliver one token batch (dropped unless the run streams tokens); ``tool_calls``
        are tool-call deltas that follow ``text``."""
        if not self.wants_tokens or (not text and token_count == 0 and not tool_calls):
            return
        with self._cond:
            if self._state != _PENDING:
                return
            batch = TokenBatch(text, token_count, self._tokens_emitted, self._request_id,
                               tuple(tool_calls))
            self._tokens_emitted += token_count
            self._batches.append(batch)
            self._cond.notify_all()
            waiters = self._take_async_waiters()
        _wake(waiters)

    def complete(self, payload: dict[str, Any]) -> None:
        """Finish successfully; ``payload`` is the response without its ``endpoint`` key."""
        self._finish(_DONE, payload, None)

    def fail(self, error: BaseException) -> None:
        """Finish with an error, raised by ``result()`` and by token iteration."""
        self._finish(_FAILED, None, error)

    def on_cancel(self, canceller: Callable[[str], None]) -> None:
        """Register how to cancel the work; runs at once if cancel() already happened."""
        with self._cond:
            self._canceller = canceller
            reason = self._cancel_reason if self._state == _PENDING else None
        if reason is not None:
            canceller(reason)

    # ----------------------------------------------------------------- internals
    def _take_async_waiters(self) -> list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]:
        waiters = self._async_waiters
        self._async_waiters = []
        return waiters

    def _finish(
        self, state: int, payload: dict[str, Any] | None, error: BaseException | None
    ) -> None:
        with self._cond:
            if self._state != _PENDING:
                return
            if payload is not None:
                payload = {"endpoint": self._endpoint.to_dict(), **payload}
            self._payload = payload
            self._error = error
            self._state = state
            self._canceller = None
            self._cond.notify_all()
            waiters = self._take_async_waiters()
            callbacks = self._callbacks
            self._callbacks = []
        _wake(waiters)
        for callback in callbacks:
            callback()

    def _request_cancel(self, reason: str) -> bool:
        with self._cond:
            if self._state != _PENDING or self._cancel_reason is not None:
                return False
            self._cancel_reason = reason
            canceller = self._canceller
        if canceller is not None:
            canceller(reason)
        return True

    def _wait(self, timeout: float | None) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._state != _PENDING, timeout):
                raise TimeoutError(f"run did not finish within {timeout} s")

    def _outcome(self) -> dict[str, Any]:
        if self._state == _FAILED:
            assert self._error is not None
            raise self._error
        assert self._payload is not None
        return self._payload

    def _async_wait(self, predicate: Callable[[], bool]) -> asyncio.Future[None] | None:
        """Return a future resolved when ``predicate`` may have changed, or None if true now."""
        loop = asyncio.get_running_loop()
        with self._cond:
            if predicate():
                return None
            future: asyncio.Future[None] = loop.create_future()
            self._async_waiters.append((loop, future))
            return future

    def _add_done_callback(self, callback: Callable[[], None]) -> None:
        with self._cond:
            if self._state == _PENDING:
                self._callbacks.append(callback)
                return
        callback()


def _set_if_pending(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
    for loop, future in waiters:
        try:
            loop.call_soon_threadsafe(_set_if_pending, future)
        except RuntimeError:  # loop closed: nobody is waiting any more
            pass


class SippTokenIterator(Iterator[TokenBatch]):
    """Blocking iterator over a run's token batches; ends when the run finishes.

    Every iterator sees every batch from the start. If the run failed, the error is raised
    after the last batch.
    """

    def __init__(self, sink: RunSink) -> None:
        self._sink = sink
        self._index = 0

    def __iter__(self) -> SippTokenIterator:
        return self

    def __next__(self) -> TokenBatch:
        sink = self._sink
        with sink._cond:
            sink._cond.wait_for(
                lambda: self._index < len(sink._batches) or sink._state != _PENDING
            )
            if self._index < len(sink._batches):
                batch = sink._batches[self._index]
                self._index += 1
                return batch
            state, error = sink._state, sink._error
        if state == _FAILED and error is not None and not isinstance(error, CancelledError):
            raise error
        raise StopIteration


class _BaseRun(Generic[R]):
    """Shared behaviour of text and embedding runs."""

    def __init__(self, sink: RunSink) -> None:
        self._sink = sink

    @property
    def endpoint(self) -> EndpointRef:
        return self._sink.endpoint

    def done(self) -> bool:
        """True once the run has a result or an error."""
        return self._sink.finished

    def result(self, timeout: float | None = None) -> R:
        """Block until the run finishes and return its response (or raise its error).

        Raises ``TimeoutError`` if ``timeout`` seconds pass first; the run keeps going.
        """
        self._sink._wait(timeout)
        return cast(R, self._sink._outcome())

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Block until the run finishes and return its error, or None on success."""
        self._sink._wait(timeout)
        return self._sink._error

    def cancel(self, reason: str = "caller_cancelled") -> bool:
        """Ask the endpoint to stop; True if the run was still going.

        A cancelled text run completes with ``finish_reason == "cancelled"`` and the text
        produced so far; work stops at the engine's next step (or the connection closes).
        """
        return self._sink._request_cancel(reason)

    def add_done_callback(self, callback: Callable[[SippTextRun | SippEmbeddingRun], None]) -> None:
        """Call ``callback(run)`` from the finishing thread (at once if already finished)."""
        run = cast("SippTextRun | SippEmbeddingRun", self)
        self._sink._add_done_callback(lambda: callback(run))

    def __await__(self) -> Generator[Any, None, R]:
        sink = self._sink
        while True:
            future = sink._async_wait(lambda: sink._state != _PENDING)
            if future is None:
                return cast(R, sink._outcome())
            yield from future.__await__()


class SippTextRun(_BaseRun[SippTextResponse]):
    """A text generation in flight (query or chat).

    ``result()`` / ``await run`` give the :class:`~sipp.types.SippTextResponse` dict;
    with ``emit_tokens=True``, ``for batch in run.tokens()`` or
    ``async for batch in run.atokens()`` stream :class:`~sipp.types.TokenBatch` values.
    """

    def tokens(self) -> SippTokenIterator:
        """Blocking iterator of token batches (empty unless ``emit_tokens=True``)."""
        return SippTokenIterator(self._sink)

    def __iter__(self) -> SippTokenIterator:
        return self.tokens()

    async def atokens(self) -> AsyncIterator[TokenBatch]:
        """Async iterator of token batches; the event loop is never blocked."""
        async for group in self._abatch_groups():
            for batch in group:
                yield batch

    async def _abatch_groups(self) -> AsyncIterator[list[TokenBatch]]:
        """:meth:`atokens` a group at a time: each step gives every batch that arrived
        since the previous step (never an empty list), so a consumer that writes batches
        out (the gateway's streams) can write all of them at once."""
        sink = self._sink
        index = 0
        while True:
            future = sink._async_wait(
                lambda i=index: i < len(sink._batches) or sink._state != _PENDING  # type: ignore[misc]
            )
            if future is not None:
                await future
                continue
            with sink._cond:
                available = sink._batches[index:]
                state, error = sink._state, sink._error
            if available:
                index += len(available)
                yield available
            elif state != _PENDING:
                if state == _FAILED and error is not None and not isinstance(error, CancelledError):
                    raise error
                return

    def __aiter__(self) -> AsyncIterator[TokenBatch]:
        return self.atokens()


class SippEmbeddingRun(_BaseRun[SippEmbeddingResponse]):
    """An embedding in flight; ``result()`` / ``await run`` give the response dict."""

