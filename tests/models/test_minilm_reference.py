"""all-MiniLM-L6-v2 through llama.cpp (our converted GGUF) matches a NumPy forward pass.

Token ids come from llama.cpp's own WordPiece tokenizer and feed both sides, so the
comparison isolates the converted weights and the forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.reference.minilm_numpy import MiniLMWeights, cosine, embed, load_weights

SENTENCES = (
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Sipp runs GGUF models in-process through llama.cpp.",
    "Unbelievably, naïve café-owners re-tokenize ##things!",
    "Embeddings: 384 dimensions, mean pooling, then L2 normalisation.",
    " ".join(["A longer passage that repeats itself to span many positions."] * 6),
)


@pytest.fixture(scope="module")
def reference(minilm_model_dir: Path) -> MiniLMWeights:
    return load_weights(minilm_model_dir)


@pytest.fixture(scope="module")
def model(native: ModuleType, minilm_gguf_path: Path) -> Iterator[Any]:
    loaded = native.LlamaModel(minilm_gguf_path)
    yield loaded
    loaded.close()


# Mean pooling in the pinned llama.cpp aborts the process (GGML_ASSERT ggml_can_mul_mat while
# reserving the worst-case graph) unless n_ubatch is a multiple of n_seq_max: 512 / 8 is.
N_SEQ_MAX = 8


@pytest.fixture()
def context(native: ModuleType, model: Any) -> Iterator[Any]:
    ctx = native.LlamaContext(model, embeddings=True, n_ctx=512, n_batch=512, n_ubatch=512,
                              n_seq_max=N_SEQ_MAX, pooling_type="mean")
    yield ctx
    ctx.close()


def test_converted_model_reports_bert_with_mean_pooling(model: Any) -> None:
    assert model.architecture == "bert"
    assert model.pooling_type == "mean"
    assert model.n_embd == 384


def test_wordpiece_tokenizer_gives_bert_uncased_ids(model: Any) -> None:
    assert model.tokenize("Hello world", add_special=True) == [101, 7592, 2088, 102]
    # lower-cased and accents stripped, like BertTokenizer(do_lower_case=True)
    assert model.tokenize("Café NAÏVE", add_special=False) == [7668, 15743]


@pytest.mark.parametrize("sentence", SENTENCES)
def test_one_sequence_matches_numpy(
    native: ModuleType, model: Any, context: Any, reference: MiniLMWeights, sentence: str
) -> None:
    ids = model.tokenize(sentence, add_special=True)
    batch = native.LlamaBatch(len(ids))
    batch.set(ids, list(range(len(ids))), 0, [True] * len(ids))
    context.encode(batch)
    got = context.embeddings_seq(0)
    want = embed(reference, ids, normalize=False)
    assert got.shape == (384,)
    assert cosine(got, want) >= 0.999
    assert np.max(np.abs(got - want)) < 1e-2


def test_many_sequences_in_one_batch_match_numpy(
    native: ModuleType, model: Any, context: Any, reference: MiniLMWeights
) -> None:
    token_lists = [model.tokenize(s, add_special=True) for s in SENTENCES]
    total = sum(len(ids) for ids in token_lists)
    batch = native.LlamaBatch(total, n_seq_max=1)
    for seq, ids in enumerate(token_lists):
        for pos, token in enumerate(ids):
            batch.add(token, pos, seq, logits=True)
    context.encode(batch)
    vectors = [context.embeddings_seq(seq) for seq in range(len(SENTENCES))]
    for seq, ids in enumerate(token_lists):
        assert cosine(vectors[seq], embed(reference, ids, normalize=False)) >= 0.999, seq
    # different sentences stay apart: no sequence leaked into another's pooling
    assert cosine(vectors[0], vectors[1]) < 0.9
