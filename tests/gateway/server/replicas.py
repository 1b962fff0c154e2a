"""``sipp-gateway serve`` processes on loopback ports, for tests that kill a replica."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def toml_value(value: Any) -> str:
    """``value`` as TOML (inline tables and arrays; enough for gateway configs)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(config: dict[str, Any]) -> str:
    return "".join(f"{key} = {toml_value(value)}\n" for key, value in config.items())


class GatewayProcess:
    """A ``sipp-gateway serve`` child process; ready once its ``/readyz`` answers 200."""

    def __init__(self, tmp: Path, config: dict[str, Any], env: dict[str, str],
                 name: str = "replica") -> None:
        self.port = free_port()
        self.management_port = free_port()
        config = {**config, "public_bind": f"127.0.0.1:{self.port}",
                  "management_bind": f"127.0.0.1:{self.management_port}"}
        path = tmp / f"{name}.toml"
        path.write_text(to_toml(config))
        self.log = (tmp / f"{name}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sipp.gateway.server.cli", "serve", "--config", str(path)],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, **env, "PYTHONPATH": str(REPO)})
        self.url = f"http://127.0.0.1:{self.port}"
        self.readiness_url = f"http://127.0.0.1:{self.management_port}/readyz"
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited: {(tmp / f'{name}.log').read_text()}")
            try:
                if requests.get(self.readiness_url, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("gateway did not become ready")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the replica dies without closing anything."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()
