"""A routed target over two local deployments of one tiny model (random weights): the
router under the real engine, streaming through the OpenAI-compatible route."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from sipp import SippClient
from tests.gateway.server.conftest import BASE_CONFIG, ENV, RunningGateway, auth
from tests.tool_templates import HERMES_TEMPLATE


def test_least_busy_over_two_local_replicas(tiny_llama_path: Path, native_backend: None
                                            ) -> None:
    local = {"type": "local", "model": str(tiny_llama_path), "chat_template": HERMES_TEMPLATE,
             "runtime": {"context": {"n_ctx": 512, "n_parallel": 8}}}
    config = {**BASE_CONFIG, "tokens": [{"env": "TOKEN_ALL", "caller": "all", "targets": []}],
              "targets": [{"name": "chat", "strategy": "least_busy", "deployments": [
                  {"name": "r1", **local}, {"name": "r2", **local}]}]}
    client = SippClient()
    gateway = RunningGateway(config, ENV, client)
    try:
        def call(_: int) -> requests.Response:
            return requests.post(f"{gateway.url}/v1/chat/completions", headers=auth(),
                                 timeout=120, json={
                                     "model": "chat", "stream": True, "max_tokens": 3,
                                     "temperature": 0,
                                     "messages": [{"role": "user", "content": "Hi"}]})

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(call, range(16)))
        for response in responses:
            assert response.status_code == 200
            chunks = [line.removeprefix("data: ") for line in response.text.splitlines()
                      if line.startswith("data: ")]
            assert chunks[-1] == "[DONE]"
            assert all("error" not in json.loads(c) for c in chunks[:-1])
        counts = Counter(r.headers["x-sipp-deployment"] for r in responses)
        assert set(counts) == {"chat/r1", "chat/r2"}
        assert all(6 <= n <= 10 for n in counts.values()), counts  # 8 ± 25 %
        metrics = requests.get(f"{gateway.management_url}/metrics", timeout=10).text
        assert 'sipp_local_counters_requests_started{target="chat/r1"}' in metrics
    finally:
        gateway.stop()
        client.close()
