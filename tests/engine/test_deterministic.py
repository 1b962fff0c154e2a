"""``scheduler.deterministic``: a request's answer does not depend on what runs beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sipp.config import SamplingRuntimeConfig, SpeculativeConfig
from sipp.engine.core import Engine
from sipp.errors import ConfigurationError
from sipp.native import LlamaBatch, LlamaContext, LlamaModel
from sipp.requests import TextRequest
from sipp.runs import RunSink, SippTextRun
from sipp.types import EndpointRef, LocalTextOptions, SippTextOptions
from tests.engine.engine_helpers import query

WORDS = "cats dogs birds fish trees stars rivers hills apples pears boats cars".split()
# shared beginnings (prefix reuse between requests) and lengths that vary by a few tokens
PROMPTS = [f"Tell a story. {' '.join(WORDS[: 1 + i % 6])} and {WORDS[i % len(WORDS)]} {i}"
           for i in range(32)]
REF = EndpointRef.local("deterministic")


def _texts(engine: Engine, prompts: list[str], max_tokens: int,
           spec: SpeculativeConfig | None = None) -> tuple[list[str], int, int]:
    """Run ``prompts`` at once; their texts, the context shifts and the prompt tokens that
    came from cached KV."""
    runs = []
    for prompt in prompts:
        local = LocalTextOptions(speculative=spec,
                                 sampling=SamplingRuntimeConfig(ignore_eos=True))
        options = SippTextOptions(max_tokens=max_tokens, temperature=0.0)
        sink = RunSink(REF, wants_tokens=False)
        engine.submit_text(TextRequest("query", prompt, None, options, local, None, None,
                                       False), sink)
        runs.append(SippTextRun(sink))
    results = [r.result(300) for r in runs]
    stats = [r["local_stats"] for r in results]
    shifts = sum(int(s.get("context_shifts", 0)) for s in stats)  # type: ignore[union-attr]
    cached = sum(int(s.get("cached_tokens", 0)) for s in stats)  # type: ignore[union-attr]
    return [str(r["text"]) for r in results], shifts, cached


@pytest.mark.timeout(900)  # Gemma 3 270M: about three minutes on two loaded cores
@pytest.mark.parametrize("model", ["tiny_llama_path", "tiny_gemma3_path", "gemma_path"])
def test_concurrent_answers_equal_the_answers_alone(engine_factory: Any, model: str,
                                                    request: pytest.FixtureRequest) -> None:
    """32 prompts, 8 slots, three concurrent runs: every answer equals the prompt's answer
    alone. The prompts share a long beginning (prefix reuse) and end near the window, so
    every answer also shifts its context."""
    path: Path = request.getfixturevalue(model)
    engine = engine_factory(path, context={"n_parallel": 8, "n_ctx": 8 * 256},
                            scheduler={"deterministic": True},
                            cache={"retained_prefix_tokens": 8})
    assert engine.info.kv_unified is False and engine.plan.cache_mode == "live_slot_prefix"
    window, new = engine.info.n_ctx_per_slot, 24
    preamble = "Notes."
    # grow the shared beginning word by word until every prompt fits its window but its
    # answer does not: each answer shifts its context once
    while min(lengths := [len(engine.model.tokenize(preamble + " " + p, add_special=True))
                          for p in PROMPTS]) < window - new + 2:
        preamble += " " + WORDS[len(preamble) % len(WORDS)]
    assert max(lengths) < window - 1, "the prompts differ too much in length for one window"
    prompts = [preamble + " " + p for p in PROMPTS]
    alone = [_texts(engine, [p], new)[0][0] for p in prompts]
    for _ in range(3):
        together, shifts, cached = _texts(engine, prompts, new)
        assert together == alone
        assert cached > 0  # prefix reuse took part
        assert shifts >= len(prompts)


def test_speculation_in_deterministic_mode_keeps_the_answers(engine_factory: Any,
                                                            tiny_llama_path: Path) -> None:
    plain = engine_factory(tiny_llama_path, context={"n_parallel": 8},
                           scheduler={"deterministic": True})
    drafted = engine_factory(tiny_llama_path, context={"n_parallel": 8},
                             scheduler={"deterministic": True},
                             speculative={"mode": "draft", "draft_model": str(tiny_llama_path)})
    prompts = PROMPTS[:6]  # fewer requests than slots: the scheduler gives draft positions
    alone = [_texts(plain, [p], 32)[0][0] for p in prompts]
    assert _texts(drafted, prompts, 32)[0] == alone
    assert drafted.metrics()["speculative"]["accepted_tokens"] > 0


@pytest.mark.parametrize("flash", ["off", "on"])
def test_batch_invariant_context_gives_a_token_the_same_logits_in_any_batch(
        native_backend: None, tiny_llama_path: Path, flash: str) -> None:
    """The kernel property the mode rests on (our llama.cpp patch): one prompt's last
    logits are bit-identical whether it is decoded whole, with a 1- or 7-token last
    chunk, or beside another sequence."""
    model = LlamaModel(tiny_llama_path, use_extra_bufts=False)
    tokens = np.array(model.tokenize(PROMPTS[5] + " " + PROMPTS[7]), dtype=np.int32)
    other = np.array(model.tokenize(PROMPTS[3]), dtype=np.int32)
    n = len(tokens)

    def last_logits(parts: list[tuple[int, int]], beside: bool = False) -> Any:
        ctx = LlamaContext(model, n_ctx=1024, n_batch=512, n_ubatch=512, n_seq_max=2,
                           kv_unified=False, flash_attn=flash, n_threads=2,
                           n_threads_batch=2)
        try:
            assert ctx.set_batch_invariant(True)
            batch = LlamaBatch(512, 2)
            for i, (a, b) in enumerate(parts):
                batch.clear()
                if beside and i == 0:
                    for j, t in enumerate(other.tolist()):
                        batch.add(t, j, 1)
                for j in range(a, b):
                    batch.add(int(tokens[j]), j, 0, logits=j == n - 1)
                ctx.decode(batch)
            return ctx.logits_ith(len(batch) - 1, copy=True)
        finally:
            ctx.close()

    try:
        whole = last_logits([(0, n)])
        for parts, beside in (([(0, n - 1), (n - 1, n)], False),
                              ([(0, n - 7), (n - 7, n)], False),
                              ([(0, n)], True), ([(0, n - 3), (n - 3, n)], True)):
            assert np.array_equal(last_logits(parts, beside), whole), (parts, beside)
    finally:
        model.close()


@pytest.mark.parametrize(("config", "message"), [
    ({"context": {"kv_unified": True}}, "context.kv_unified"),
    ({"placement": {"no_extra_bufts": False}}, "placement.no_extra_bufts"),
])
def test_settings_that_break_it_are_refused(engine_factory: Any, tiny_llama_path: Path,
                                            config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        engine_factory(tiny_llama_path, scheduler={"deterministic": True}, **config)


def test_nothing_extra_is_reported_as_speculation(engine_factory: Any,
                                                  tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path, scheduler={"deterministic": True})
    result = query(engine, PROMPTS[0], max_tokens=5).result(60)
    assert result["usage"]["output_tokens"] == 5  # type: ignore[index]
    assert "draft_tokens" not in result["local_stats"]  # type: ignore[operator]
    assert engine.metrics()["speculative"]["draft_tokens"] == 0


def test_a_backend_without_the_patch_is_refused_with_the_way_out(
        engine_factory: Any, tiny_llama_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LlamaContext, "set_batch_invariant", lambda self, enabled: False)
    with pytest.raises(ConfigurationError, match=r"native/patches.*rebuild the backend"):
        engine_factory(tiny_llama_path, scheduler={"deterministic": True})
    engine_factory(tiny_llama_path)  # the default mode does not need it
