"""``LlamaModel`` on real files: text round trips, vocabulary and metadata."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sipp.native import LlamaBatch, LlamaContext, LlamaModel, SamplerChain


@pytest.fixture(scope="module")
def tiny(native: Any, tiny_llama_path: Path) -> Iterator[LlamaModel]:
    with LlamaModel(tiny_llama_path) as model:
        yield model


def test_tokenize_detokenize_round_trip(tiny: LlamaModel) -> None:
    text = "Hello world, this is a test."
    tokens = tiny.tokenize(text, add_special=False)
    assert tokens and all(0 <= t < tiny.n_vocab for t in tokens)
    assert tiny.detokenize(tokens).strip() == text
    assert b"".join(tiny.token_to_piece(t) for t in tokens).decode().strip() == text


def test_add_special_prepends_bos(tiny: LlamaModel) -> None:
    with_bos = tiny.tokenize("hi", add_special=True)
    without = tiny.tokenize("hi", add_special=False)
    if tiny.add_bos:
        assert with_bos == [tiny.bos, *without]
    else:
        assert with_bos == without


def test_long_text_grows_the_token_buffer(tiny: LlamaModel) -> None:
    text = "a b c d e f g " * 500
    tokens = tiny.tokenize(text, add_special=False)
    assert len(tokens) > 1000
    assert tiny.detokenize(tokens).strip() == text.strip()


def test_vocab_and_shape(tiny: LlamaModel) -> None:
    assert tiny.n_vocab > 0
    assert tiny.architecture == "llama"
    assert tiny.n_embd > 0 and tiny.n_embd_out == tiny.n_embd
    assert tiny.n_ctx_train > 0
    assert tiny.has_decoder and not tiny.has_encoder
    assert not tiny.is_recurrent and not tiny.is_hybrid
    assert tiny.decoder_start_token is None
    assert tiny.eos is not None and tiny.is_eog(tiny.eos)
    assert tiny.eos in tiny.eog_tokens()
    assert tiny.size > 0 and tiny.n_params > 0
    assert tiny.description


def test_metadata_and_chat_template(tiny: LlamaModel) -> None:
    meta = tiny.metadata
    assert meta["general.architecture"] == "llama"
    assert tiny.meta("general.architecture") == "llama"
    assert tiny.meta("no.such.key") is None
    template = tiny.chat_template()
    assert template is not None and "message" in template


def test_model_without_template(native: Any, tiny_llama_no_template_path: Path) -> None:
    with LlamaModel(tiny_llama_no_template_path) as model:
        assert model.chat_template() is None


def test_token_to_piece_rejects_out_of_range(tiny: LlamaModel) -> None:
    with pytest.raises(ValueError, match="token must be in"):
        tiny.token_to_piece(tiny.n_vocab)
    with pytest.raises(ValueError, match="tokens must be in"):
        tiny.detokenize([-1])


def test_bad_parameters_name_the_field(native: Any, tiny_llama_path: Path) -> None:
    with pytest.raises(ValueError, match="split_mode must be one of"):
        LlamaModel(tiny_llama_path, split_mode="diagonal")
    with pytest.raises(ValueError, match="n_gpu_layers must be an int"):
        LlamaModel(tiny_llama_path, n_gpu_layers="all")  # type: ignore[arg-type]


def _decode_prompt(model: LlamaModel, text: str) -> np.ndarray:
    tokens = model.tokenize(text, add_special=True)
    with LlamaContext(model, n_ctx=256, n_batch=64) as ctx:
        batch = LlamaBatch(64)
        batch.set(np.array(tokens), np.arange(len(tokens)), 0)
        ctx.decode(batch)
        return ctx.logits_ith(-1, copy=True)


def test_one_decode_gives_finite_logits(tiny: LlamaModel) -> None:
    logits = _decode_prompt(tiny, "Once upon a time")
    assert logits.shape == (tiny.n_vocab,)
    assert np.isfinite(logits).all()


def test_kv_cache_continuation_matches_full_prefill(tiny: LlamaModel) -> None:
    tokens = tiny.tokenize("Once upon a time there was", add_special=True)
    full = _decode_prompt_tokens(tiny, tokens)
    assert np.allclose(_incremental_logits(tiny, tokens), full, atol=1e-3)


@pytest.mark.gemma
def test_gemma_round_trip_and_decode(native: Any, gemma_path: Path) -> None:
    with LlamaModel(gemma_path) as model:
        assert model.architecture == "gemma3"
        assert model.n_vocab == 262144
        assert model.n_swa > 0
        text = "The capital of France is"
        assert model.detokenize(model.tokenize(text, add_special=False)) == text
        chat = model.tokenize("<start_of_turn>user\nhi<end_of_turn>", True, parse_special=True)
        assert model.tokenize("<start_of_turn>", False, parse_special=True)[0] in chat
        logits = _decode_prompt(model, text)
        assert np.isfinite(logits).all()
        prompt = (
            "<start_of_turn>user\nWhat is the capital of France? Answer in one word."
            "<end_of_turn>\n<start_of_turn>model\n"
        )
        first = _greedy(model, prompt, 6)
        assert first and first == _greedy(model, prompt, 6)  # greedy is deterministic
        tokens = model.tokenize(prompt, add_special=True, parse_special=True)
        # quantized weights: one-token and batched matmuls round differently, so compare shape
        step, full = _incremental_logits(model, tokens), _decode_prompt_tokens(model, tokens)
        assert int(step.argmax()) == int(full.argmax())
        assert np.corrcoef(step, full)[0, 1] > 0.99


def _decode_prompt_tokens(model: LlamaModel, tokens: list[int]) -> np.ndarray:
    with LlamaContext(model, n_ctx=256, n_batch=128) as ctx:
        batch = LlamaBatch(128)
        batch.set(np.array(tokens), np.arange(len(tokens)), 0)
        ctx.decode(batch)
        return ctx.logits_ith(-1, copy=True)


def _incremental_logits(model: LlamaModel, tokens: list[int]) -> np.ndarray:
    """Prefill all but the last token, then decode the last one alone (uses the KV cache)."""
    with LlamaContext(model, n_ctx=256, n_batch=128) as ctx:
        batch = LlamaBatch(128)
        batch.set(np.array(tokens[:-1]), np.arange(len(tokens) - 1), 0)
        ctx.decode(batch)
        batch.set(np.array(tokens[-1:]), np.array([len(tokens) - 1]), 0)
        ctx.decode(batch)
        return ctx.logits_ith(-1, copy=True)


def _greedy(model: LlamaModel, prompt: str, n: int) -> str:
    tokens = model.tokenize(prompt, add_special=True, parse_special=True)
    out: list[int] = []
    with (
        LlamaContext(model, n_ctx=256, n_batch=128) as ctx,
        SamplerChain(model, [("greedy", {})]) as chain,
    ):
        batch = LlamaBatch(128)
        batch.set(np.array(tokens), np.arange(len(tokens)), 0)
        for step in range(n):
            ctx.decode(batch)
            token = chain.sample(ctx, -1)
            if model.is_eog(token):
                break
            out.append(token)
            batch.set(np.array([token]), np.array([len(tokens) + step]), 0)
    return model.detokenize(out)
