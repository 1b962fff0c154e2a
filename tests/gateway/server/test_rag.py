"""RAG interception on a real gateway: a collection of small documents embedded with
MiniLM, passages injected into the system message before the provider target answers,
their ids in ``x-sipp-rag-sources``; ``sipp-gateway index`` builds the file a gateway
loads, and a changed source is re-indexed while serving goes on."""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sipp.client import SippClient
from sipp.gateway.server.cache_config import ChunkingConfig
from sipp.gateway.server.cli import main
from sipp.gateway.server.rag import chunk_text, read_documents
from tests.gateway.server.conftest import BASE_CONFIG, ENV, RunningGateway, auth
from tests.gateway.server.upstream import MockOpenAI

DOCS = {
    "returns.md": "Returns are accepted within 30 days of delivery. Items must be unused "
                  "and in their original packaging to get a refund.",
    "shipping.md": "Orders ship from our warehouse within two business days. Standard "
                   "delivery takes three to five days; express delivery takes one day.",
    "payment.md": "We accept Visa, Mastercard and American Express credit cards, and "
                  "PayPal. Cards are charged when the order ships.",
    "warranty.md": "Every laptop comes with a two-year warranty covering manufacturing "
                   "defects. Accidental damage is not covered.",
}
QUESTIONS = {
    "How many days do I have to send an item back for a refund?": "returns.md#0",
    "How long does delivery take?": "shipping.md#0",
    "Which credit cards can I pay with?": "payment.md#0",
}


@pytest.fixture
def upstream() -> Iterator[MockOpenAI]:
    server = MockOpenAI()
    yield server
    server.stop()


def rag_config(minilm: Path, upstream: MockOpenAI, tmp: Path) -> dict[str, Any]:
    docs = tmp / "docs"
    docs.mkdir(exist_ok=True)
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    config = copy.deepcopy(BASE_CONFIG)
    config["max_request_bytes"] = 65536
    config["tokens"] = [{"env": "TOKEN_ALL", "caller": "all", "targets": []}]
    config["targets"] = [
        {"name": "minilm", "type": "local", "model": str(minilm), "backend": "cpu",
         "runtime": {"context": {"embeddings": True, "n_parallel": 2}}},
        {"name": "support", "type": "openai", "model": "m-support", "api_key_env": "KEY_A",
         "base_url": upstream.url,
         "rag": {"collection": "kb", "top_k": 1, "min_score": 0.3, "inject": "system"}},
    ]
    config["collections"] = [{"name": "kb", "embedding_target": "minilm",
                              "source": str(docs), "index_path": str(tmp / "kb.sippvec")}]
    return config


def toml(config: dict[str, Any]) -> str:
    """The config as TOML (JSON strings, numbers and booleans are TOML values)."""
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    lines = [f"{k} = {value(v)}" for k, v in config.items()
             if not (isinstance(v, list) and v and isinstance(v[0], dict))]
    for key, items in config.items():
        if isinstance(items, list) and items and isinstance(items[0], dict):
            for item in items:
                lines += [f"[[{key}]]", *(f"{k} = {value(v)}" for k, v in item.items())]
    return "\n".join(lines) + "\n"


def wait_ready(gw: RunningGateway, chunks: int | None = None) -> None:
    collection = gw.server.state.rag.collections["kb"]
    deadline = time.monotonic() + 30
    while collection.status != "ready" or (chunks is not None and
                                           len(collection.index or ()) != chunks):
        assert time.monotonic() < deadline, collection.snapshot()
        time.sleep(0.05)


def ask(gw: RunningGateway, question: str) -> requests.Response:
    return requests.post(f"{gw.url}/v1/chat/completions", headers=auth(), timeout=30, json={
        "model": "support", "messages": [{"role": "user", "content": question}]})


def test_rag_injects_the_expected_passages_and_reports_their_ids(
        minilm_gguf_path: Path, upstream: MockOpenAI, tmp_path: Path) -> None:
    gw = RunningGateway(rag_config(minilm_gguf_path, upstream, tmp_path), ENV, SippClient())
    try:
        wait_ready(gw)  # no index file yet: built in the background at start
        for question, source in QUESTIONS.items():
            response = ask(gw, question)
            assert response.status_code == 200
            assert response.headers["x-sipp-rag-sources"] == source
            sent = upstream.seen[-1][2]["messages"]
            assert sent[0]["role"] == "system"
            assert f'<document id="{source}">' in sent[0]["content"]
            assert DOCS[source.split("#")[0]] in sent[0]["content"]
            assert sent[-1] == {"role": "user", "content": question}
        assert (tmp_path / "kb.sippvec").is_file()
        metrics = requests.get(f"{gw.management_url}/metrics", timeout=10).text
        assert 'sipp_gateway_rag_chunks{collection="kb"} 4' in metrics
        assert 'sipp_gateway_rag_searches_total{collection="kb"} 3' in metrics
    finally:
        gw.stop()


def test_index_command_builds_the_file_serving_loads_and_changes_reindex(
        minilm_gguf_path: Path, upstream: MockOpenAI, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = rag_config(minilm_gguf_path, upstream, tmp_path)
    path = tmp_path / "gateway.toml"
    path.write_text(toml(config), encoding="utf-8")
    assert main(["index", "--config", str(path), "--collection", "kb"]) == 0
    assert "indexed collection kb: 4 chunks" in capsys.readouterr().out
    assert main(["index", "--config", str(path), "--collection", "nope"]) == 2
    assert "no collection named 'nope'" in capsys.readouterr().err
    built = (tmp_path / "kb.sippvec").stat().st_mtime_ns

    gw = RunningGateway(config, ENV, SippClient())
    try:
        wait_ready(gw)
        assert (tmp_path / "kb.sippvec").stat().st_mtime_ns == built  # loaded, not rebuilt
        # a new document is indexed in the background; requests are served meanwhile
        new = tmp_path / "docs" / "hours.md"
        new.write_text("Our support line is open from 9am to 5pm, Monday to Friday.",
                       encoding="utf-8")
        os.utime(new)
        assert ask(gw, "How long does delivery take?").status_code == 200
        wait_ready(gw, chunks=5)
        assert ask(gw, "When is support open?").headers["x-sipp-rag-sources"] == "hours.md#0"
    finally:
        gw.stop()


def test_chunking_and_jsonl_sources(tmp_path: Path) -> None:
    rule = ChunkingConfig(max_chars=40, overlap=10)
    text = "First short paragraph.\n\nSecond one.\n\n" + "x" * 70
    chunks = chunk_text(text, rule)
    assert chunks[0] == "First short paragraph.\n\nSecond one."
    assert all(len(c) <= 40 for c in chunks)
    assert chunks[1] == "x" * 40 and chunks[2] == "x" * 40  # 30-step windows over 70 chars
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"id": "a", "text": "alpha"}\n\n{"id": "b", "text": "beta"}\n',
                     encoding="utf-8")
    assert read_documents(jsonl) == [("a", "alpha"), ("b", "beta")]
    jsonl.write_text('{"id": "a", "text": "alpha"}\n{"id": "a", "text": "again"}\n',
                     encoding="utf-8")
    with pytest.raises(Exception, match=r"docs\.jsonl:2: duplicate document id 'a'"):
        read_documents(jsonl)
