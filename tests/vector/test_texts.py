"""add_texts / search_text through client.embed: batching, progress, model checks, and
MiniLM retrieving the paraphrase of a query first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sipp import (
    ContextRuntimeConfig,
    EndpointRef,
    LocalModelDescriptor,
    NativeRuntimeConfig,
    SippClient,
)
from sipp.errors import BackendError, InvalidRequestError
from sipp.vector import VectorIndex

EMBED = NativeRuntimeConfig(context=ContextRuntimeConfig(embeddings=True, n_parallel=4))


@pytest.fixture(scope="module")
def _backend() -> None:
    from sipp.native import get_native

    try:
        get_native()
    except BackendError as exc:
        pytest.skip(f"no native backend: {exc}")


@pytest.fixture(scope="module")
def bert(_backend: None, tiny_bert_path: Path) -> Iterator[tuple[SippClient, EndpointRef]]:
    with SippClient() as client:
        yield client, client.add("bert", LocalModelDescriptor(tiny_bert_path, EMBED))


def test_add_texts_batches_reports_progress_and_keeps_texts(
    bert: tuple[SippClient, EndpointRef],
) -> None:
    client, ref = bert
    texts = [f"sentence number {i} about topic {i % 3}" for i in range(7)]
    progress: list[tuple[int, int]] = []
    index = VectorIndex()
    ids = index.add_texts(texts, client=client, endpoint=ref, batch_size=3,
                          metadatas=[{"topic": i % 3} for i in range(7)],
                          progress=lambda done, total: progress.append((done, total)))
    assert ids == [f"doc-{i}" for i in range(7)]
    assert progress == [(3, 7), (6, 7), (7, 7)]
    assert index.dim == 64 and index.embedding_model == "local:tiny-bert.gguf:mean"
    hit = index.search_text(texts[4], k=1)[0]  # same text, same vector
    assert (hit.id, hit.text, hit.metadata) == ("doc-4", texts[4], {"topic": 1})
    assert hit.score == pytest.approx(1.0, abs=1e-5)
    topic0 = index.search(texts[4], k=3, filter={"topic": 0})
    assert sorted(h.id for h in topic0) == ["doc-0", "doc-3", "doc-6"]


def test_vectors_of_another_model_or_dimension_are_refused(
    bert: tuple[SippClient, EndpointRef], tiny_bert_path: Path,
) -> None:
    client, ref = bert
    index = VectorIndex()
    index.add_texts(["one", "two"], client=client, endpoint=ref)
    config = NativeRuntimeConfig(context=ContextRuntimeConfig(embeddings=True, pooling="cls"))
    other = client.add("bert-cls", LocalModelDescriptor(tiny_bert_path, config))
    with pytest.raises(InvalidRequestError, match="differs from the index's"):
        index.search_text("one", client=client, endpoint=other)
    with pytest.raises(InvalidRequestError, match="differs from the index's"):
        index.add_texts(["three"], client=client, endpoint=other)
    with pytest.raises(InvalidRequestError, match="dimension 3, the index has 64"):
        index.add(["raw"], [[1.0, 2.0, 3.0]])
    assert len(index) == 2


QUERY = "How do I reset my password?"
CORPUS = (
    "What are the steps to change a forgotten password?",  # the paraphrase
    "The weather will be sunny and warm tomorrow.",
    "A man is playing a guitar on stage.",
    "Stock markets fell sharply after the announcement.",
    "Bake the bread at 220 degrees for forty minutes.",
    "My cat likes to sleep on the windowsill.",
)


def test_minilm_retrieves_the_paraphrase_first(minilm_gguf_path: Path, tmp_path: Path) -> None:
    with SippClient() as client:
        ref = client.add("minilm", LocalModelDescriptor(str(minilm_gguf_path), EMBED))
        index = VectorIndex()
        index.add_texts(list(CORPUS), client=client, endpoint=ref, batch_size=4)
        hits = index.search_text(QUERY, k=3)
        assert hits[0].text == CORPUS[0]
        assert hits[0].score > hits[1].score + 0.1
        index.save(tmp_path / "minilm.sippvec")
        again = VectorIndex.load(tmp_path / "minilm.sippvec", mmap=True)
        assert again.search_text(QUERY, k=1, client=client, endpoint=ref)[0].text == CORPUS[0]
        assert np.isclose(again.search_text(QUERY, k=1, client=client, endpoint=ref)[0].score,
                          hits[0].score)
