"""ggml's RPC backend: `sipp rpc-server` workers and models split over them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from sipp import LocalModelDescriptor, SippClient, SippTextOptions
from sipp.config import ModelPlacementConfig, NativeRuntimeConfig
from sipp.errors import SippError
from sipp.native.rpc import is_loopback_host, is_rpc_device, parse_rpc_endpoint

PROMPT = "The quick brown fox"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rpc_cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from sipp.cli import main; sys.exit(main())",
            "rpc-server", *args]


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path,
                    timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"rpc-server exited with {proc.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"rpc-server on port {port} did not start listening")


@pytest.fixture()
def two_workers(tmp_path: Path) -> Iterator[list[int]]:
    ports = [_free_port(), _free_port()]
    logs = [tmp_path / f"rpc-{p}.log" for p in ports]
    procs = []
    for port, log in zip(ports, logs, strict=True):
        with log.open("wb") as out:
            procs.append(subprocess.Popen(_rpc_cli("--port", str(port), "--threads", "1"),
                                          stdout=out, stderr=subprocess.STDOUT))
    try:
        for port, proc, log in zip(ports, procs, logs, strict=True):
            _wait_listening(port, proc, log)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
    # SIGTERM ends the worker directly (ggml's accept loop never returns to Python)
    assert all(proc.returncode == -15 for proc in procs)


def _established(port: int) -> int:
    """Established TCP connections whose local port is ``port`` (Linux /proc)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    count += 1
    return count


def _greedy(path: Path, placement: dict[str, Any] | None,
            worker_ports: Sequence[int] = ()) -> str:
    config = NativeRuntimeConfig(
        placement=ModelPlacementConfig(**placement) if placement else None)
    with SippClient() as client:
        ref = client.add("m", LocalModelDescriptor(path, config))
        run = client.query(PROMPT, endpoint=ref,
                           options=SippTextOptions(max_tokens=24, temperature=0.0))
        text = run.result()["text"]
        for port in worker_ports:  # the loaded model really talks to every worker
            assert _established(port) >= 1, f"no connection to the worker on port {port}"
    assert isinstance(text, str)
    return text


def test_endpoints_parse_strictly() -> None:
    assert parse_rpc_endpoint("rpc://127.0.0.1:50052") == ("127.0.0.1", 50052)
    assert parse_rpc_endpoint("rpc://[::1]:7") == ("::1", 7)
    assert is_rpc_device("rpc://h:1") and not is_rpc_device("CUDA0")
    for bad in ("rpc://nohost", "rpc://:80", "rpc://h:0", "rpc://h:99999", "rpc://h:x",
                "rpc://a b:1"):
        with pytest.raises(ValueError, match=r"rpc://|port|host"):
            parse_rpc_endpoint(bad)
    assert is_loopback_host("localhost") and is_loopback_host("127.0.0.2")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("10.0.0.1")


def test_rpc_server_refuses_a_public_bind_without_allow_remote() -> None:
    done = subprocess.run(_rpc_cli("--host", "0.0.0.0", "--port", "50999"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no authentication" in done.stderr and "--allow-remote" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_worker_is_a_clear_error_not_an_abort(tiny_llama_path: Path) -> None:
    port = _free_port()  # nothing listens there
    with pytest.raises(SippError, match=f"cannot reach the RPC worker.*{port}"):
        _greedy(tiny_llama_path, {"devices": [f"rpc://127.0.0.1:{port}"]})


def test_a_model_split_over_two_workers_gives_the_local_greedy_text(
    tiny_llama_path: Path, two_workers: list[int]
) -> None:
    # Remote devices hold plain weights (no CPU repacking), so compare with the same layout.
    local = _greedy(tiny_llama_path, {"no_extra_bufts": True})
    split = _greedy(tiny_llama_path, {
        "devices": [f"rpc://127.0.0.1:{port}" for port in two_workers],
        "gpu_layers": "all",
    }, worker_ports=two_workers)
    assert split == local
    assert len(local) > 0
