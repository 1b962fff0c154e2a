"""The HNSW mode (faiss-cpu, extra ``sipppy[vector]``): recall against exact search,
filters and deletions inside the graph, persistence of the graph."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from sipp.vector import HnswParams, VectorIndex

pytest.importorskip("faiss", reason="needs the sipppy[vector] extra (faiss-cpu)")


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _recall(index: VectorIndex, queries: np.ndarray, k: int = 10) -> float:
    found = 0
    for q in queries:
        approx = {h.id for h in index.search(q, k)}
        exact = {h.id for h in index.search(q, k, exact=True)}
        found += len(approx & exact)
    return found / (k * len(queries))


def test_recall_at_10_on_random_384d_vectors() -> None:
    rng = np.random.default_rng(5)
    data = _unit(rng, 2500, 384)
    index = VectorIndex(384, approximate_min_size=1000)
    index.add([str(i) for i in range(len(data))], data)
    assert index._graph is not None and index._graph.size == 2500
    assert _recall(index, _unit(rng, 50, 384)) >= 0.95


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the graph build takes minutes on 2 busy cores
def test_recall_at_10_on_100k_random_384d_vectors() -> None:
    rng = np.random.default_rng(6)
    data = _unit(rng, 100_000, 384)
    index = VectorIndex(384, approximate_min_size=50_000)
    started = time.perf_counter()
    for start in range(0, len(data), 25_000):
        index.add([str(i) for i in range(start, start + 25_000)], data[start:start + 25_000])
    print(f"build {time.perf_counter() - started:.1f} s")
    assert index._graph is not None and index._graph.size == 100_000
    recall = _recall(index, _unit(rng, 100, 384))
    print(f"recall@10 {recall:.4f}")
    assert recall >= 0.95


def test_small_index_stays_exact_until_the_threshold() -> None:
    rng = np.random.default_rng(2)
    index = VectorIndex(16, approximate_min_size=100)
    index.add([str(i) for i in range(99)], rng.standard_normal((99, 16)))
    assert index._graph is None
    index.add(["99"], rng.standard_normal((1, 16)))
    assert index._graph is not None


def test_filters_and_deletions_apply_inside_the_graph() -> None:
    rng = np.random.default_rng(8)
    data = _unit(rng, 3000, 32)
    index = VectorIndex(32, "dot", approximate_min_size=0, hnsw=HnswParams(m=16))
    index.add([str(i) for i in range(3000)], data,
              [{"even": i % 2 == 0} for i in range(3000)])
    index.delete([str(i) for i in range(0, 3000, 4)])
    q = data[10]
    hits = index.search(q, k=10, filter={"even": True})
    assert len(hits) == 10
    assert all(int(h.id) % 2 == 0 and int(h.id) % 4 != 0 for h in hits)
    assert hits[0].id == "10"
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    index.upsert(["10"], [-q])
    assert index.search(q, k=1)[0].id != "10"


def test_graph_is_saved_and_loaded(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    data = _unit(rng, 1500, 64)
    index = VectorIndex(64, approximate_min_size=500, hnsw=HnswParams(m=16))
    index.add([str(i) for i in range(1500)], data)
    index.save(tmp_path / "g.sippvec")
    loaded = VectorIndex.load(tmp_path / "g.sippvec", mmap=True)
    assert loaded._graph is not None and loaded._graph.size == 1500
    for q in _unit(rng, 5, 64):
        assert loaded.search(q, k=10) == index.search(q, k=10)
