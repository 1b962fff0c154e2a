"""KV reuse and KV-full preemption on a real (tiny) model: the native side of what the
scheduler tests check against a fake engine."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.engine.engine_helpers import query

PROMPTS = [f"The number {i} is" for i in range(4)]
PREFIX = "A long shared system prompt that every request of this test starts with. " * 3


def _cold(engine_factory: Any, path: Path, prompt: str, max_tokens: int) -> str:
    cold = engine_factory(path, cache={"mode": "disabled"})
    return str(query(cold, prompt, max_tokens=max_tokens, ignore_eos=True).result(30)["text"])


def test_kv_full_preempts_and_every_run_keeps_exactly_its_own_tokens(
    engine_factory: Any, tiny_llama_path: Path
) -> None:
    # Four sequences of ~125 tokens in one unified 256-cell cache cannot all fit: the
    # engine must preempt (llama_decode returns 1), requeue and resume without loss.
    engine = engine_factory(tiny_llama_path,
                            context={"n_parallel": 4, "n_ctx": 256, "kv_unified": True},
                            cache={"mode": "disabled"}, placement={"no_extra_bufts": False},
                            observability={"runtime_metrics": True})
    alone = [query(engine, p, max_tokens=120, ignore_eos=True).result(60)["text"]
             for p in PROMPTS]
    runs = [query(engine, p, max_tokens=120, ignore_eos=True, stream=True) for p in PROMPTS]
    results = [run.result(120) for run in runs]
    assert [r["text"] for r in results] == alone
    for run, result in zip(runs, results, strict=True):
        assert "".join(b.text for b in run.tokens()) == result["text"]
        assert result["usage"]["output_tokens"] == 120  # type: ignore[index]
    preempted = sum(r["local_stats"]["preemptions"] for r in results)  # type: ignore[index]
    assert preempted > 0, "the cache never filled: the test lost its teeth"
    metrics = engine.metrics()
    assert metrics["counters"]["preemptions"] == preempted
    assert metrics["scheduler"]["kv_full_events"] > 0
    assert "sipp_preemptions_total " + str(preempted) in engine.runtime_metrics.render_prometheus()
    assert all(state != "busy" for state, _, _ in engine.slot_states())


def test_live_slot_prefix_copies_a_busy_slots_prefix(engine_factory: Any,
                                                     tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path, context={"n_parallel": 2},
                            cache={"mode": "live_slot_prefix"})
    first = query(engine, PREFIX + "First question.", max_tokens=400, ignore_eos=True)
    deadline = time.monotonic() + 30
    while engine.slot_states()[0][1] == 0 and engine.slot_states()[1][1] == 0:
        assert time.monotonic() < deadline, "the first request never started"
        time.sleep(0.005)
    second = query(engine, PREFIX + "Second question.", max_tokens=8, ignore_eos=True)
    result = second.result(30)
    stats = result["local_stats"]
    assert stats is not None
    assert stats["cache_source"] == "live"
    assert stats["cached_tokens"] > 20  # the shared prefix came from the busy slot
    assert stats["prefill_tokens"] < result["usage"]["input_tokens"]  # type: ignore[index]
    first.cancel()
    assert first.result(30)["finish_reason"] in ("cancelled", "length")
    assert result["text"] == _cold(engine_factory, tiny_llama_path,
                                   PREFIX + "Second question.", 8)


def test_state_snapshot_restores_a_prefix_from_host_memory(engine_factory: Any,
                                                           tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path,
                            cache={"mode": "state_snapshot", "snapshot_interval_tokens": 8})
    query(engine, PREFIX + "First question.", max_tokens=4, ignore_eos=True).result(30)
    assert engine.metrics()["scheduler"]["snapshot_saves"] > 0
    result = query(engine, PREFIX + "Second question.", max_tokens=8, ignore_eos=True).result(30)
    stats = result["local_stats"]
    assert stats is not None
    assert stats["cache_source"] == "snapshot"
    assert stats["cached_tokens"] >= 16
    assert engine.metrics()["scheduler"]["snapshot_hits"] == 1
    assert result["text"] == _cold(engine_factory, tiny_llama_path,
                                   PREFIX + "Second question.", 8)


def test_snapshot_store_stays_within_its_entry_limit(engine_factory: Any,
                                                     tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path,
                            cache={"mode": "state_snapshot", "snapshot_interval_tokens": 4,
                                   "max_snapshot_entries": 3})
    for i in range(6):
        query(engine, f"Prompt number {i} with some words in it", max_tokens=2).result(30)
        assert len(engine.scheduler.snapshot_store) <= 3


def test_backend_profiling_reports_llama_perf_counters(engine_factory: Any,
                                                       tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path, observability={"backend_profiling": True})
    query(engine, "Profile this", max_tokens=6, ignore_eos=True).result(30)
    backend = engine.metrics()["backend"]
    assert backend["n_eval"] >= 5
    assert backend["n_p_eval"] >= 1
    assert backend["t_eval_ms"] > 0
    plain = engine_factory(tiny_llama_path)
    assert "backend" not in plain.metrics()


def test_separate_kv_streams_never_copy_a_busy_prefix(tiny_llama_path: Path,
                                                      native_backend: None) -> None:
    # With kv_unified=False each slot has its own KV stream and libllama aborts the whole
    # process on a partial seq_cp between them: run it in a child so a regression reads
    # as a failure, not a crashed test session.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        from pathlib import Path
        from sipp.engine.core import Engine
        from sipp.config import NativeRuntimeConfig
        from tests.engine.engine_helpers import query
        prefix = {PREFIX!r}
        engine = Engine.load({str(tiny_llama_path)!r}, NativeRuntimeConfig(
            context={{"n_parallel": 2, "n_ctx": 512, "kv_unified": False}},
            cache={{"mode": "live_slot_prefix"}}))
        first = query(engine, prefix + "one", max_tokens=150, ignore_eos=True, stream=True)
        next(iter(first.tokens()))
        second = query(engine, prefix + "two", max_tokens=10, ignore_eos=True).result(60)
        print(second["local_stats"]["cache_source"], first.result(60)["finish_reason"])
        engine.close()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["none", "length"]
