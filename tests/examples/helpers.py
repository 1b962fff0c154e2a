"""Run the scripts of ``examples/python`` as a user would: subprocesses with a timeout."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.providers.loopback import Exchange

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples" / "python"
# Variables the examples read; cleared so the developer's shell cannot leak into a test.
_EXAMPLE_VARS = ("SIPP_GATEWAY_", "SIPP_APP_", "OPENAI_")


def gguf_int(path: Path, key: str) -> int:
    """An integer from a GGUF header (``bert.embedding_length``, ...)."""
    from sipp.native._gguf import read_gguf_info

    return int(read_gguf_info(path).metadata[key])


def example_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_EXAMPLE_VARS)}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_example(
    name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``examples/python/<name>``; a non-zero exit fails the test with its stderr."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True, text=True, timeout=timeout, env=example_env(env),
        cwd=EXAMPLES,
    )
    if check and proc.returncode != 0:
        how = (f"was killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"exited with {proc.returncode}")
        pytest.fail(f"{name} {how}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def output_lines(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """``{"label": "value"}`` for every ``label: value`` line the example printed."""
    lines = {}
    for line in proc.stdout.splitlines():
        label, sep, value = line.partition(": ")
        if sep:
            lines[label] = value
    return lines


class AppServer:
    """A web-app example (``fastapi_app.py``, ``flask_app.py``) on a free loopback port.

    Ready once it printed both ``listening on URL`` and ``serving targets: ...``.
    """

    def __init__(self, name: str, env: dict[str, str], startup_timeout: float = 60) -> None:
        self.name = name
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name), "--port", "0"],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=example_env(env),
            cwd=EXAMPLES,
        )
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        self.lines: list[str] = []  # everything printed so far (complete once stopped)
        self.url = ""
        self.targets: list[str] = []
        deadline = time.monotonic() + startup_timeout
        while not (self.url and self.targets):
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                pytest.fail(f"{name} did not start within {startup_timeout} s{self._tail()}")
            if line is None:
                self.stop()
                pytest.fail(f"{name} exited during startup{self._tail()}")
            if line.startswith("listening on "):
                self.url = line.removeprefix("listening on ").strip()
            elif line.startswith("serving targets: "):
                self.targets = line.removeprefix("serving targets: ").strip().split(", ")

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._lines.put(line)
        self._lines.put(None)

    def _tail(self) -> str:
        self._stderr.seek(0)
        return f"\nstderr:\n{self._stderr.read()[-4000:]}"

    def stop(self) -> int:
        """SIGTERM, then the exit status (the app must shut down within 15 s). A graceful
        stop prints ``stopped`` last; uvicorn re-raises the signal, so -SIGTERM is normal."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            return self._proc.wait(15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            pytest.fail(f"{self.name} ignored SIGTERM for 15 s{self._tail()}")
        finally:
            self._pump_thread.join(5)
            assert self._proc.stdout is not None
            self._proc.stdout.close()
            self._stderr.close()

    def stopped_gracefully(self, status: int) -> bool:
        return status in (0, -signal.SIGTERM) and self.lines[-1:] == ["stopped"]

    def __enter__(self) -> AppServer:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._stderr.closed:
            self.stop()


# --------------------------------------------------------------------------- loopback mocks
PROFILE_TOKEN = "example-gateway-token"
OPENAI_KEY = "sk-example-key"


def _sse(ex: Exchange, frames: list[bytes]) -> None:
    ex.start_stream()
    for frame in frames:
        ex.write(frame)
    ex.end_stream()


def profile_gateway(ex: Exchange) -> None:
    """A Sipp gateway speaking the profile: bearer ``PROFILE_TOKEN``, echo-ish replies."""
    from sipp.gateway import profile

    if ex.headers.get("authorization") != f"Bearer {PROFILE_TOKEN}":
        ex.send_json(401, {"error": {"code": "authentication", "message": "bad token"}})
        return
    body = ex.json()
    if ex.path == "/v1/embed":
        ex.send_json(200, {"id": "e1", "model": body["model"], "embedding": [0.5, -0.25, 1, 2, 3]})
        return
    usage = {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}
    if body.get("stream"):
        pieces = ["Gate", "way ", "reply"]
        _sse(ex, [*(profile.token_event(p, i) for i, p in enumerate(pieces)),
                  profile.usage_event(usage), profile.done_event("stop")])
        return
    text = "chat via gateway" if ex.path == "/v1/chat" else "query via gateway"
    ex.send_json(200, {"id": "r1", "model": body["model"], "text": text,
                       "finish_reason": "stop", "usage": usage})


def openai_compatible(ex: Exchange) -> None:
    """An OpenAI-compatible API (bearer ``OPENAI_KEY``): completions, chat, embeddings."""
    if ex.headers.get("authorization") != f"Bearer {OPENAI_KEY}":
        ex.send_json(401, {"error": {"message": "Incorrect API key",
                                     "type": "invalid_request_error", "code": "invalid_api_key"}})
        return
    body = ex.json()
    usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    if ex.path.endswith("/embeddings"):
        ex.send_json(200, {"object": "list", "model": body["model"],
                           "usage": {"prompt_tokens": 3, "total_tokens": 3},
                           "data": [{"object": "embedding", "index": 0,
                                     "embedding": [0.25, -0.5, 0.75]}]})
        return
    chat = ex.path.endswith("/chat/completions")
    if body.get("stream"):
        frames = []
        for piece in ["Hel", "lo"]:
            choice: dict[str, Any] = {"delta": {"content": piece}} if chat else {"text": piece}
            frames.append({"id": "c1", "model": body["model"],
                           "choices": [{"index": 0, **choice, "finish_reason": None}]})
        end: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
        frames.append({"id": "c1", "model": body["model"],
                       "choices": [{"index": 0, **end, "finish_reason": "length"}]})
        frames.append({"id": "c1", "model": body["model"], "choices": [], "usage": usage})
        _sse(ex, [*(f"data: {json.dumps(f)}\n\n".encode() for f in frames), b"data: [DONE]\n\n"])
        return
    if chat:
        last = body["messages"][-1]["content"]
        ex.send_json(200, {"id": "chatcmpl-1", "model": body["model"], "usage": usage,
                           "choices": [{"index": 0, "finish_reason": "stop", "message": {
                               "role": "assistant", "content": f"provider says: {last}"}}]})
    else:
        ex.send_json(200, {"id": "cmpl-1", "model": body["model"], "usage": usage,
                           "choices": [{"index": 0, "finish_reason": "length",
                                        "text": f"completion of {body['prompt']}"}]})


def request_bodies(requests: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(ex.path, ex.json()) for ex in requests]
