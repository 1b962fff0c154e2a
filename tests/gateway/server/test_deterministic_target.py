"""A gateway target with ``[targets.runtime.scheduler] deterministic = true``: concurrent
requests through the OpenAI route get exactly the answers they get alone."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from sipp import SippClient
from tests.gateway.server.conftest import BASE_CONFIG, ENV, RunningGateway, auth

PROMPTS = [f"Item {i}: {' '.join(['red green blue'] * (1 + i % 4))} and then" for i in range(16)]


@pytest.fixture(scope="module")
def gateway(tiny_llama_path: Path, native_backend: None) -> Iterator[RunningGateway]:
    client = SippClient()
    config = {**BASE_CONFIG, "tokens": [{"env": "TOKEN_ALL", "caller": "all", "targets": []}],
              "targets": [{"name": "det", "type": "local", "model": str(tiny_llama_path),
                           "runtime": {"context": {"n_ctx": 8 * 256, "n_parallel": 8},
                                       "scheduler": {"deterministic": True}}}]}
    running = RunningGateway(config, ENV, client)
    try:
        yield running
    finally:
        running.stop()
        client.close()


def _complete(gateway: RunningGateway, prompt: str) -> Any:
    r = requests.post(gateway.url + "/v1/completions", headers=auth(), timeout=120, json={
        "model": "det", "prompt": prompt, "max_tokens": 24, "temperature": 0})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def test_concurrent_requests_get_the_answers_they_get_alone(gateway: RunningGateway) -> None:
    alone = [_complete(gateway, p) for p in PROMPTS]
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(lambda p: _complete(gateway, p), PROMPTS))
    assert together == alone
