"""The exact response cache on real gateways: hits replay JSON and SSE, every
output-changing option misses, callers never share answers in per_caller scope, TTL and
byte limits evict, and Cache-Control / cache_control bypass it."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.gateway.server.conftest import (
    BASE_CONFIG,
    LIMITED_TOKEN,
    RunningGateway,
    Script,
    auth,
)


def cached_config(**cache: Any) -> dict[str, Any]:
    config = copy.deepcopy(BASE_CONFIG)
    config["caches"] = [{"name": "answers", **cache}]
    config["targets"][0]["cache"] = "answers"
    return config


def chat(gw: RunningGateway, content: str = "hello", token: str = "tok-all",
         headers: dict[str, str] | None = None, **fields: Any) -> requests.Response:
    body = {"model": "alpha", "messages": [{"role": "user", "content": content}],
            "temperature": 0, **fields}
    return requests.post(f"{gw.url}/v1/chat/completions", json=body,
                         headers={**auth(token), **(headers or {})}, timeout=10)


def events(response: requests.Response) -> list[Any]:
    return [json.loads(line[6:]) for line in response.text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def test_exact_hit_returns_the_same_body_and_replays_sse(
        start_gateway: Callable[..., RunningGateway], script: Script) -> None:
    gw = start_gateway(cached_config())
    first = chat(gw)
    assert first.status_code == 200 and first.headers["x-sipp-cache"] == "miss"
    second = chat(gw)
    assert second.headers["x-sipp-cache"] == "hit"
    assert len(script.requests) == 1
    a, b = first.json(), second.json()
    assert b["choices"] == a["choices"]
    assert a["choices"][0]["message"]["content"] == "Hello"
    assert b["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

    # a streamed miss files the answer in its original chunks; a streamed hit replays them
    streamed = chat(gw, "stream me", stream=True)
    assert streamed.headers["x-sipp-cache"] == "miss"
    replay = chat(gw, "stream me", stream=True,
                  stream_options={"include_usage": True})
    assert replay.headers["x-sipp-cache"] == "hit"
    assert replay.headers["content-type"].startswith("text/event-stream")
    deltas = [e["choices"][0]["delta"].get("content") for e in events(replay) if e["choices"]]
    assert deltas[:2] == ["Hel", "lo"]
    assert events(replay)[-1]["usage"]["total_tokens"] == 0
    assert len(script.requests) == 2
    # the non-streamed original replays as SSE too, and the streamed one as JSON
    assert "".join(d or "" for d in (e["choices"][0]["delta"].get("content")
                                     for e in events(chat(gw, stream=True)) if e["choices"])
                   ) == "Hello"
    assert chat(gw, "stream me").json()["choices"][0]["message"]["content"] == "Hello"
    # the profile routes have their own entries, replayed in their own shape
    body = {"model": "alpha", "messages": [{"role": "user", "content": "hello"}],
            "temperature": 0, "stream": True}
    for expected in ("miss", "hit"):
        profile = requests.post(f"{gw.url}/v1/chat", json=body, headers=auth(), timeout=10)
        assert profile.headers["x-sipp-cache"] == expected
        assert "event: token" in profile.text and '"text":"Hel"' in profile.text
    assert len(script.requests) == 3


def test_every_output_changing_option_misses(
        start_gateway: Callable[..., RunningGateway], script: Script) -> None:
    gw = start_gateway(cached_config())
    assert chat(gw).headers["x-sipp-cache"] == "miss"
    variants: list[dict[str, Any]] = [
        {"content": "hello!"}, {"max_tokens": 5}, {"top_p": 0.5}, {"stop": ["x"]},
        {"seed": 7}, {"temperature": 0, "presence_penalty": 0.5},
        {"response_format": {"type": "json_object"}},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    ]
    for variant in variants:
        response = chat(gw, **variant)
        assert response.headers["x-sipp-cache"] == "miss", variant
    assert len(script.requests) == 1 + len(variants)
    # neutral fields do not change the key
    assert chat(gw, user="someone", stream=False).headers["x-sipp-cache"] == "hit"
    # another target, same body: its own (uncached) answer
    other = requests.post(f"{gw.url}/v1/chat/completions", headers=auth(), timeout=10, json={
        "model": "beta", "messages": [{"role": "user", "content": "hello"}], "temperature": 0})
    assert "x-sipp-cache" not in other.headers


def test_callers_never_see_each_others_answers(
        start_gateway: Callable[..., RunningGateway], script: Script) -> None:
    gw = start_gateway(cached_config())
    assert chat(gw).headers["x-sipp-cache"] == "miss"
    assert chat(gw, token=LIMITED_TOKEN).headers["x-sipp-cache"] == "miss"
    assert chat(gw, token=LIMITED_TOKEN).headers["x-sipp-cache"] == "hit"
    assert len(script.requests) == 2
    shared = start_gateway(cached_config(scope="shared"))
    assert chat(shared).headers["x-sipp-cache"] == "miss"
    assert chat(shared, token=LIMITED_TOKEN).headers["x-sipp-cache"] == "hit"


def test_only_deterministic_requests_are_cached_and_cache_control_bypasses(
        start_gateway: Callable[..., RunningGateway], script: Script) -> None:
    gw = start_gateway(cached_config())
    for _ in range(2):
        assert chat(gw, temperature=0.7).headers["x-sipp-cache"] == "bypass"
    assert chat(gw, temperature=0.7, seed=3).headers["x-sipp-cache"] == "miss"
    assert chat(gw, n=2).headers["x-sipp-cache"] == "bypass"
    assert chat(gw).headers["x-sipp-cache"] == "miss"
    assert chat(gw, headers={"Cache-Control": "no-cache"}).headers["x-sipp-cache"] == "bypass"
    assert chat(gw, cache_control="no-cache").headers["x-sipp-cache"] == "bypass"
    assert chat(gw).headers["x-sipp-cache"] == "hit"
    # no-store: answered (and looked up) but never filed
    assert chat(gw, "fresh", cache_control="no-store").headers["x-sipp-cache"] == "miss"
    assert chat(gw, "fresh").headers["x-sipp-cache"] == "miss"
    bad = chat(gw, cache_control=1)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "cache_control"
    sampled = start_gateway(cached_config(cache_nondeterministic=True))
    assert chat(sampled, temperature=0.7).headers["x-sipp-cache"] == "miss"
    assert chat(sampled, temperature=0.7).headers["x-sipp-cache"] == "hit"


def test_ttl_and_byte_limits_evict(
        start_gateway: Callable[..., RunningGateway], script: Script) -> None:
    now = [1000.0]
    gw = start_gateway(cached_config(ttl_seconds=60), clock=lambda: now[0])
    cache = gw.server.state.caches.caches["answers"]
    assert chat(gw).headers["x-sipp-cache"] == "miss"
    # the answer is filed after the response is sent: advance the clock once it is in
    deadline = time.monotonic() + 10
    while cache.stores < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    now[0] += 59
    assert chat(gw).headers["x-sipp-cache"] == "hit"
    now[0] += 2
    assert chat(gw).headers["x-sipp-cache"] == "miss"
    assert cache.store.stats.expirations == 1

    # room for one answer only: the second evicts the first (least recently used)
    small = start_gateway(cached_config(max_bytes=400))
    assert chat(small, "one").headers["x-sipp-cache"] == "miss"
    assert chat(small, "one").headers["x-sipp-cache"] == "hit"
    assert chat(small, "two").headers["x-sipp-cache"] == "miss"
    assert chat(small, "one").headers["x-sipp-cache"] == "miss"
    snapshot = small.server.state.caches.caches["answers"].snapshot()
    assert snapshot["evictions"] >= 1 and snapshot["bytes"] <= 400
    limited = start_gateway(cached_config(max_entries=2))
    for content in ("a", "b", "c"):
        chat(limited, content)
    assert chat(limited, "c").headers["x-sipp-cache"] == "hit"
    assert chat(limited, "a").headers["x-sipp-cache"] == "miss"


def test_dashboard_and_metrics_show_the_cache_and_flush_empties_it(
        start_gateway: Callable[..., RunningGateway], script: Script) -> None:
    gw = start_gateway(cached_config())
    chat(gw)
    chat(gw)
    chat(gw, temperature=1)
    metrics = requests.get(f"{gw.management_url}/metrics", timeout=10).text
    for line in ('sipp_gateway_cache_requests_total{cache="answers",result="hit"} 1',
                 'sipp_gateway_cache_requests_total{cache="answers",result="miss"} 1',
                 'sipp_gateway_cache_requests_total{cache="answers",result="bypass"} 1',
                 'sipp_gateway_cache_entries{cache="answers"} 1'):
        assert line in metrics
    admin = requests.Session()
    login = admin.post(f"{gw.management_url}/admin/api/session", json={"password": "pw"},
                       timeout=5)
    csrf = {"x-sipp-admin-csrf": login.json()["csrfToken"]}
    view = admin.get(f"{gw.management_url}/admin/api/caches", timeout=5).json()
    (cache,) = view["caches"]
    assert (cache["name"], cache["entries"], cache["hitRate"]) == ("answers", 1, 0.5)
    assert cache["bytes"] > 0
    flushed = admin.delete(f"{gw.management_url}/admin/api/caches/answers", headers=csrf,
                           timeout=5)
    assert flushed.status_code == 200 and flushed.json()["flushed"] == 1
    assert chat(gw).headers["x-sipp-cache"] == "miss"
    missing = admin.delete(f"{gw.management_url}/admin/api/caches/nope", headers=csrf,
                           timeout=5)
    assert missing.status_code == 404


def test_documents_injection_and_a_failing_embedding_target(
        start_gateway: Callable[..., RunningGateway], script: Script, tmp_path: Path) -> None:
    from sipp.requests import TextRequest

    (tmp_path / "kb.jsonl").write_text(
        '{"id": "a", "text": "short"}\n{"id": "b", "text": "a much longer passage"}\n',
        encoding="utf-8")
    config = copy.deepcopy(BASE_CONFIG)
    config["targets"].append({"name": "local", "type": "local", "model": "fake.gguf",
                              "rag": {"collection": "kb", "top_k": 1, "min_score": 0.0,
                                      "inject": "documents"}})
    config["collections"] = [{"name": "kb", "embedding_target": "beta",
                              "source": str(tmp_path / "kb.jsonl"),
                              "index_path": str(tmp_path / "kb.sippvec")}]
    # the fake embedding target embeds a text as [0.25, -0.5, its length]
    config["caches"] = [{"name": "sem", "mode": "semantic", "embedding_target": "beta"}]
    config["targets"][0]["cache"] = "sem"
    gw = start_gateway(config)
    collection = gw.server.state.rag.collections["kb"]
    deadline = time.monotonic() + 10
    while collection.status != "ready":
        assert time.monotonic() < deadline, collection.snapshot()
        time.sleep(0.02)
    r = requests.post(f"{gw.url}/v1/chat/completions", headers=auth(), timeout=10, json={
        "model": "local", "messages": [{"role": "user", "content": "hello"}]})
    assert r.status_code == 200 and r.headers["x-sipp-rag-sources"] == "a#0"
    sent = script.requests[-1]
    assert isinstance(sent, TextRequest)
    assert [dict(d) for d in sent.documents] == [{"id": "a#0", "text": "short"}]
    assert sent.messages is not None and sent.messages[0].role == "user"  # no system block

    # semantic lookups through the fake embedding target: same length, same vector: a hit
    assert chat(gw, "hello").headers["x-sipp-cache"] == "miss"
    assert chat(gw, "hallo").headers["x-sipp-cache"] == "hit"
    # an embedding target that fails: the request is answered uncached
    async def broken(target: str, text: str) -> list[float]:
        raise OSError("embedding target down")

    gw.server.state.caches.caches["sem"].embed = lambda text: broken("beta", text)
    r = chat(gw, "a different question")
    assert r.status_code == 200 and r.headers["x-sipp-cache"] == "bypass"
    assert gw.server.state.caches.caches["sem"].snapshot()["errors"] == 1


def test_a_collection_that_cannot_be_indexed_serves_without_passages(
        start_gateway: Callable[..., RunningGateway], script: Script, tmp_path: Path) -> None:
    config = copy.deepcopy(BASE_CONFIG)
    config["targets"][0]["rag"] = {"collection": "kb"}
    config["collections"] = [{"name": "kb", "embedding_target": "beta",
                              "source": str(tmp_path / "missing"),
                              "index_path": str(tmp_path / "kb.sippvec")}]
    gw = start_gateway(config)
    collection = gw.server.state.rag.collections["kb"]
    deadline = time.monotonic() + 10
    while collection.status != "failed":
        assert time.monotonic() < deadline, collection.snapshot()
        time.sleep(0.02)
    assert "does not exist" in (collection.error or "")
    r = chat(gw)
    assert r.status_code == 200 and r.headers["x-sipp-rag-sources"] == ""
