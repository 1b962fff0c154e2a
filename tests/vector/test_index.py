"""Exact search equals a brute-force NumPy reference; writes, ids and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from sipp.errors import ConfigurationError, InvalidRequestError
from sipp.vector import VectorIndex


def _reference(
    data: np.ndarray, q: np.ndarray, metric: str, k: int
) -> tuple[list[int], list[float]]:
    d64, q64 = data.astype(np.float64), q.astype(np.float64)
    if metric == "dot":
        scores = d64 @ q64
        order = np.argsort(-scores)
    elif metric == "cosine":
        scores = (d64 @ q64) / (np.linalg.norm(d64, axis=1) * np.linalg.norm(q64))
        order = np.argsort(-scores)
    else:
        scores = np.linalg.norm(d64 - q64, axis=1)
        order = np.argsort(scores)
    top = order[:k]
    return top.tolist(), scores[top].tolist()


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_exact_search_equals_brute_force(metric: str) -> None:
    rng = np.random.default_rng(7)
    data = rng.standard_normal((3000, 48)).astype(np.float32)
    index = VectorIndex(48, metric)  # type: ignore[arg-type]
    index.add([f"v{i}" for i in range(len(data))], data)
    for q in rng.standard_normal((20, 48)).astype(np.float32):
        hits = index.search(q, k=10)
        rows, scores = _reference(data, q, metric, 10)
        assert [h.id for h in hits] == [f"v{r}" for r in rows]
        np.testing.assert_allclose([h.score for h in hits], scores, rtol=1e-4, atol=1e-4)


def test_upsert_replaces_and_delete_removes() -> None:
    index = VectorIndex(3)
    index.add(["a", "b"], [[1, 0, 0], [0, 1, 0]], metadatas=[{"n": 1}, {"n": 2}])
    with pytest.raises(InvalidRequestError, match="'a' is already in the index"):
        index.add(["a"], [[0, 0, 1]])
    index.upsert(["a"], [[0, 0, 1]], metadatas=[{"n": 3}], texts=["third"])
    assert len(index) == 2
    [hit] = index.search([0, 0, 1], k=1)
    assert (hit.id, hit.metadata, hit.text) == ("a", {"n": 3}, "third")
    assert hit.score == pytest.approx(1.0)
    assert index.delete(["a", "missing"]) == 1
    assert [h.id for h in index.search([0, 0, 1], k=5)] == ["b"]
    assert "a" not in index and index.ids() == ["b"]


def test_many_deletes_compact_and_keep_results() -> None:
    rng = np.random.default_rng(1)
    data = rng.standard_normal((5000, 16)).astype(np.float32)
    index = VectorIndex(16, "l2")
    ids = [str(i) for i in range(5000)]
    index.add(ids, data)
    index.delete(ids[:4000])
    assert len(index) == 1000
    q = data[4321]
    assert index.search(q, k=1)[0].id == "4321"
    rows, _ = _reference(data[4000:], q, "l2", 5)
    assert [h.id for h in index.search(q, k=5)] == [str(4000 + r) for r in rows]


def test_dimension_is_taken_from_the_first_add() -> None:
    index = VectorIndex()
    index.add(["x"], [[1.0, 2.0]])
    assert index.dim == 2
    with pytest.raises(InvalidRequestError, match="dimension 3, the index has 2"):
        index.add(["y"], [[1.0, 2.0, 3.0]])
    with pytest.raises(InvalidRequestError, match="query has dimension 3"):
        index.search([1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ix: ix.add(["a", "a"], [[1, 0], [0, 1]]), r"ids\[1\]: 'a' appears twice"),
        (lambda ix: ix.add([""], [[1, 0]]), r"ids\[0\] must be a non-empty string"),
        (lambda ix: ix.add(["a"], [[np.nan, 0]]), r"vectors\[0\] contains NaN"),
        (lambda ix: ix.add(["a", "b"], [[1, 0]]), r"vectors must be a \(2, dim\) array"),
        (lambda ix: ix.add(["a"], [[1, 0]], metadatas=[{"x": object()}]),
         r"metadatas\[0\] must hold only JSON values"),
        (lambda ix: ix.add(["a"], [[1, 0]], metadatas=[{}, {}]), "metadatas has 2 entries"),
        (lambda ix: ix.search([1, 0], k=0), "k must be a positive int"),
        (lambda ix: ix.search("text"), "needs client= and endpoint="),
    ],
)
def test_bad_input_names_the_field(call: object, message: str) -> None:
    index = VectorIndex(2)
    with pytest.raises(InvalidRequestError, match=message):
        call(index)  # type: ignore[operator]


def test_bad_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="metric must be one of"):
        VectorIndex(4, "manhattan")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="dim must be a positive int"):
        VectorIndex(0)


def test_embedding_model_mismatch_is_refused() -> None:
    index = VectorIndex(2, embedding_model="local:minilm.gguf:mean")
    index.add(["a"], [[1, 0]], model="local:minilm.gguf:mean")
    with pytest.raises(InvalidRequestError, match="embedding model 'other' cannot join"):
        index.add(["b"], [[0, 1]], model="other")
