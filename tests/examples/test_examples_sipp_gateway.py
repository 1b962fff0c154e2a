"""The gateway examples against the first-party gateway server (``sipp-gateway serve``),
its targets an OpenAI-compatible loopback mock and a tiny local model."""

from __future__ import annotations

import ast
import contextlib
import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.examples.helpers import (
    OPENAI_KEY,
    example_env,
    openai_compatible,
    request_bodies,
    run_example,
)
from tests.providers.loopback import LoopbackServer

TOKEN = "gateway-example-token"


def config_text(provider_url: str, local_model: Path | None) -> str:
    local = f"""
[[targets]]
name = "tiny"
type = "local"
model = {json.dumps(str(local_model))}
""" if local_model is not None else ""
    return f"""
public_bind = "127.0.0.1:0"
management_bind = "127.0.0.1:0"
admin_password_env = "EXAMPLE_ADMIN_PASSWORD"

[security.client_ip]
source = "peer"
trusted_proxy_cidrs = []

[security.rate_limit]
enabled = false
requests_per_minute = 60
burst = 60

[[tokens]]
env = "EXAMPLE_GATEWAY_TOKEN"
caller = "examples"
targets = []

[[targets]]
name = "mock-openai"
type = "openai"
model = "mock-model"
api_key_env = "EXAMPLE_OPENAI_KEY"
base_url = "{provider_url}/v1"
{local}"""


class Gateway:
    """``python -m sipp.gateway.server.cli serve``; ready on its "application ready" log."""

    def __init__(self, config: Path) -> None:
        env = example_env({"EXAMPLE_GATEWAY_TOKEN": TOKEN, "EXAMPLE_OPENAI_KEY": OPENAI_KEY,
                           "EXAMPLE_ADMIN_PASSWORD": "admin-pw", "SIPP_GATEWAY_LOG": "info"})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sipp.gateway.server.cli", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.log: list[str] = []
        self.url = ""
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line)
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if entry.get("msg") == "gateway listening":
                    self.url = f"http://{entry['public_bind']}"
                elif entry.get("msg") == "gateway application ready":
                    ready.set()
            ready.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not ready.wait(60) or self.proc.poll() is not None or not self.url:
            self.stop()
            pytest.fail("sipp-gateway did not become ready:\n" + "".join(self.log[-30:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._pump.join(5)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture(scope="module")
def provider() -> Iterator[LoopbackServer]:
    with LoopbackServer(openai_compatible) as server:
        yield server


@contextlib.contextmanager
def start(provider: LoopbackServer, local_model: Path | None) -> Iterator[Gateway]:
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "gateway.toml"
        config.write_text(config_text(provider.url, local_model))
        gateway = Gateway(config)
        try:
            yield gateway
        finally:
            gateway.stop()


@pytest.fixture(scope="module")
def gateway(provider: LoopbackServer) -> Iterator[Gateway]:
    with start(provider, None) as running:
        yield running


def env_for(gateway: Gateway, target: str, token: str = TOKEN) -> dict[str, str]:
    return {"SIPP_GATEWAY_URL": gateway.url, "SIPP_GATEWAY_TARGET": target,
            "SIPP_GATEWAY_TOKEN": token}


def test_gateway_chat_through_sipp_gateway_to_a_provider(
    gateway: Gateway, provider: LoopbackServer
) -> None:
    seen = len(provider.requests)
    proc = run_example("gateway_chat.py", env=env_for(gateway, "mock-openai"))
    assert proc.stdout == "provider says: Explain gateway inference.\n"
    [(path, body)] = request_bodies(provider.requests[seen:])
    assert path == "/v1/chat/completions" and body["model"] == "mock-model"


def test_gateway_query_streams_through_sipp_gateway(gateway: Gateway) -> None:
    lines = run_example("gateway_query.py", "Hi", env=env_for(gateway, "mock-openai"))
    out = lines.stdout.splitlines()
    assert out[:2] == ["finite: 'completion of Hi' (length)", "streamed: Hello"]
    assert out[2].startswith("[2 batches, finish_reason=length")


def test_gateway_embed_through_sipp_gateway(gateway: Gateway) -> None:
    proc = run_example("gateway_embed.py", env=env_for(gateway, "mock-openai"))
    assert proc.stdout.splitlines() == ["embedding length: 3",
                                        "first values: [0.25, -0.5, 0.75]"]


def test_sipp_gateway_rejects_a_wrong_token(gateway: Gateway) -> None:
    proc = run_example("gateway_chat.py", env=env_for(gateway, "mock-openai", token="nope"),
                       check=False)
    assert proc.returncode == 1
    assert "sipp.errors.AuthenticationError" in proc.stderr


def test_gateway_examples_reach_a_local_target(
    native_backend: None, provider: LoopbackServer, tiny_llama_path: Path
) -> None:
    with start(provider, tiny_llama_path) as gateway:
        query = run_example("gateway_query.py", "Hello", env=env_for(gateway, "tiny"))
        out = query.stdout.splitlines()
        # sampled text: assert the shape only (a str repr, whichever quotes, and the reason)
        finite = re.fullmatch(r"finite: (.*) \((length|stop)\)", out[0])
        assert finite is not None and isinstance(ast.literal_eval(finite[1]), str), out[0]
        assert out[1].startswith("streamed: ")
        assert re.fullmatch(r"\[\d+ batches, finish_reason=(length|stop), usage=\{.*\}\]",
                            out[-1]), out[-1]
        chat = run_example("gateway_chat.py", env=env_for(gateway, "tiny"))
        assert chat.stdout.strip()


def test_sigterm_drains_an_in_flight_stream_then_exits_cleanly(
    native_backend: None, provider: LoopbackServer, tiny_llama_path: Path
) -> None:
    import http.client
    from urllib.parse import urlsplit

    with start(provider, tiny_llama_path) as gateway:
        host = urlsplit(gateway.url)
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        body = json.dumps({"model": "tiny", "prompt": "Once upon a time", "max_tokens": 400,
                           "stream": True})
        conn.request("POST", "/v1/query", body=body,
                     headers={"authorization": f"Bearer {TOKEN}",
                              "content-type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        first = response.readline()  # the stream has started
        assert first.startswith(b"event:") or first.startswith(b"data:")
        gateway.proc.send_signal(signal.SIGTERM)
        rest = response.read().decode()  # the stream runs to its end during the drain
        conn.close()
        events = [line.split(":", 1)[1].strip() for line in (first.decode() + rest).splitlines()
                  if line.startswith("event:")]
        assert events[-1] == "done", events[-3:]
        assert "error" not in events
        finish = [json.loads(line[5:]) for line in rest.splitlines()
                  if line.startswith("data:") and "finish_reason" in line][-1]
        assert finish["finish_reason"] in ("length", "stop"), finish  # not cancelled
        assert gateway.proc.wait(30) == 0, "".join(gateway.log[-20:])
        log = "".join(gateway.log)
        assert TOKEN not in log
