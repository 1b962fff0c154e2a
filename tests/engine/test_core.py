"""The engine on tiny generated models: batching, streaming, stops, cancel, lifecycle."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sipp.errors import (
    EngineClosedError,
    EngineDeadError,
    QueueFullError,
    RequestTooLargeError,
    UnsupportedOperationError,
)
from sipp.requests import TextRequest
from sipp.runs import RunSink
from sipp.types import ChatMessage, SippTextOptions
from tests.engine.engine_helpers import REF, embed, query

PROMPTS = [f"The number {i} is" for i in range(6)]


def test_greedy_is_deterministic_and_reports_usage(engine_factory: Any,
                                                   tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    first = query(engine, "Once upon a time", max_tokens=12, ignore_eos=True).result(30)
    second = query(engine, "Once upon a time", max_tokens=12, ignore_eos=True).result(30)
    assert first["text"] == second["text"] and first["text"]
    assert first["finish_reason"] == "length"
    usage = first["usage"]
    assert usage is not None and usage["output_tokens"] == 12
    assert usage["total_tokens"] == usage["input_tokens"] + 12
    stats = first["local_stats"]
    assert stats is not None
    for key in ("ttft_ms", "prefill_ms", "decode_ms", "e2e_ms", "decode_tokens_per_second",
                "cache_mode", "cache_source", "cached_tokens", "prefill_tokens"):
        assert key in stats


def test_concurrent_requests_match_each_request_alone(engine_factory: Any,
                                                       tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path, context={"n_parallel": 4},
                            cache={"mode": "disabled"})
    alone = [query(engine, p, max_tokens=20, ignore_eos=True).result(30)["text"]
             for p in PROMPTS]
    calls_before = engine.decode_calls
    runs = [query(engine, p, max_tokens=20, ignore_eos=True) for p in PROMPTS]
    together = [r.result(30)["text"] for r in runs]
    assert together == alone
    # 4 slots: two waves of about 20 shared decodes instead of 6 x 20.
    assert engine.decode_calls - calls_before <= 2 * 20 + 4


def test_streamed_batches_add_up_to_the_final_text(engine_factory: Any,
                                                   tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    run = query(engine, "Streaming test", max_tokens=24, ignore_eos=True, stream=True)
    batches = list(run.tokens())
    result = run.result(30)
    assert "".join(b.text for b in batches) == result["text"]
    assert sum(b.token_count for b in batches) == 24


def test_stop_string_across_tokens_is_cut_and_never_streamed(engine_factory: Any,
                                                             tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    full = query(engine, "Stop here", max_tokens=30, ignore_eos=True).result(30)["text"]
    stop = full[len(full) // 2 : len(full) // 2 + 4]
    assert len(stop) == 4
    run = query(engine, "Stop here", max_tokens=30, ignore_eos=True, stop=[stop],
                stream=True)
    streamed = "".join(b.text for b in run.tokens())
    result = run.result(30)
    expected = full[: full.index(stop)]
    assert result["text"] == expected == streamed
    assert result["finish_reason"] == "stop"


def test_cancel_completes_with_text_so_far(engine_factory: Any, tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    run = query(engine, "Long story", max_tokens=1500, ignore_eos=True, stream=True)
    iterator = run.tokens()
    next(iterator)
    assert run.cancel("caller_cancelled")
    result = run.result(30)
    assert result["finish_reason"] == "cancelled"
    assert result["usage"] is not None and result["usage"]["output_tokens"] < 1500
    # The slot is free again: a new request runs to completion.
    assert query(engine, "after", max_tokens=3).result(30)["finish_reason"] in ("length", "stop")


def test_close_fails_pending_runs_and_refuses_new_ones(engine_factory: Any,
                                                       tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    runs = [query(engine, p, max_tokens=1500, ignore_eos=True) for p in PROMPTS]
    engine.close()
    for run in runs:
        assert isinstance(run.exception(10), EngineClosedError)
    with pytest.raises(EngineClosedError):
        query(engine, "late")


def test_engine_death_fails_every_pending_and_future_run(engine_factory: Any,
                                                         tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    all_queued = threading.Event()

    def broken_decode(batch: Any) -> int:
        # Fail only once every run is queued, so each of them is pending at death.
        all_queued.wait(10)
        raise RuntimeError("simulated native failure")

    engine.ctx.decode = broken_decode
    runs = [query(engine, p, max_tokens=8) for p in PROMPTS[:3]]
    all_queued.set()
    for run in runs:
        error = run.exception(10)
        assert isinstance(error, EngineDeadError)
        assert "simulated native failure" in str(error)
    with pytest.raises(EngineDeadError):
        query(engine, "after death")


def test_full_queue_fails_new_runs_at_once(engine_factory: Any, tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path, scheduler={"max_queued_requests": 2})
    accepted = []
    with pytest.raises(QueueFullError, match="max_queued_requests=2"):
        for _ in range(10):
            accepted.append(query(engine, "queue", max_tokens=2000, ignore_eos=True))
    assert 2 <= len(accepted) <= 3
    for run in accepted:
        run.cancel()
        assert run.result(30)["finish_reason"] == "cancelled"


def test_prompt_that_cannot_fit_fails_at_admission(engine_factory: Any,
                                                    tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path, context={"n_ctx": 64})
    limit = engine.info.n_ctx_per_slot  # libllama may round n_ctx up
    with pytest.raises(RequestTooLargeError, match=f"leaves no room.*n_ctx_per_slot={limit}"):
        query(engine, "hello " * limit, max_tokens=1)
    # a prompt that fits may ask for more tokens than the window: the context shifts
    result = query(engine, "hello " * 10, max_tokens=limit, ignore_eos=True).result(60)
    assert result["finish_reason"] == "length"
    assert result["usage"]["output_tokens"] == limit  # type: ignore[index]


def test_context_key_reuse_shows_cached_tokens(engine_factory: Any,
                                               tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path, context={"n_parallel": 2},
                            cache={"mode": "context_key"})
    prompt = "A shared conversation prefix that is long enough to matter. " * 3
    first = query(engine, prompt, max_tokens=4, context_key="chat-1").result(30)
    assert first["local_stats"]["cached_tokens"] == 0  # type: ignore[index]
    second = query(engine, prompt + "And more.", max_tokens=4, context_key="chat-1").result(30)
    stats = second["local_stats"]
    assert stats is not None
    assert stats["cache_source"] == "live"
    assert stats["cached_tokens"] >= first["usage"]["input_tokens"] - 1  # type: ignore[index]
    assert stats["prefill_tokens"] < second["usage"]["input_tokens"]  # type: ignore[index]
    # Reuse does not change the greedy output.
    cold = engine_factory(tiny_llama_path, cache={"mode": "disabled"})
    again = query(cold, prompt + "And more.", max_tokens=4).result(30)
    assert again["text"] == second["text"]


def test_embeddings_share_decodes_and_match_single_runs(engine_factory: Any,
                                                        tiny_bert_path: Path) -> None:
    engine = engine_factory(tiny_bert_path, context={"n_parallel": 4})
    texts = [f"sentence number {i}" for i in range(8)]
    alone = [np.array(embed(engine, t).result(30)["values"]) for t in texts]
    calls_before = engine.decode_calls
    runs = [embed(engine, t) for t in texts]
    results = [r.result(30) for r in runs]
    assert engine.decode_calls - calls_before < len(texts)
    for vector, result in zip(alone, results, strict=True):
        np.testing.assert_allclose(np.array(result["values"]), vector, atol=1e-5)
        assert result["pooling"] == "mean" and result["normalized"] is True
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    raw = embed(engine, texts[0], normalize=False).result(30)
    assert raw["normalized"] is False and abs(float(np.linalg.norm(raw["values"])) - 1) > 1e-3


def test_text_model_refuses_embed_and_embedding_model_refuses_query(
    engine_factory: Any, tiny_llama_path: Path, tiny_bert_path: Path
) -> None:
    llama = engine_factory(tiny_llama_path)
    with pytest.raises(UnsupportedOperationError, match="embed"):
        embed(llama, "x")
    bert = engine_factory(tiny_bert_path)
    with pytest.raises(UnsupportedOperationError, match="does not generate text"):
        query(bert, "x")


def test_t5_query_runs_encoder_then_decoder(engine_factory: Any, tiny_t5_path: Path) -> None:
    engine = engine_factory(tiny_t5_path)
    first = query(engine, "translate this sentence", max_tokens=6, ignore_eos=True).result(30)
    second = query(engine, "translate this sentence", max_tokens=6, ignore_eos=True).result(30)
    assert first["text"] == second["text"] and first["text"]
    assert first["usage"]["output_tokens"] == 6  # type: ignore[index]


def test_t5_with_parallel_slots_is_refused(native_backend: None, tiny_t5_path: Path) -> None:
    from sipp.config import NativeRuntimeConfig
    from sipp.engine.core import Engine
    from sipp.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="n_parallel=1"):
        Engine.load(str(tiny_t5_path), NativeRuntimeConfig(context={"n_parallel": 2}))


def test_chat_without_template_is_refused(engine_factory: Any,
                                          tiny_llama_no_template_path: Path) -> None:
    engine = engine_factory(tiny_llama_no_template_path)
    sink = RunSink(REF, wants_tokens=False)
    request = TextRequest("chat", None, (ChatMessage("user", "hi"),), SippTextOptions(),
                          None, None, None, False)
    with pytest.raises(UnsupportedOperationError, match=r"call query\(\)"):
        engine.submit_text(request, sink)


def test_idle_engine_does_not_spin(engine_factory: Any, tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    query(engine, "warm", max_tokens=2).result(30)
    thread = engine._thread
    assert thread is not None
    start = time.thread_time()
    cpu_before = time.process_time()
    time.sleep(0.3)
    assert time.process_time() - cpu_before < 0.1
    del start


def test_chat_renders_the_gguf_template(engine_factory: Any, tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    sink = RunSink(REF, wants_tokens=False)
    options = SippTextOptions(max_tokens=5, temperature=0.0)
    request = TextRequest("chat", None, (ChatMessage("user", "hi there"),), options, None,
                          None, None, False)
    engine.submit_text(request, sink)
    from sipp.runs import SippTextRun

    result = SippTextRun(sink).result(30)
    assert result["usage"] is not None and result["usage"]["input_tokens"] > 3
    # The rendered prompt starts with exactly one BOS.
    prompt = engine._submission.prompt_tokens(request)
    assert int(prompt[0]) == engine.model.bos and int(prompt[1]) != engine.model.bos


def test_runtime_metrics_count_requests_and_decodes(engine_factory: Any,
                                                    tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path, context={"n_parallel": 2},
                            observability={"runtime_metrics": True})
    runs = [query(engine, p, max_tokens=5, ignore_eos=True) for p in PROMPTS[:4]]
    for run in runs:
        run.result(30)
    snapshot = engine.metrics()
    counters = snapshot["counters"]
    assert counters["requests_completed"] == 4
    assert counters["generated_tokens"] == 20
    assert counters["decode_calls"] == snapshot["decode_calls"] > 0
    assert snapshot["histograms"]["time_to_first_token_seconds"]["count"] == 4
    assert snapshot["requests_running"] == 0
    assert "sipp_requests_completed" in engine.runtime_metrics.render_prometheus()


def test_json_schema_constrains_output(engine_factory: Any, tiny_llama_path: Path) -> None:
    import json

    from sipp.types import LocalTextOptions

    engine = engine_factory(tiny_llama_path)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}},
              "required": ["ok"], "additionalProperties": False}
    sink = RunSink(REF, wants_tokens=False)
    options = SippTextOptions(max_tokens=40, temperature=0.0)
    local = LocalTextOptions(json_schema=schema)
    engine.submit_text(TextRequest("query", "JSON:", None, options, local, None, None, False),
                       sink)
    from sipp.runs import SippTextRun

    result = SippTextRun(sink).result(30)
    assert result["finish_reason"] == "stop"
    assert isinstance(json.loads(result["text"])["ok"], bool)


def test_invalid_grammar_is_a_clear_error(engine_factory: Any, tiny_llama_path: Path) -> None:
    from sipp.errors import GrammarError
    from sipp.types import LocalTextOptions

    engine = engine_factory(tiny_llama_path)
    sink = RunSink(REF, wants_tokens=False)
    local = LocalTextOptions(grammar="root ::= (")
    with pytest.raises(GrammarError, match=r"(?i)invalid GBNF grammar"):
        engine.submit_text(TextRequest("query", "x", None, SippTextOptions(), local, None,
                                       None, False), sink)


@pytest.mark.parametrize("sampling", [
    {"mirostat": 1, "seed": 1}, {"mirostat": 2, "seed": 1},
    {"samplers": ["dry", "min_p", "xtc", "top_n_sigma", "typical_p", "temperature"],
     "dry_multiplier": 0.8, "min_p": 0.05, "xtc_probability": 0.5, "top_n_sigma": 2.0,
     "typical_p": 0.9, "dynatemp_range": 0.3, "seed": 5, "logit_bias": {5: -1.0}},
])
def test_every_sampler_stage_builds_and_is_seed_deterministic(
    engine_factory: Any, tiny_llama_path: Path, sampling: dict[str, Any]
) -> None:
    from sipp.config import SamplingRuntimeConfig
    from sipp.runs import SippTextRun
    from sipp.types import LocalTextOptions

    engine = engine_factory(tiny_llama_path)

    def run() -> str:
        sink = RunSink(REF, wants_tokens=False)
        local = LocalTextOptions(sampling=SamplingRuntimeConfig(**sampling))
        engine.submit_text(TextRequest("query", "seeded", None,
                                       SippTextOptions(max_tokens=8), local, None, None,
                                       False), sink)
        return SippTextRun(sink).result(30)["text"]

    assert run() == run()


@pytest.mark.parametrize("n_parallel,n_ctx", [(3, None), (5, None), (6, None), (7, 1000),
                                              (12, None)])
def test_embedding_contexts_with_any_slot_count_load_and_batch(
    engine_factory: Any, tiny_bert_path: Path, n_parallel: int, n_ctx: int | None
) -> None:
    # libllama aborts the whole process while reserving the pooled graph when its token
    # count does not divide by n_seq_max; the engine must size the batch so it does.
    context: dict[str, Any] = {"n_parallel": n_parallel}
    if n_ctx is not None:
        context["n_ctx"] = n_ctx
    engine = engine_factory(tiny_bert_path, context=context)
    assert engine.info.n_ubatch % n_parallel == 0
    runs = [embed(engine, f"sentence number {i}") for i in range(n_parallel + 1)]
    vectors = [run.result(30)["values"] for run in runs]
    assert len({len(v) for v in vectors}) == 1 and len(vectors[0]) == engine.info.embedding_size
