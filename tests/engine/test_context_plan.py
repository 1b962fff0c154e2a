"""Context planning without a model: each model-dependent default of the llama context."""

from __future__ import annotations

from typing import Any

import pytest

from sipp.config import NativeRuntimeConfig
from sipp.engine.context_plan import ContextPlan, ModelFacts, context_params, plan_context
from sipp.errors import ModelLoadError

GEMMA = ModelFacts("gemma3", n_ctx_train=32768, n_swa=512)
LLAMA = ModelFacts("llama", n_ctx_train=2048)
BERT = ModelFacts("bert", n_ctx_train=512)
T5 = ModelFacts("t5", n_ctx_train=512, has_encoder=True, has_decoder=True)
MAMBA = ModelFacts("mamba", n_ctx_train=0, is_recurrent=True)


def plan(facts: ModelFacts, **groups: Any) -> ContextPlan:
    return plan_context(facts, NativeRuntimeConfig(**groups))


def test_window_defaults_to_the_training_context_capped_at_4096_per_slot() -> None:
    assert plan(LLAMA).n_ctx == 2048
    assert plan(GEMMA).n_ctx == 4096
    assert plan(GEMMA, context={"n_parallel": 4}).n_ctx == 4 * 4096
    assert plan(MAMBA).n_ctx == 4096  # no training context: 4096
    assert plan(GEMMA, context={"n_ctx": 1000, "n_parallel": 4}).n_ctx == 1000


def test_per_slot_window_is_shared_only_without_a_unified_cache() -> None:
    split = plan(LLAMA, context={"n_parallel": 4, "kv_unified": False})
    assert split.window(8192) == 2048 and not split.cross_slot_copy
    unified = plan(LLAMA, context={"n_parallel": 4})  # live-slot cache mode by default
    assert unified.kv_unified and unified.window(8192) == 8192 and unified.cross_slot_copy
    assert plan(LLAMA).window(2048) == 2048  # one slot holds it all


def test_unified_kv_follows_the_cache_mode_unless_set() -> None:
    assert plan(LLAMA, context={"n_parallel": 2}).kv_unified
    assert not plan(LLAMA, context={"n_parallel": 2}, cache={"mode": "context_key"}).kv_unified
    assert not plan(LLAMA, context={"n_parallel": 1}).kv_unified
    assert plan(LLAMA, context={"n_parallel": 2, "kv_unified": True},
                cache={"mode": "disabled"}).kv_unified


def test_full_swa_cache_only_for_sliding_window_models_whose_cache_is_reused() -> None:
    assert plan(GEMMA).swa_full
    assert not plan(GEMMA, cache={"mode": "disabled"}).swa_full
    assert not plan(LLAMA).swa_full
    assert not plan(GEMMA, context={"swa_full": False}).swa_full
    assert plan(LLAMA, context={"swa_full": True}).swa_full


def test_batch_sizes_and_one_ubatch_for_pooled_models() -> None:
    causal = plan(LLAMA)
    assert (causal.n_batch, causal.n_ubatch) == (2048, 512)
    assert plan(LLAMA, context={"n_batch": 256}).n_ubatch == 256
    bert = plan(BERT)
    assert bert.model_class == "encoder" and bert.embeddings
    assert bert.n_ubatch == bert.n_batch == 2048 and bert.cache_mode == "disabled"
    # pooled output over 3 sequences: a multiple of n_parallel that fits n_ctx
    shared = plan(BERT, context={"n_parallel": 3, "n_ctx": 1000})
    assert shared.n_batch == shared.n_ubatch == 999


def test_model_class_and_cache_mode() -> None:
    assert plan(T5).model_class == "encoder_decoder" and plan(T5).cache_mode == "disabled"
    assert plan(MAMBA).cache_mode == "disabled"
    assert plan(LLAMA).cache_mode == "live_slot_prefix"
    assert plan(LLAMA, cache={"mode": "off"}).cache_mode == "disabled"
    assert plan(LLAMA, context={"embeddings": True}).cache_mode == "disabled"
    assert not plan(ModelFacts("jamba", is_hybrid=True)).partial_kv_edits


def test_encoder_decoder_limits_are_load_errors() -> None:
    with pytest.raises(ModelLoadError, match="n_parallel=1"):
        plan(T5, context={"n_parallel": 2})
    with pytest.raises(ModelLoadError, match="embedding output"):
        plan(T5, context={"embeddings": True})


def test_native_params_carry_the_plan_and_pass_the_rest_through() -> None:
    config = NativeRuntimeConfig(context={"flash_attention": "disabled", "n_threads": 3})
    params = context_params(plan_context(GEMMA, config), config)
    assert params["n_ctx"] == 4096 and params["swa_full"] is True
    assert params["flash_attn"] == "off" and params["n_threads"] == 3
    assert params["pooling_type"] is None and params["no_perf"] is True
