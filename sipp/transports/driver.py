"""The run driver: one HTTP exchange feeding one run, with cancellation.

Endpoints (gateway, provider) start an exchange on the I/O loop with a :class:`RunDriver`
around the run's :class:`~sipp.requests.RunSink`; the driver keeps the worker's deliveries
and a caller's ``cancel()`` from racing.
"""

from __future__ import annotations

import threading
from typing import Any

from sipp.errors import CancelledError
from sipp.requests import RunSink
from sipp.transports.http import HttpCall

__all__ = ["RunDriver"]


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
