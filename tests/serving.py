"""Run ``sipp serve`` in a subprocess for tests: ready once it logs that its model loaded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def stop(self) -> str:
        """Terminate (SIGTERM: graceful drain) and return everything logged."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        if self.reader is not None:
            self.reader.join(timeout=10)  # it has read the last lines
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return "".join(self.log)


@contextmanager
def sipp_serve(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO,
               timeout: float = 120) -> Iterator[Served]:
    """``sipp serve ARGS --port <free>``; yields once "gateway application ready" is logged."""
    pytest.importorskip("uvicorn")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipp.cli", "serve", *args, "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, cwd=cwd,
        stderr=subprocess.PIPE, text=True,
    )
    served = Served(f"http://127.0.0.1:{port}", proc)
    ready = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            served.log.append(line)
            if "gateway application ready" in line:
                ready.set()
        ready.set()

    served.reader = threading.Thread(target=read, daemon=True)
    served.reader.start()
    try:
        if not ready.wait(timeout) or proc.poll() is not None:
            pytest.fail(f"sipp serve did not become ready:\n{''.join(served.log)[-4000:]}")
        yield served
    finally:
        served.stop()
