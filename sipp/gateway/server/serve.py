"""Run the gateway: both listeners on one event loop, graceful drain on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from sipp.client import SippClient
from sipp.gateway.server.app import PublicApp
from sipp.gateway.server.config import GatewayConfig
from sipp.gateway.server.logging import logger
from sipp.gateway.server.management import ManagementApp
from sipp.gateway.server.protocol import MAX_CONNECTIONS, MAX_HEAD_BYTES, LimitedHttpToolsProtocol
from sipp.gateway.server.secrets import GatewaySecrets
from sipp.gateway.server.state import GatewayState
from sipp.gateway.server.submission import DEFAULT_SUBMIT_WORKERS

__all__ = ["GatewayServer", "bind_socket"]


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv6 when ``host`` is an IPv6 address)."""
    family = socket.AF_INET
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            family = socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """A uvicorn server whose signals are handled by :class:`GatewayServer`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


def _uvicorn_config(app: Any, drain_timeout: float) -> uvicorn.Config:
    # proxy_headers=False: forwarded headers are judged by ClientIpResolver, never by uvicorn.
    # The connection protocol bounds request heads and read phases (see .protocol).
    return uvicorn.Config(app, lifespan="off", log_config=None, access_log=False,
                          proxy_headers=False, http=LimitedHttpToolsProtocol,
                          h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                          limit_concurrency=MAX_CONNECTIONS,
                          timeout_graceful_shutdown=int(drain_timeout + 0.999),
                          timeout_keep_alive=30, server_header=False, date_header=False)


class GatewayServer:
    """The gateway process: ``await start()`` binds both listeners and begins loading
    targets (readiness is 503 until they are loaded); ``await wait()`` returns the exit
    code after :meth:`shutdown` (or a signal) drained the public listener.

    ``submit_workers`` threads start runs off the event loop; ``0`` starts them on the loop
    (only for measuring what that costs: one slow submission then stalls every stream)."""

    def __init__(self, config: GatewayConfig, secrets: GatewaySecrets, *,
                 client: SippClient | None = None, drain_timeout: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 submit_workers: int = DEFAULT_SUBMIT_WORKERS) -> None:
        self.config = config
        self.state = GatewayState(config, secrets, client, clock, submit_workers)
        self.drain_timeout = drain_timeout
        self._public = _Server(_uvicorn_config(PublicApp(self.state), drain_timeout))
        self.management_app = ManagementApp(self.state)
        self._management = _Server(_uvicorn_config(self.management_app, drain_timeout))
        self._sockets: list[socket.socket] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._exit_code = 0
        self._stopped = asyncio.Event()

    @property
    def public_port(self) -> int:
        return int(self._sockets[1].getsockname()[1])

    @property
    def management_port(self) -> int:
        return int(self._sockets[0].getsockname()[1])

    async def start(self, *, install_signals: bool = False) -> None:
        management = bind_socket(*self.config.management_bind)
        self._sockets.append(management)
        try:
            self._sockets.append(bind_socket(*self.config.public_bind))
        except OSError:
            management.close()
            raise
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.shutdown)
        if self.state.shared is not None:
            await self.state.shared.start()
        self._tasks = [
            asyncio.ensure_future(self._management._serve([self._sockets[0]])),
            asyncio.ensure_future(self._public._serve([self._sockets[1]])),
            asyncio.ensure_future(self._load()),
        ]
        while not (self._public.started and self._management.started):
            if any(t.done() for t in self._tasks[:2]):
                raise RuntimeError("gateway listeners failed to start")
            await asyncio.sleep(0.005)
        logger.info("gateway listening", extra={
            "public_bind": f"{self.config.public_bind[0]}:{self.public_port}",
            "management_bind": f"{self.config.management_bind[0]}:{self.management_port}"})

    async def _load(self) -> None:
        try:
            await self.state.targets.load_all()
        except Exception as exc:
            logger.error("gateway cannot start: %s", exc)
            self._exit_code = 1
            self.shutdown()
            return
        self.state.rag.start()  # load or rebuild collections in the background
        logger.info("gateway application ready")

    def shutdown(self) -> None:
        """Stop accepting, drain in-flight public requests, then stop management."""
        if self.state.draining:
            self._public.force_exit = True
            return
        self.state.draining = True
        logger.info("gateway shutting down", extra={"in_flight": self.state.metrics.in_flight})
        self._public.should_exit = True

    async def wait(self) -> int:
        await self._tasks[1]
        self._management.should_exit = True
        await self._tasks[0]
        if not self._tasks[2].done():
            self._tasks[2].cancel()
        if self.state.shared is not None:
            await self.state.shared.close()
        await self.state.caches.aclose()
        await asyncio.to_thread(self.state.close)
        logger.info("gateway stopped")
        return self._exit_code

    async def run(self) -> int:
        """start() with signal handlers, then wait()."""
        await self.start(install_signals=True)
        return await self.wait()
