"""Context shift on the tiny model: generations longer than the window keep running, the
caller's text and usage are exactly what was sampled, and sequences sharing KV cells are
not disturbed when one of them shifts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.engine.engine_helpers import query

PROMPT = "Once upon a time there was a little robot who"


def _prompt_tokens(engine: Any, text: str) -> int:
    return len(engine.model.tokenize(text, add_special=True, parse_special=True))


@pytest.mark.parametrize("mode", ["live_slot_prefix", "disabled"])
def test_generation_runs_past_the_window(engine_factory: Any, tiny_llama_path: Path,
                                         mode: str) -> None:
    engine = engine_factory(tiny_llama_path, context={"n_ctx": 64, "n_parallel": 1},
                            cache={"mode": mode, "retained_prefix_tokens": 8}
                            if mode != "disabled" else {"mode": mode},
                            observability={"runtime_metrics": True})
    window = engine.info.n_ctx_per_slot
    n_prompt = _prompt_tokens(engine, PROMPT)
    assert n_prompt < window
    max_tokens = 150 + window  # several shifts even if libllama rounded n_ctx up
    run = query(engine, PROMPT, max_tokens=max_tokens, ignore_eos=True, stream=True)
    streamed = "".join(batch.text for batch in run.tokens())
    result = run.result(120)
    assert result["finish_reason"] == "length"
    assert result["usage"]["output_tokens"] == max_tokens  # type: ignore[index]
    assert result["usage"]["input_tokens"] == n_prompt  # type: ignore[index]
    assert streamed == result["text"]
    shifts = result["local_stats"]["context_shifts"]  # type: ignore[index]
    assert shifts >= 2
    metrics = engine.metrics()
    assert metrics["counters"]["context_shifts"] == shifts
    assert metrics["scheduler"]["context_shifts"] == shifts
    assert f"sipp_context_shifts_total {shifts}" in engine.runtime_metrics.render_prometheus()
    # the slot's mirror is what its KV holds: at most one window, starting with the kept
    # prefix (live mode) or the newest tokens (disabled: nothing kept, the slot is cleared)
    states = engine.slot_states()
    if mode == "live_slot_prefix":
        assert states[0][0] == "idle" and 0 < states[0][1] <= window
        kept = engine.scheduler.slot_tokens(0)[:8]
        prompt_ids = engine.model.tokenize(PROMPT, add_special=True, parse_special=True)
        assert kept == [int(t) for t in prompt_ids[:8]]
    # a second, short request is unaffected by the shifted one before it
    again = query(engine, PROMPT, max_tokens=8, ignore_eos=True).result(30)
    fresh = engine_factory(tiny_llama_path, context={"n_ctx": 64, "n_parallel": 1},
                           cache={"mode": "disabled"})
    assert again["text"] == query(fresh, PROMPT, max_tokens=8, ignore_eos=True).result(30)["text"]


def test_output_before_the_first_shift_is_unchanged(engine_factory: Any,
                                                    tiny_llama_path: Path) -> None:
    """Greedy: the tokens a long run emits before its window is full are exactly those of a
    run that never shifts (a larger window)."""
    small = engine_factory(tiny_llama_path, context={"n_ctx": 64},
                           cache={"mode": "live_slot_prefix", "retained_prefix_tokens": 4})
    large = engine_factory(tiny_llama_path, context={"n_ctx": 512})
    window = small.info.n_ctx_per_slot
    n_prompt = _prompt_tokens(small, PROMPT)
    before = window - n_prompt + 1  # tokens sampled before the first shift
    long_run = query(small, PROMPT, max_tokens=window + 40, ignore_eos=True, stream=True)
    pieces = [batch.text for batch in long_run.tokens()]
    result = long_run.result(120)
    assert result["local_stats"]["context_shifts"] >= 1  # type: ignore[index]
    reference = query(large, PROMPT, max_tokens=before, ignore_eos=True, stream=True)
    ref_pieces = [batch.text for batch in reference.tokens()]
    reference.result(60)
    assert len(ref_pieces) == before
    assert pieces[:before] == ref_pieces  # one push per sampled token


def test_stop_string_after_a_shift(engine_factory: Any, tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path, context={"n_ctx": 64})
    window = engine.info.n_ctx_per_slot
    probe = query(engine, PROMPT, max_tokens=window + 60, ignore_eos=True).result(120)
    text = probe["text"]
    assert probe["local_stats"]["context_shifts"] >= 1  # type: ignore[index]
    # a stop string that first appears late in the text (after the first shift)
    cut = len(text) * 3 // 4
    stop = text[cut : cut + 6]
    if text.find(stop) < len(text) // 2:
        pytest.skip("the tiny model's text repeats too early for a late stop string")
    stopped = query(engine, PROMPT, max_tokens=window + 60, ignore_eos=True,
                    stop=[stop]).result(120)
    assert stopped["finish_reason"] == "stop"
    assert stopped["text"] == text[: text.find(stop)]


def test_shared_prefix_sequence_is_undisturbed_by_a_shift(engine_factory: Any,
                                                          tiny_llama_path: Path) -> None:
    """Two slots share KV cells (live_slot_prefix copies a busy slot's prefix). One runs
    past the window and shifts; the other's output equals its output when run alone."""
    shared = "The quick brown fox jumps over the lazy dog. " * 2
    engine = engine_factory(tiny_llama_path, context={"n_ctx": 256, "n_parallel": 2},
                            cache={"mode": "live_slot_prefix", "retained_prefix_tokens": 4})
    assert engine.info.kv_unified
    window = engine.info.n_ctx_per_slot  # unified: the whole context
    alone = engine_factory(tiny_llama_path, context={"n_ctx": 256, "n_parallel": 2},
                           cache={"mode": "disabled"})
    short_prompt = shared + "Then"
    want = query(alone, short_prompt, max_tokens=40, ignore_eos=True).result(60)["text"]
    long_run = query(engine, shared + "Once", max_tokens=window + 60, ignore_eos=True,
                     stream=True)
    next(long_run.tokens())  # the long run holds its slot and has prefilled the shared prefix
    short = query(engine, short_prompt, max_tokens=40, ignore_eos=True).result(120)
    result = long_run.result(240)
    assert short["local_stats"]["cache_source"] == "live"  # type: ignore[index]
    assert short["local_stats"]["cached_tokens"] > 0  # type: ignore[index]
    assert short["text"] == want
    assert result["finish_reason"] == "length"
    assert result["local_stats"]["context_shifts"] >= 1  # type: ignore[index]
    # and afterwards the long run's shifted slot is reused only for what its KV holds
    again = query(engine, short_prompt, max_tokens=40, ignore_eos=True).result(60)
    assert again["text"] == want


@pytest.mark.parametrize("mode", ["context_key", "disabled"])
def test_neighbour_slot_is_undisturbed_while_one_shifts(engine_factory: Any,
                                                        tiny_llama_path: Path, mode: str) -> None:
    """Separate KV streams (kv_unified=False): one sequence shifts while the other is in
    the middle of its run; the other's output equals its output when run alone."""
    config: dict[str, Any] = {"context": {"n_ctx": 256, "n_parallel": 2, "kv_unified": False},
                              "cache": {"mode": mode}}
    engine = engine_factory(tiny_llama_path, **config)
    alone = engine_factory(tiny_llama_path, **config)
    window = engine.info.n_ctx_per_slot
    short_prompt = "The quick brown fox jumps over the lazy dog. Then"
    short_max = window - _prompt_tokens(engine, short_prompt) - 8  # never shifts
    long_prompt = "Once upon a time in a land far away there lived "
    while _prompt_tokens(engine, long_prompt) < window - short_max // 2:
        long_prompt += "a king and a queen who "  # shifts about halfway through the short run
    want = query(alone, short_prompt, max_tokens=short_max, ignore_eos=True).result(60)
    long_run = query(engine, long_prompt, max_tokens=window, ignore_eos=True, stream=True)
    next(long_run.tokens())
    short = query(engine, short_prompt, max_tokens=short_max, ignore_eos=True).result(120)
    shifted_meanwhile = engine.metrics()["scheduler"]["context_shifts"]
    result = long_run.result(120)
    assert shifted_meanwhile >= 1, "the long run did not shift while the short one ran"
    assert short["local_stats"]["context_shifts"] == 0  # type: ignore[index]
    assert short["text"] == want["text"]
    assert result["finish_reason"] == "length"
    assert result["usage"]["output_tokens"] == window  # type: ignore[index]
