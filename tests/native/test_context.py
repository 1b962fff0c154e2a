"""``LlamaContext``, ``LlamaBatch`` and ``SamplerChain`` behaviour on the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sipp.errors import GrammarError, KvCacheFullError
from sipp.native import InvalidBatchError, LlamaBatch, LlamaContext, LlamaModel, SamplerChain


@pytest.fixture(scope="module")
def model(native: Any, tiny_llama_path: Path) -> Iterator[LlamaModel]:
    with LlamaModel(tiny_llama_path) as m:
        yield m


@pytest.fixture
def ctx(model: LlamaModel) -> Iterator[LlamaContext]:
    with LlamaContext(model, n_ctx=256, n_batch=64, n_seq_max=4, kv_unified=True) as c:
        yield c


def _prompt(model: LlamaModel) -> np.ndarray:
    return np.array(model.tokenize("The quick brown fox jumps", add_special=True))


def test_context_reports_its_sizes(ctx: LlamaContext) -> None:
    assert ctx.n_ctx >= 256 and ctx.n_batch == 64 and ctx.n_seq_max == 4
    ctx.set_n_threads(1, 2)
    assert ctx.n_threads == (1, 2)


def test_bad_context_parameters_name_the_field(model: LlamaModel) -> None:
    with pytest.raises(ValueError, match="n_ctx must be an int >= 0"):
        LlamaContext(model, n_ctx=-1)
    with pytest.raises(ValueError, match="flash_attn must be one of"):
        LlamaContext(model, flash_attn="maybe")
    with pytest.raises(TypeError, match="unknown context parameter 'n_cxt'"):
        LlamaContext(model, n_cxt=5)


def test_batch_set_fills_all_arrays_in_bulk(native: Any) -> None:
    batch = LlamaBatch(8, n_seq_max=2)
    batch.set(np.array([5, 6, 7]), np.array([0, 1, 2]), np.array([0, 1, 1]))
    assert batch.n_tokens == 3
    assert batch.tokens[:3].tolist() == [5, 6, 7]
    assert batch.seq_ids[:3, 0].tolist() == [0, 1, 1]
    assert batch.n_seq_id[:3].tolist() == [1, 1, 1]
    assert batch.logits[:3].tolist() == [0, 0, 1]
    s = batch.struct
    assert s.seq_id[2][0] == 1 and s.token[1] == 6 and s.logits[2] == 1
    assert batch.add(9, 3, [0, 1], logits=True) == 3
    assert s.n_seq_id[3] == 2 and s.seq_id[3][1] == 1
    with pytest.raises(ValueError, match="pos must have shape"):
        batch.set([1, 2], [0], 0)
    with pytest.raises(ValueError, match="at most 8 entries"):
        batch.set(np.zeros(9, dtype=np.int32), np.arange(9), 0)
    with pytest.raises(ValueError, match="n_tokens must be in"):
        batch.n_tokens = 9


def test_two_sequences_in_one_batch(model: LlamaModel, ctx: LlamaContext) -> None:
    tokens = _prompt(model)
    n = len(tokens)
    batch = LlamaBatch(64)
    both = np.concatenate([tokens, tokens])
    flags = np.zeros(2 * n, dtype=np.int8)
    flags[[n - 1, 2 * n - 1]] = 1
    batch.set(both, np.concatenate([np.arange(n)] * 2), np.repeat([0, 1], n), flags)
    ctx.decode(batch)
    a, b = ctx.logits_ith(n - 1, copy=True), ctx.logits_ith(2 * n - 1, copy=True)
    assert np.allclose(a, b, atol=1e-4)
    assert ctx.seq_pos_max(0) == n - 1 and ctx.seq_pos_max(1) == n - 1
    with pytest.raises(IndexError, match="no logits for batch entry 0"):
        ctx.logits_ith(0)


def test_memory_ops_and_state_round_trip(model: LlamaModel, ctx: LlamaContext) -> None:
    tokens = _prompt(model)
    batch = LlamaBatch(64)
    batch.set(tokens, np.arange(len(tokens)), 0)
    ctx.decode(batch)
    ctx.seq_cp(0, 2)
    assert ctx.seq_pos_max(2) == len(tokens) - 1
    state = ctx.seq_state_get(0)
    assert len(state) > 0
    assert ctx.seq_rm(0)
    assert ctx.seq_pos_max(0) == -1
    ctx.seq_state_set(state, 3)
    assert ctx.seq_pos_max(3) == len(tokens) - 1
    ctx.memory_clear()
    assert ctx.seq_pos_max(3) == -1
    with pytest.raises(ValueError, match="non-empty bytes"):
        ctx.seq_state_set(b"", 0)


def test_kv_cache_full_is_a_recoverable_error(model: LlamaModel) -> None:
    with LlamaContext(model, n_ctx=64, n_batch=64, n_ubatch=64) as small:
        batch = LlamaBatch(64)
        pos = 0
        while pos < small.n_ctx:  # fill every cell
            batch.set(np.full(64, 5), np.arange(pos, pos + 64), 0)
            small.decode(batch)
            pos += 64
        batch.set(np.full(64, 5), np.arange(pos, pos + 64), 0)
        with pytest.raises(KvCacheFullError) as info:
            small.decode(batch)
        assert info.value.code == "kv_cache_full"
        assert small.seq_pos_max(0) == pos - 1  # the failed batch left nothing behind
        small.seq_rm(0)
        batch.set(np.full(64, 5), np.arange(64), 0)
        small.decode(batch)  # usable again after freeing


def test_invalid_token_is_an_invalid_batch(model: LlamaModel, ctx: LlamaContext) -> None:
    batch = LlamaBatch(4)
    batch.set(np.array([model.n_vocab + 10]), np.array([0]), 0)
    with pytest.raises(InvalidBatchError, match="invalid batch"):
        ctx.decode(batch)


def test_greedy_sampler_picks_the_argmax(model: LlamaModel, ctx: LlamaContext) -> None:
    tokens = _prompt(model)
    batch = LlamaBatch(64)
    batch.set(tokens, np.arange(len(tokens)), 0)
    ctx.decode(batch)
    logits = ctx.logits_ith(-1, copy=True)
    with SamplerChain(model, [("greedy", {})]) as chain:
        assert chain.sample(ctx, -1) == int(logits.argmax())


def test_seeded_chain_is_reproducible(model: LlamaModel, ctx: LlamaContext) -> None:
    tokens = _prompt(model)
    batch = LlamaBatch(64)
    batch.set(tokens, np.arange(len(tokens)), 0)
    ctx.decode(batch)
    stages = [
        ("penalties", {"last_n": 16, "repeat": 1.1}),
        ("top_k", {"k": 20}),
        ("top_p", {"p": 0.9}),
        ("temp", {"t": 1.5}),
        ("dist", {"seed": 7}),
    ]
    picks = []
    for _ in range(2):
        with SamplerChain(model, stages) as chain:
            picks.append([chain.sample(ctx, -1) for _ in range(5)])
            assert chain.seed == 7
    assert picks[0] == picks[1]


def test_logit_bias_forces_a_token(model: LlamaModel, ctx: LlamaContext) -> None:
    tokens = _prompt(model)
    batch = LlamaBatch(64)
    batch.set(tokens, np.arange(len(tokens)), 0)
    ctx.decode(batch)
    with SamplerChain(model, [("logit_bias", {"bias": {42: 1000.0}}), ("greedy", {})]) as chain:
        assert chain.sample(ctx, -1) == 42


def test_invalid_grammar_is_a_grammar_error(model: LlamaModel) -> None:
    with pytest.raises(GrammarError) as info:
        SamplerChain(model, [("grammar", {"grammar": "root ::= undefined-rule"}), ("greedy", {})])
    assert "Invalid GBNF grammar" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_grammar_constrains_sampling(model: LlamaModel, ctx: LlamaContext) -> None:
    tokens = _prompt(model)
    batch = LlamaBatch(64)
    batch.set(tokens, np.arange(len(tokens)), 0)
    ctx.decode(batch)
    with SamplerChain(
        model, [("grammar", {"grammar": 'root ::= "yes" | "no"'}), ("greedy", {})]
    ) as chain:
        piece = model.token_to_piece(chain.sample(ctx, -1)).decode()
    assert piece and ("yes".startswith(piece) or "no".startswith(piece))


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([("warp", {})], "unknown sampler stage 'warp'"),
        ([("top_k", {})], "sampler top_k: missing option"),
        ([("top_k", {"k": 3, "x": 1})], "sampler top_k: unknown option"),
        ([("temp", {"t": float("nan")})], "sampler temp: t must be a finite number"),
        ([("dist", {"seed": 2**33})], "seed must fit in an unsigned 32-bit integer"),
        ([], "stages must be a non-empty list"),
    ],
)
def test_bad_sampler_specs_name_the_problem(
    model: LlamaModel, stages: list[tuple[str, dict[str, Any]]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SamplerChain(model, stages)
