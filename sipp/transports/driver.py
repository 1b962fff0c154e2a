"""The run driver: one HTTP exchange feeding one run, with cancellation.

Endpoints (gateway, provider) start an exchange on the I/O loop with a :class:`RunDriver`
around the run's :class:`~sipp.requests.RunSink` and run :meth:`RunDriver.finite` or
:meth:`RunDriver.stream`: the driver reads the response (bounded) or its SSE events,
delivers text and the result, and keeps the worker's deliveries and a caller's
``cancel()`` from racing. The endpoint supplies only what is its own: how to send the
request and check the answer (``respond``), how to read a body or an event (the wire
format), and how a failure becomes its error type (``translate``).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from sipp.errors import CancelledError
from sipp.requests import RunSink
from sipp.transports.http import MAX_RESPONSE_BYTES, HttpCall, Response
from sipp.transports.sse import SseEvent, SseParser

__all__ = ["Respond", "ResponseTooLargeError", "RunDriver", "StreamDecoder", "Translate"]

Respond = Callable[[HttpCall], Awaitable[Response]]
"""Send the request on the call and return the checked response (raise on an error)."""
Translate = Callable[[BaseException], BaseException]
"""Turn whatever an exchange raised into the error its run fails with."""


class ResponseTooLargeError(ValueError):
    """A finite response body went past :data:`~sipp.transports.http.MAX_RESPONSE_BYTES`."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"response exceeded {limit} bytes")


class StreamDecoder(Protocol):
    """One wire format's SSE events as text pieces, and the response at the end."""

    @property
    def done(self) -> bool:
        """True once the stream's final event arrived (later events are not read)."""

    def feed(self, event: SseEvent) -> Iterable[str | dict[str, Any]]:
        """The text pieces and tool-call deltas (dicts) ``event`` carries, in order
        (raise on an error event)."""

    def finish(self, text: str) -> dict[str, Any]:
        """The run's payload once the stream ended, ``text`` being all pieces joined
        (raise if the stream stopped before its final event)."""


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

    def tool_call(self, delta: dict[str, Any]) -> bool:
        """Deliver one tool-call delta; False once the run is finished."""
        with self._lock:
            if self._done:
                return False
            self.sink.push("", 0, tool_calls=(delta,))
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

    # ------------------------------------------------------------ exchanges (I/O loop)
    async def finite(
        self, respond: Respond, parse: Callable[[bytes], dict[str, Any]], translate: Translate
    ) -> None:
        """One request, one bounded body, parsed into the run's payload."""
        call = self.call
        try:
            response = await respond(call)
            body, truncated = await call.read_body(response, MAX_RESPONSE_BYTES)
            if truncated:
                raise ResponseTooLargeError(MAX_RESPONSE_BYTES)
            self.complete(parse(body))
        except BaseException as exc:
            self.fail(translate(exc))
        finally:
            call.finish()

    async def stream(self, respond: Respond, decoder: StreamDecoder, translate: Translate) -> None:
        """One request answered with SSE: each event's text is delivered as it arrives;
        the stream's final event ends the read."""
        call = self.call
        try:
            response = await respond(call)
            parser = SseParser()
            feed = decoder.feed
            token = self.token
            async for chunk in call.chunks(response):
                for event in parser.feed(chunk):
                    for item in feed(event):
                        if not (token(item) if isinstance(item, str) else self.tool_call(item)):
                            return
                    if decoder.done:
                        break
                if decoder.done:  # the final event arrived
                    break
            parser.close()
            self.complete(decoder.finish(self.text))
            await call.drain(response)  # the run has its result: keep the connection
        except BaseException as exc:
            self.fail(translate(exc))
        finally:
            call.finish()
