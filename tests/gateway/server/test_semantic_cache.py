"""The semantic cache and route-on-hit with a real embedding model: MiniLM as a local
embedding target, provider targets behind the mock OpenAI upstream."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sipp.client import SippClient
from sipp.gateway.server.interception import CONTEXT_PREAMBLE
from tests.gateway.server.conftest import BASE_CONFIG, ENV, RunningGateway, auth
from tests.gateway.server.upstream import MockOpenAI

QUESTION = "How do I reset my password?"
PARAPHRASE = "How can I reset my password?"
UNRELATED = "What is the boiling point of water at sea level?"


@pytest.fixture
def upstream() -> Iterator[MockOpenAI]:
    server = MockOpenAI()
    yield server
    server.stop()


def semantic_config(minilm: Path, upstream: MockOpenAI, **cache: Any) -> dict[str, Any]:
    config = copy.deepcopy(BASE_CONFIG)
    config["max_request_bytes"] = 65536
    config["tokens"] = [{"env": "TOKEN_ALL", "caller": "all", "targets": []}]
    config["targets"] = [
        {"name": "minilm", "type": "local", "model": str(minilm), "backend": "cpu",
         "runtime": {"context": {"embeddings": True, "n_parallel": 2}}},
        {"name": "fast", "type": "openai", "model": "m-fast", "api_key_env": "KEY_A",
         "base_url": upstream.url},
        {"name": "deep", "type": "openai", "model": "m-deep", "api_key_env": "KEY_A",
         "base_url": upstream.url, "cache": "semantic"},
    ]
    config["caches"] = [{"name": "semantic", "mode": "semantic", "threshold": 0.85,
                         "embedding_target": "minilm", **cache}]
    return config


@pytest.fixture
def running() -> Iterator[list[RunningGateway]]:
    gateways: list[RunningGateway] = []
    yield gateways
    for gateway in gateways:
        gateway.stop()


def start(config: dict[str, Any], running: list[RunningGateway]) -> RunningGateway:
    gateway = RunningGateway(config, ENV, SippClient())
    running.append(gateway)
    return gateway


def ask(gw: RunningGateway, question: str) -> requests.Response:
    return requests.post(f"{gw.url}/v1/chat/completions", headers=auth(), timeout=30, json={
        "model": "deep", "temperature": 0,
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": question}]})


def test_semantic_hit_above_the_threshold_and_miss_below(
        minilm_gguf_path: Path, upstream: MockOpenAI, running: list[RunningGateway]) -> None:
    gw = start(semantic_config(minilm_gguf_path, upstream), running)
    assert ask(gw, QUESTION).headers["x-sipp-cache"] == "miss"
    hit = ask(gw, PARAPHRASE)
    assert hit.headers["x-sipp-cache"] == "hit"
    assert hit.json()["choices"][0]["message"]["content"] == "Hello"
    assert hit.json()["usage"]["total_tokens"] == 0
    assert ask(gw, UNRELATED).headers["x-sipp-cache"] == "miss"
    assert [body["model"] for _, _, body in upstream.seen] == ["m-deep", "m-deep"]
    # the paraphrase's similarity is below a stricter threshold: a miss there
    strict = start(semantic_config(minilm_gguf_path, upstream, threshold=0.999), running)
    assert ask(strict, QUESTION).headers["x-sipp-cache"] == "miss"
    assert ask(strict, PARAPHRASE).headers["x-sipp-cache"] == "miss"
    assert ask(strict, QUESTION).headers["x-sipp-cache"] == "hit"  # the exact key still hits


def test_route_on_hit_sends_hits_to_the_fast_target_with_context(
        minilm_gguf_path: Path, upstream: MockOpenAI, running: list[RunningGateway]) -> None:
    gw = start(semantic_config(
        minilm_gguf_path, upstream, on_hit={"route_to": "fast", "with_context": True},
        on_miss={"route_to": "deep"}), running)
    miss = ask(gw, QUESTION)
    assert (miss.headers["x-sipp-cache"], miss.headers["x-sipp-route"]) == ("miss", "deep")
    assert upstream.seen[-1][2]["model"] == "m-deep"
    hit = ask(gw, PARAPHRASE)
    assert (hit.headers["x-sipp-cache"], hit.headers["x-sipp-route"]) == ("hit", "fast")
    assert hit.json()["usage"]["total_tokens"] > 0  # a real run on the fast target
    sent = upstream.seen[-1][2]
    assert sent["model"] == "m-fast"
    system = sent["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Be brief.")
    assert CONTEXT_PREAMBLE in system["content"]
    assert f"Question: {QUESTION}\nAnswer: Hello" in system["content"]
    assert sent["messages"][-1] == {"role": "user", "content": PARAPHRASE}
    # the miss filled the cache; the fast target's answer did not add an entry
    cache = gw.server.state.caches.caches["semantic"]
    snapshot = cache.snapshot()
    assert snapshot["entries"] == 1 and snapshot["hits"] == 1 and snapshot["misses"] == 1
    assert {(r["on"], r["target"]): r["count"] for r in snapshot["routed"]} == {
        ("hit", "fast"): 1, ("miss", "deep"): 1}
    metrics = requests.get(f"{gw.management_url}/metrics", timeout=10).text
    assert 'sipp_gateway_cache_routed_total{cache="semantic",on="hit",target="fast"} 1' \
        in metrics
