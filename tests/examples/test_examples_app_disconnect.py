"""The web-app examples stop generating when a streaming client goes away (in-process, so
the server-side run can be observed)."""

from __future__ import annotations

import importlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sipp import GatewayDescriptor, SippClient, SippTextOptions
from sipp.runs import SippTextRun
from tests.examples.helpers import EXAMPLES


def serve_fastapi(module: Any) -> tuple[str, Callable[[], None]]:
    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(module.app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"

    def stop() -> None:
        server.should_exit = True
        thread.join(15)
        sock.close()

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


def serve_flask(module: Any) -> tuple[str, Callable[[], None]]:
    from werkzeug.serving import make_server

    app = module.create_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(15)
        app.extensions["sipp_client"].close()

    return f"http://127.0.0.1:{server.port}", stop


@pytest.fixture
def cancels(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, bool]]]:
    """Every ``SippTextRun.cancel(reason)`` call in this process and whether it stopped a run."""
    seen: list[tuple[str, bool]] = []
    original = SippTextRun.cancel

    def recording(self: SippTextRun, reason: str = "caller_cancelled") -> bool:
        stopped = original(self, reason)
        seen.append((reason, stopped))
        return stopped

    monkeypatch.setattr(SippTextRun, "cancel", recording)
    yield seen


@pytest.mark.parametrize("name", ["fastapi_app", "flask_app"])
def test_closing_the_stream_cancels_the_apps_run(
    name: str, native_backend: None, tiny_llama_path: Path,
    monkeypatch: pytest.MonkeyPatch, cancels: list[tuple[str, bool]],
) -> None:
    pytest.importorskip(name.removesuffix("_app"))
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("SIPP_APP_MODEL", str(tiny_llama_path))
    for var in ("SIPP_APP_PROVIDER_URL", "SIPP_APP_EMBED_MODEL", "SIPP_APP_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    module = importlib.import_module(name)
    url, stop = (serve_fastapi if name == "fastapi_app" else serve_flask)(module)
    try:
        with SippClient() as client:
            ref = client.add("app", GatewayDescriptor("default", url, timeout_ms=30_000))
            run = client.query("Hello", endpoint=ref, emit_tokens=True,
                               options=SippTextOptions(max_tokens=1500))
            for index, _ in enumerate(run.tokens()):
                if index == 2:
                    assert run.cancel()  # closes the connection
            assert run.result()["finish_reason"] == "cancelled"
        deadline = time.monotonic() + 5
        while ("client_disconnected", True) not in cancels and time.monotonic() < deadline:
            time.sleep(0.02)
        # the app's own run was still generating when the client left, and was stopped
        assert ("client_disconnected", True) in cancels, cancels
    finally:
        stop()
