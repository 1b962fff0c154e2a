"""Vector search on 100k x 384-d random unit vectors: ``sipp.VectorIndex`` exact (NumPy)
and approximate (faiss HNSW, ``sipppy[vector]``) side by side with Chroma's embedded mode
(``chromadb.EphemeralClient``, its own HNSW) in the same run, on the same vectors and
queries.

Reported per side: build time (all vectors added, the graph built), query latency p50 / p99
over ``--queries`` single-vector searches (k = 10), and recall@10 against the exact result.
Random vectors are the hardest case for HNSW graphs (no cluster structure), so the
approximate rows are shown at Sipp's default ef_search (2048, recall >= 0.95 here) and at
ef_search 256; Chroma at its defaults (M 16, ef_construction 100, ef_search 100) and at
ef_search 2048.

    python benchmarks/bench_vector_index.py [--n 100000] [--dim 384] [--queries 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

from sipp.vector import VectorIndex

K = 10


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def latencies(search: Callable[[np.ndarray], list[str]], queries: np.ndarray
              ) -> tuple[list[list[str]], list[float]]:
    found, times = [], []
    for q in queries:
        started = time.perf_counter()
        found.append(search(q))
        times.append((time.perf_counter() - started) * 1e3)
    return found, times


def row(name: str, build_s: float | None, found: list[list[str]], times: list[float],
        truth: list[list[str]]) -> dict[str, Any]:
    recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))
    return {"side": name, "build_s": build_s, "p50_ms": float(np.percentile(times, 50)),
            "p99_ms": float(np.percentile(times, 99)), "recall_at_10": recall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-chroma", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(2026)
    data = unit(rng, args.n, args.dim)
    queries = unit(rng, args.queries, args.dim)
    ids = [str(i) for i in range(args.n)]
    state = c.machine_state()
    rows: list[dict[str, Any]] = []

    c.log("sipp exact: building")
    started = time.perf_counter()
    exact = VectorIndex(args.dim)
    exact.add(ids, data)
    exact_build = time.perf_counter() - started
    truth, times = latencies(lambda q: [h.id for h in exact.search(q, K)], queries)
    rows.append(row("sipp exact (NumPy)", exact_build, truth, times, truth))

    c.log("sipp approximate: building the HNSW graph")
    started = time.perf_counter()
    approx = VectorIndex(args.dim, approximate_min_size=0)
    approx.add(ids, data)
    approx_build = time.perf_counter() - started
    found, times = latencies(lambda q: [h.id for h in approx.search(q, K)], queries)
    rows.append(row(f"sipp HNSW (faiss, ef_search {approx.hnsw.ef_search})", approx_build,
                    found, times, truth))
    graph = approx._graph
    assert graph is not None
    graph._params = replace(graph._params, ef_search=256)
    found, times = latencies(lambda q: [h.id for h in approx.search(q, K)], queries)
    rows.append(row("sipp HNSW (faiss, ef_search 256)", None, found, times, truth))

    chroma: dict[str, Any] = {"status": "skipped", "reason": "--skip-chroma"}
    if not args.skip_chroma:
        try:
            import chromadb
        except ImportError as exc:
            chroma = {"status": "skipped", "reason": f"chromadb not installed: {exc}"}
        else:
            c.log(f"chroma {chromadb.__version__}: building")
            from chromadb.config import Settings

            client = chromadb.EphemeralClient(Settings(anonymized_telemetry=False))
            collection = client.create_collection(
                "bench", configuration={"hnsw": {"space": "cosine"}})
            batch = client.get_max_batch_size()
            started = time.perf_counter()
            for start in range(0, args.n, batch):
                collection.add(ids=ids[start:start + batch],
                               embeddings=data[start:start + batch])
            chroma_build = time.perf_counter() - started

            def chroma_search(q: np.ndarray) -> list[str]:
                result = collection.query(query_embeddings=[q], n_results=K, include=[])
                return list(result["ids"][0])

            found, times = latencies(chroma_search, queries)
            rows.append(row(f"chroma {chromadb.__version__} (defaults)", chroma_build, found,
                            times, truth))
            try:
                collection.modify(configuration={"hnsw": {"ef_search": 2048}})
            except Exception as exc:  # older/newer APIs: report, keep the default row
                chroma = {"status": "ok", "ef_search_change": f"not applied: {exc}"}
            else:
                found, times = latencies(chroma_search, queries)
                rows.append(row(f"chroma {chromadb.__version__} (ef_search 2048)", None, found,
                                times, truth))
                chroma = {"status": "ok"}

    report = {"benchmark": "vector_index", "n": args.n, "dim": args.dim,
              "queries": args.queries, "k": K, "machine": state, "rows": rows,
              "chroma": chroma}
    print(f"\n{args.n} x {args.dim}-d random unit vectors, {args.queries} queries, k={K}")
    print(f"{'side':44} {'build s':>9} {'p50 ms':>8} {'p99 ms':>8} {'recall@10':>10}")
    for r in rows:
        build = f"{r['build_s']:.1f}" if r["build_s"] is not None else "-"
        print(f"{r['side']:44} {build:>9} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['recall_at_10']:>10.3f}")
    print(f"load average at start: {state['loadavg']}")
    if args.json:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
