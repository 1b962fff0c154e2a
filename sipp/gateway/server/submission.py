"""Starting runs off the event loop.

Starting a run on a local target is CPU work: it renders the chat template, tokenizes the
prompt and compiles any grammar before its run exists. Done on the gateway's event loop,
one large request would stall every other stream on that loop, so :class:`Submitter` runs
such run factories on a small, bounded thread pool and the loop only awaits the result.
A provider or gateway target's factory only encodes a JSON body and hands it to the I/O
loop; the caller says so (``off_loop=False``, decided per target when the config loads)
and it runs inline, sparing two thread hand-offs per request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Protocol, TypeVar

__all__ = ["DEFAULT_SUBMIT_WORKERS", "Submitter"]

# Submissions of one local model serialize on its tokenizer and engine anyway; a few
# threads keep a slow one from queueing the others without oversubscribing the CPU.
DEFAULT_SUBMIT_WORKERS = 4


class _Cancellable(Protocol):
    def cancel(self, reason: str = ...) -> object: ...


R = TypeVar("R", bound=_Cancellable)


class Submitter:
    """Runs run factories on ``workers`` threads (``0``: inline on the calling event loop,
    the behaviour before this existed, kept so benchmarks can compare)."""

    def __init__(self, workers: int = DEFAULT_SUBMIT_WORKERS) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.workers = workers
        self._pool = (concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="sipp-gateway-submit")
            if workers else None)

    async def start(self, factory: Callable[[], R], *, off_loop: bool = True) -> R:
        """``factory()`` (a started run) without blocking the loop; its errors propagate.
        ``off_loop=False``: the factory is cheap (no template, tokenizer or grammar), so it
        runs inline.

        If the awaiting task is cancelled while the factory runs, the run it returns is
        cancelled as soon as it exists, so no orphan keeps generating."""
        if self._pool is None or not off_loop:
            return factory()
        future = self._pool.submit(factory)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.add_done_callback(_cancel_orphan)
            raise

    def close(self) -> None:
        """Stop the threads once queued factories are done (no new submissions after)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)


def _cancel_orphan(future: concurrent.futures.Future[R]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().cancel("client_disconnected")
