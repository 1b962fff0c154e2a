"""Every generated tiny model loads and runs in the pinned llama.cpp (through sipp.native)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from build_scripts import make_test_models as mtm

PROMPT = "Once upon a time, in a small village by the sea, there lived"


@pytest.fixture(scope="module")
def load(native: ModuleType, test_models: dict[str, Path]) -> Iterator[Any]:
    opened: list[Any] = []

    def open_model(name: str) -> Any:
        model = native.LlamaModel(test_models[name])
        opened.append(model)
        return model

    yield open_model
    for model in opened:
        model.close()


def _greedy(native: ModuleType, ctx: Any, prompt: list[int], n: int) -> list[int]:
    """Decode ``prompt`` then ``n`` greedy tokens; returns the generated ids."""
    batch = native.LlamaBatch(len(prompt))
    batch.set(prompt, list(range(len(prompt))), 0)
    ctx.decode(batch)
    pos = len(prompt)
    out: list[int] = []
    for _ in range(n):
        token = int(np.argmax(ctx.logits_ith(-1)))
        out.append(token)
        batch.set([token], [pos], 0)
        ctx.decode(batch)
        pos += 1
    return out


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-llama-notemplate", "tiny-gemma3"])
def test_decoder_models_generate_varied_tokens(native: ModuleType, load: Any, name: str) -> None:
    model = load(name)
    assert model.n_vocab == 32000
    ctx = native.LlamaContext(model, n_ctx=256, n_batch=64, n_threads=1, n_threads_batch=1)
    try:
        prompt = model.tokenize(PROMPT, add_special=True)
        assert prompt[0] == model.bos == 1
        tokens = _greedy(native, ctx, prompt, 40)
    finally:
        ctx.close()
    # random weights, but greedy decoding must not collapse onto a few tokens
    assert len(set(tokens)) >= 20, tokens


def test_generation_is_deterministic(native: ModuleType, load: Any) -> None:
    model = load("tiny-llama")
    runs = []
    for _ in range(2):
        ctx = native.LlamaContext(model, n_ctx=128, n_batch=64, n_threads=1, n_threads_batch=1)
        runs.append(_greedy(native, ctx, model.tokenize(PROMPT, add_special=True), 12))
        ctx.close()
    assert runs[0] == runs[1]


def test_llama_chat_template_is_exposed(load: Any) -> None:
    assert load("tiny-llama").chat_template() == mtm.LLAMA_CHAT_TEMPLATE
    assert load("tiny-llama-notemplate").chat_template() is None


def test_gemma3_runs_past_its_sliding_window(native: ModuleType, load: Any) -> None:
    model = load("tiny-gemma3")
    assert model.architecture == "gemma3"
    assert model.n_swa == mtm.GEMMA3_SLIDING_WINDOW
    ctx = native.LlamaContext(model, n_ctx=256, n_batch=64, n_threads=1, n_threads_batch=1)
    try:
        prompt = model.tokenize(PROMPT * 3, add_special=True)
        assert len(prompt) > mtm.GEMMA3_SLIDING_WINDOW
        tokens = _greedy(native, ctx, prompt, 2 * mtm.GEMMA3_SLIDING_WINDOW)
    finally:
        ctx.close()
    assert len(set(tokens)) >= 20


def test_t5_encodes_then_decodes_from_its_start_token(native: ModuleType, load: Any) -> None:
    model = load("tiny-t5")
    assert model.architecture == "t5"
    assert model.has_encoder and model.has_decoder
    assert model.decoder_start_token == mtm.T5_DECODER_START_TOKEN_ID
    ctx = native.LlamaContext(model, n_ctx=128, n_batch=64, n_threads=1, n_threads_batch=1)
    try:
        prompt = model.tokenize(PROMPT, add_special=True)
        batch = native.LlamaBatch(len(prompt))
        batch.set(prompt, list(range(len(prompt))), 0)
        ctx.encode(batch)
        tokens = _greedy(native, ctx, [model.decoder_start_token], 16)
    finally:
        ctx.close()
    assert len(set(tokens)) >= 8, tokens


def _embed(native: ModuleType, model: Any, text: str, pooling: str) -> tuple[list[int], Any]:
    ctx = native.LlamaContext(model, embeddings=True, n_ctx=128, n_batch=128, n_ubatch=128,
                              pooling_type=pooling, n_threads=1, n_threads_batch=1)
    try:
        ids = model.tokenize(text, add_special=True)
        batch = native.LlamaBatch(len(ids))
        batch.set(ids, list(range(len(ids))), 0, [True] * len(ids))
        ctx.encode(batch)
        if pooling == "none":
            return ids, np.stack([ctx.embeddings_ith(i) for i in range(len(ids))])
        return ids, ctx.embeddings_seq(0)
    finally:
        ctx.close()


def test_bert_mean_pooling_averages_token_embeddings(native: ModuleType, load: Any) -> None:
    model = load("tiny-bert")
    assert model.architecture == "bert"
    assert model.pooling_type == "mean"
    ids, pooled = _embed(native, model, "Hello world, this is a test.", "mean")
    assert ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP]
    _, per_token = _embed(native, model, "Hello world, this is a test.", "none")
    assert pooled.shape == (mtm.N_EMBD,)
    np.testing.assert_allclose(pooled, per_token.mean(axis=0), rtol=1e-4, atol=1e-5)
    _, other = _embed(native, model, "Something else entirely", "mean")
    assert not np.allclose(pooled, other)


def test_qwen2vl_projector_loads_on_tiny_llama_with_dynamic_sizes(
    native: ModuleType, load: Any, test_models: dict[str, Path]
) -> None:
    from sipp.native.mtmd import Bitmap, MtmdContext

    model = load("tiny-llama")
    with MtmdContext(model, test_models["tiny-qwen2vl-mmproj"], use_gpu=False) as mtmd:
        assert mtmd.supports_vision
        assert not mtmd.uses_mrope  # llama's plain RoPE: ordinary image positions
        assert mtmd.n_embd == mtm.N_EMBD
        side = mtm.QWEN2VL_PATCH_SIZE * mtm.QWEN2VL_MERGE
        for height, width in ((512, 512), (256, 512), (128, 96)):
            rgb = np.full((height, width, 3), 128, dtype=np.uint8).tobytes()
            bitmap = Bitmap(width, height, rgb)
            chunks = mtmd.tokenize(f"look {mtmd.marker} here", [bitmap])
            try:
                (image,) = [info for info in chunks.infos() if info.kind == "image"]
                assert image.n_tokens == image.n_pos == (height // side) * (width // side)
                embd = mtmd.encode(chunks, image.index)
            finally:
                chunks.close()
                bitmap.close()
            assert embd.shape == (image.n_tokens, mtm.N_EMBD)
            assert np.isfinite(embd).all() and embd.std() > 0
