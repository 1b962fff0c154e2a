"""Running one public request on the gateway's client: admission, starting the run off the
event loop, awaiting or streaming it, and the route table entry both route families use.

Shared by the profile routes (:mod:`.app`) and the OpenAI-compatible ones
(:mod:`.openai_compat`), so neither imports the other.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from sipp.errors import AdmissionError, ProviderError, RateLimitedError, SippError
from sipp.gateway.server.config import TokenConfig
from sipp.gateway.server.http import ClientGone, Exchange
from sipp.gateway.server.state import GatewayState
from sipp.gateway.server.targets import TargetState
from sipp.runs import SippEmbeddingRun, SippTextRun
from sipp.types import TokenBatch

__all__ = ["ClientGone", "ErrorStyle", "Execution", "Handler", "Route", "StreamEncoder",
           "caller_error"]

RunT = TypeVar("RunT", SippTextRun, SippEmbeddingRun)
T = TypeVar("T")


class ErrorStyle(Protocol):
    """A route family's error body: ``(status, JSON body)`` for an error."""

    def __call__(self, exc: SippError) -> tuple[int, Any]: ...


class StreamEncoder(Protocol):
    """A route family's SSE frames."""

    def token(self, batch: TokenBatch) -> bytes: ...
    def end(self, response: Any) -> bytes: ...
    def error(self, exc: SippError) -> bytes: ...


# A route handler: serves the exchange, returns the target name it used (for accounting).
Handler = Callable[[Exchange, TokenConfig, bytes], Awaitable[str | None]]


class Route:
    """A public route: operation label, handler, error style and allowed method."""

    __slots__ = ("error_style", "handler", "method", "operation")

    def __init__(self, operation: str, handler: Handler, error_style: ErrorStyle,
                 method: str = "POST") -> None:
        self.operation = operation
        self.handler = handler
        self.error_style = error_style
        self.method = method


def caller_error(exc: SippError) -> SippError:
    """The error as the gateway's caller sees it.

    A target's upstream rate limit (a :class:`ProviderError` of kind ``rate_limited``:
    HTTP 429 or a rate-limit error code from the provider) becomes 429 ``rate_limited``
    with the upstream's ``Retry-After``. Every other provider failure, an upstream 401 or
    403 included, stays a target failure (500 ``provider``): the gateway's caller did
    authenticate, the gateway's own key was refused."""
    if isinstance(exc, ProviderError) and exc.kind == "rate_limited":
        limited = RateLimitedError(f"target is rate limited by its upstream: {exc.message}",
                                   retry_after=exc.retry_after)
        limited.__cause__ = exc
        return limited
    return exc


class Execution:
    """Starts, awaits and streams runs for the public routes of one gateway."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    async def admitted(self, target: TargetState, run_factory: Callable[[], RunT],
                       body: Callable[[RunT], Awaitable[None]]) -> None:
        """Hold an admission slot while the run starts and ``body(run)`` serves it; 429 when
        the limit is full. On a target whose runs start with CPU work (template rendering,
        tokenizing, grammar compiling: ``target.off_loop``) the factory runs on a submission
        thread, never on the event loop."""
        admission = self.state.admission
        if not admission.try_enter():
            raise AdmissionError("application concurrency limit exceeded "
                                 f"(max_concurrent_requests={admission.limit})")
        try:
            run = await self.state.submitter.start(run_factory, off_loop=target.off_loop)
            await body(run)
        finally:
            admission.leave()

    async def await_run(self, ex: Exchange, run: SippTextRun | SippEmbeddingRun) -> Any:
        """The run's response; cancels the run if the client disconnects first."""
        watcher = asyncio.ensure_future(ex.wait_disconnect())
        result = asyncio.ensure_future(_await(run))
        try:
            await asyncio.wait((result, watcher), return_when=asyncio.FIRST_COMPLETED)
            if result.done():
                return result.result()
            run.cancel("client_disconnected")
            self.state.metrics.disconnects += 1
            result.add_done_callback(functools.partial(self._settle, ex))
            raise ClientGone
        finally:
            watcher.cancel()

    def _settle(self, ex: Exchange, task: asyncio.Future[Any]) -> None:
        """Charge a disconnected run's usage once it has ended (on the event loop)."""
        if task.cancelled() or task.exception() is not None:
            return
        response = task.result()
        if isinstance(response, dict):
            self.state.settle_after_disconnect(ex, response.get("usage"))

    async def stream(self, ex: Exchange, run: SippTextRun, operation: str,
                     encode: StreamEncoder) -> Any:
        """Write SSE frames as batches arrive. Failures before the first token are plain
        error responses; later ones become an in-band error event. Returns the response
        (None when the stream ended in an error or the client left)."""
        # the batches that arrived together are written together (one write, not one each)
        groups = run._abatch_groups()
        watcher = asyncio.ensure_future(ex.wait_disconnect())
        watcher.add_done_callback(
            lambda t: None if t.cancelled() else run.cancel("client_disconnected"))
        metrics = self.state.metrics
        ex.streaming = True
        try:
            first = await _first(groups)
            if watcher.done():
                raise ClientGone
            await ex.start(200, b"text/event-stream", [
                (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")])
            if first is not None:
                metrics.ttft[operation].observe(time.perf_counter() - ex.started)
                await ex.body(self._frames(ex, first, encode), more=True)
                async for group in groups:
                    if frames := self._frames(ex, group, encode):  # b"": nothing to send
                        await ex.body(frames, more=True)
            response = await run
            if watcher.done():
                raise ClientGone
            await ex.body(encode.end(response), more=False)
            return response
        except ClientGone:
            metrics.disconnects += 1
            # the run goes on until the cancel lands: charge what it used when it ends
            asyncio.ensure_future(_await(run)).add_done_callback(
                functools.partial(self._settle, ex))
            if ex.status:
                await ex.body(b"", more=False)
            raise
        except SippError as exc:
            if not ex.status:
                raise
            await ex.body(encode.error(caller_error(exc)), more=False)
            return None
        finally:
            watcher.cancel()

    def _frames(self, ex: Exchange, group: list[TokenBatch], encode: StreamEncoder) -> bytes:
        """The SSE frames of ``group``, each batch's output tokens charged as it is encoded
        (budgets, metrics)."""
        charge = self.state.charge_output
        frames = []
        for batch in group:
            charge(ex, batch.token_count)
            frames.append(encode.token(batch))
        return b"".join(frames)


async def _await(run: SippTextRun | SippEmbeddingRun) -> Any:
    return await run


async def _first(items: AsyncIterator[T]) -> T | None:
    try:
        return await items.__anext__()
    except StopAsyncIteration:
        return None


