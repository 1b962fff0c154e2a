"""Runtime config fields that change what a user sees, on the tiny models.

Placement (devices, split_mode, main_gpu, tensor_split), context RoPE / YaRN and warmup,
sampling n_probs / grammar_lazy / preserved_tokens / backend_sampling, scheduler
continuous_batching, and the default context key.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from sipp.config import DEFAULT_CONTEXT_KEY, SamplingRuntimeConfig
from sipp.engine.core import Engine
from sipp.errors import ConfigurationError, InvalidRequestError
from sipp.native.model import list_devices
from sipp.requests import TextRequest
from sipp.runs import RunSink, SippTextRun
from sipp.types import LocalTextOptions, SippTextOptions
from tests.engine.engine_helpers import REF, query

PROMPT = "the quick brown fox jumps over"


def text_of(engine: Engine, prompt: str = PROMPT, n: int = 12) -> str:
    return str(query(engine, prompt, max_tokens=n, ignore_eos=True).result(30)["text"])


def run_with(engine: Engine, sampling: SamplingRuntimeConfig | None = None, *,
             grammar: str | None = None, max_tokens: int = 8) -> SippTextRun:
    local = LocalTextOptions(sampling=sampling, grammar=grammar)
    options = SippTextOptions(max_tokens=max_tokens, temperature=0.0)
    sink = RunSink(REF, wants_tokens=False)
    engine.submit_text(TextRequest("query", PROMPT, None, options, local, None, None, False),
                       sink)
    return SippTextRun(sink)


# --- context: RoPE / YaRN ---------------------------------------------------------------------


def test_rope_fields_change_greedy_output(engine_factory: Any, tiny_llama_path: Path) -> None:
    base = text_of(engine_factory(tiny_llama_path))
    scaled = text_of(engine_factory(tiny_llama_path, context={"rope_freq_scale": 0.25}))
    based = text_of(engine_factory(tiny_llama_path, context={"rope_freq_base": 50.0}))
    assert scaled != base and based != base
    # rope_scaling "none" forces a frequency scale of 1: the scale no longer matters
    plain = text_of(engine_factory(tiny_llama_path,
                                   context={"rope_scaling": "none", "rope_freq_scale": 0.25}))
    assert plain == text_of(engine_factory(tiny_llama_path, context={"rope_scaling": "none"}))


def test_yarn_scaling_changes_greedy_output(engine_factory: Any, tiny_llama_path: Path) -> None:
    linear = text_of(engine_factory(
        tiny_llama_path, context={"rope_scaling": "linear", "rope_freq_scale": 0.5}))
    yarn = text_of(engine_factory(
        tiny_llama_path,
        context={"rope_scaling": "yarn", "rope_freq_scale": 0.5, "yarn_orig_ctx": 64,
                 "yarn_ext_factor": 1.0, "yarn_beta_fast": 32.0, "yarn_beta_slow": 1.0}))
    assert yarn != linear


# --- context: warmup --------------------------------------------------------------------------


def test_warmup_runs_once_at_load_and_leaves_no_trace(engine_factory: Any,
                                                      tiny_llama_path: Path) -> None:
    warm = engine_factory(tiny_llama_path, observability={"backend_profiling": True})
    cold = engine_factory(tiny_llama_path, context={"warmup": False})
    assert warm.warmup_s is not None and warm.warmup_s > 0
    assert cold.warmup_s is None
    perf = warm.metrics()["backend"]
    # counters reset after the run (libllama reports at least 1 of each)
    assert perf["n_eval"] == 1 and perf["n_p_eval"] == 1 and perf["t_eval_ms"] == 0
    assert warm.ctx.seq_pos_max(0) == -1  # KV cleared
    assert text_of(warm) == text_of(cold)


@pytest.mark.parametrize("name", ["tiny_bert_path", "tiny_t5_path", "tiny_gemma3_path"])
def test_warmup_works_for_every_model_class(engine_factory: Any, name: str,
                                            request: pytest.FixtureRequest) -> None:
    engine = engine_factory(request.getfixturevalue(name))
    assert engine.warmup_s is not None


# --- placement --------------------------------------------------------------------------------


def test_unknown_device_is_a_clear_error(engine_factory: Any, tiny_llama_path: Path) -> None:
    with pytest.raises(ConfigurationError,
                       match=r"placement\.devices\[0\]: unknown device 'NoSuchGPU7'"):
        engine_factory(tiny_llama_path, placement={"devices": ["NoSuchGPU7"]})


def test_cpu_is_not_an_offload_device(engine_factory: Any, tiny_llama_path: Path) -> None:
    cpu = next(d.name for d in list_devices() if d.type == "cpu")
    with pytest.raises(ConfigurationError, match=rf"placement\.devices\[0\]: '{cpu}' is the CPU"):
        engine_factory(tiny_llama_path, placement={"devices": [cpu]})


def test_devices_none_keeps_everything_on_the_cpu(engine_factory: Any,
                                                  tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path, placement={"devices": ["none"]})
    assert engine.offloads is False
    assert text_of(engine) == text_of(engine_factory(tiny_llama_path))
    with pytest.raises(ConfigurationError, match=r'"none" .* cannot be combined'):
        engine_factory(tiny_llama_path, placement={"devices": ["none", "CUDA0"]})


def _no_gpu() -> bool:
    return not any(d.type in ("gpu", "igpu") for d in list_devices())


def test_gpu_only_placement_is_refused_without_a_gpu(engine_factory: Any,
                                                     tiny_llama_path: Path) -> None:
    if not _no_gpu():
        pytest.skip("this backend has a GPU")
    with pytest.raises(ConfigurationError, match=r"placement\.tensor_split has 2 entries .*"
                       r"CPU only"):
        engine_factory(tiny_llama_path, placement={"tensor_split": [1, 1]})
    with pytest.raises(ConfigurationError, match=r"placement\.split_mode='tensor'"):
        engine_factory(tiny_llama_path, placement={"split_mode": "tensor"})
    # documented no-ops without a GPU: nothing to select, split or pin
    engine = engine_factory(tiny_llama_path, placement={
        "split_mode": "none", "main_gpu": 3, "no_host": True})
    assert text_of(engine) == text_of(engine_factory(tiny_llama_path))


# --- sampling ---------------------------------------------------------------------------------


def test_n_probs_returns_top_logprobs_per_token(engine_factory: Any,
                                                tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path, sampling={"n_probs": 5, "ignore_eos": True})
    result = run_with(engine).result(30)
    logprobs = result["logprobs"]
    assert len(logprobs) == result["usage"]["output_tokens"] == 8
    for entry in logprobs:
        top = entry["top_logprobs"]
        assert len(top) == 5
        values = [t["logprob"] for t in top]
        assert values == sorted(values, reverse=True)
        assert sum(math.exp(v) for v in values) <= 1.0 + 1e-9
        assert top[0]["token"] == entry["token"]  # greedy picks the most likely token
        assert entry["logprob"] == pytest.approx(values[0])
        assert isinstance(entry["text"], str)
    assert "".join(e["text"] for e in logprobs) == result["text"]
    plain = run_with(engine_factory(tiny_llama_path)).result(30)
    assert "logprobs" not in plain


def test_n_probs_as_a_request_override(engine_factory: Any, tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    result = run_with(engine, SamplingRuntimeConfig(n_probs=2)).result(30)
    assert all(len(e["top_logprobs"]) == 2 for e in result["logprobs"])


def test_lazy_grammar_waits_for_its_trigger_token(engine_factory: Any,
                                                  tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path, sampling={"ignore_eos": True})
    free = run_with(engine).result(30)["text"]
    grammar = 'root ::= "a"+'
    eager = run_with(engine, grammar=grammar).result(30)["text"]
    assert eager == "a" * len(eager) and eager != free
    # the trigger (an id the greedy output never picks) never comes: the output stays free
    first_ids = {e["token"] for e in run_with(
        engine, SamplingRuntimeConfig(n_probs=1)).result(30)["logprobs"]}
    trigger = next(t for t in range(3, 200) if t not in first_ids)
    lazy = SamplingRuntimeConfig(grammar_lazy=True, preserved_tokens=[trigger])
    assert run_with(engine, lazy, grammar=grammar).result(30)["text"] == free


def test_lazy_grammar_settings_must_come_together(engine_factory: Any,
                                                  tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    grammar = 'root ::= "a"+'
    with pytest.raises(InvalidRequestError, match=r"grammar_lazy=True needs .*preserved_tokens"):
        run_with(engine, SamplingRuntimeConfig(grammar_lazy=True), grammar=grammar)
    with pytest.raises(InvalidRequestError, match=r"preserved_tokens are the trigger tokens"):
        run_with(engine, SamplingRuntimeConfig(preserved_tokens=[5]), grammar=grammar)
    with pytest.raises(InvalidRequestError, match=r"preserved_tokens token id 999999"):
        run_with(engine, SamplingRuntimeConfig(grammar_lazy=True, preserved_tokens=[999999]),
                 grammar=grammar)


def test_backend_sampling_true_is_host_sampling_on_the_cpu(engine_factory: Any,
                                                           tiny_llama_path: Path) -> None:
    if not _no_gpu():
        pytest.skip("this backend has a GPU")
    on = engine_factory(tiny_llama_path, sampling={"backend_sampling": True})
    off = engine_factory(tiny_llama_path, sampling={"backend_sampling": False})
    assert text_of(on) == text_of(off)


# --- scheduler: continuous batching -----------------------------------------------------------


def _overlap(engine: Engine) -> int:
    """Start a long request, then a second one while the first decodes; the most requests
    seen in one decode step."""
    first = query(engine, PROMPT, max_tokens=40, ignore_eos=True)
    deadline = time.monotonic() + 30
    while engine.scheduler.stats.decode_tokens < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    second = query(engine, "hello there", max_tokens=4, ignore_eos=True)
    first.result(30), second.result(30)
    return max(engine.scheduler.stats.batch_sizes)


def test_without_continuous_batching_requests_never_decode_together(
    engine_factory: Any, tiny_llama_path: Path
) -> None:
    static = engine_factory(tiny_llama_path, context={"n_parallel": 2},
                            scheduler={"continuous_batching": False})
    assert _overlap(static) == 1
    continuous = engine_factory(tiny_llama_path, context={"n_parallel": 2})
    assert _overlap(continuous) == 2


# --- default context key ----------------------------------------------------------------------


def test_requests_without_a_key_share_the_default_context_key(engine_factory: Any,
                                                              tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path, cache={"mode": "context_key"})
    query(engine, PROMPT, max_tokens=4).result(30)
    assert [key for _, _, key in engine.slot_states()] == [DEFAULT_CONTEXT_KEY]
    again = query(engine, PROMPT + " the lazy dog", max_tokens=4).result(30)
    assert again["local_stats"]["cached_tokens"] > 0
    other = query(engine, PROMPT, max_tokens=4, context_key="other").result(30)
    assert other["local_stats"]["cached_tokens"] == 0
