"""Handle lifetimes: close is idempotent, use after close raises, nothing leaks."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sipp.native import LlamaBatch, LlamaContext, LlamaModel, SamplerChain, UseAfterCloseError


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    pytest.skip("no /proc/self/status")


def test_close_twice_and_use_after_close(native: Any, tiny_llama_path: Path) -> None:
    model = LlamaModel(tiny_llama_path)
    ctx = LlamaContext(model, n_ctx=64)
    chain = SamplerChain(model, [("greedy", {})])
    ctx.close()
    ctx.close()
    with pytest.raises(UseAfterCloseError, match="LlamaContext is closed"):
        ctx.decode(LlamaBatch(1))
    with pytest.raises(UseAfterCloseError):
        ctx.logits_ith(0)
    with pytest.raises(UseAfterCloseError):
        chain.sample(ctx, 0)
    chain.close()
    chain.close()
    model.close()
    model.close()
    with pytest.raises(UseAfterCloseError, match="LlamaModel is closed"):
        model.tokenize("x")
    with pytest.raises(UseAfterCloseError):
        LlamaContext(model)


def test_closing_the_model_closes_its_contexts_and_samplers(
    native: Any, tiny_llama_path: Path
) -> None:
    model = LlamaModel(tiny_llama_path)
    contexts = [LlamaContext(model, n_ctx=64) for _ in range(3)]
    chain = SamplerChain(model, [("top_k", {"k": 5}), ("dist", {"seed": 3})])
    model.close()
    assert all(c.closed for c in contexts)
    assert chain.closed
    with pytest.raises(UseAfterCloseError):
        contexts[0].seq_pos_max(0)


def test_context_keeps_its_model_alive(native: Any, tiny_llama_path: Path) -> None:
    model = LlamaModel(tiny_llama_path)
    ctx = LlamaContext(model, n_ctx=64)
    tokens = model.tokenize("hello", add_special=True)
    del model
    gc.collect()
    batch = LlamaBatch(16)
    batch.set(np.array(tokens), np.arange(len(tokens)), 0)
    ctx.decode(batch)
    assert np.isfinite(ctx.logits_ith(-1)).all()
    assert not ctx.model.closed
    ctx.close()


def test_context_manager_closes(native: Any, tiny_llama_path: Path) -> None:
    with LlamaModel(tiny_llama_path) as model, LlamaContext(model, n_ctx=64) as ctx:
        assert not ctx.closed
    assert ctx.closed and model.closed


def test_200_contexts_created_and_dropped_do_not_leak(native: Any, tiny_llama_path: Path) -> None:
    model = LlamaModel(tiny_llama_path)

    def churn(n: int, explicit: bool) -> None:
        for _ in range(n):
            ctx = LlamaContext(model, n_ctx=128, n_batch=32)
            chain = SamplerChain(model, [("top_k", {"k": 4}), ("dist", {"seed": 1})])
            if explicit:
                ctx.close()
                chain.close()
            del ctx, chain
        gc.collect()

    churn(20, explicit=False)  # warm up allocator pools
    before = _rss_kib()
    churn(100, explicit=False)  # freed by the finalizers
    churn(100, explicit=True)
    after = _rss_kib()
    assert after - before < 20 * 1024, f"RSS grew by {after - before} KiB over 200 contexts"
    assert len(model._dependents) == 0
    model.close()
