"""Runtime metrics: counters, gauges, histograms, snapshot and Prometheus text."""

from __future__ import annotations

import re
import threading

import pytest

from sipp.engine.metrics import Histogram, RuntimeMetrics


def test_histogram_buckets_are_cumulative_with_inf() -> None:
    h = Histogram([0.1, 1.0])
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(v)
    assert h.cumulative() == [(0.1, 2), (1.0, 3), (float("inf"), 4)]
    assert h.sum == pytest.approx(3.65) and h.count == 4
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram([1.0, 0.5])


def test_records_update_counters_and_histograms() -> None:
    m = RuntimeMetrics()
    m.record_admission(prompt_tokens=100, reused_tokens=60)
    m.record_admission(prompt_tokens=10, reused_tokens=0)
    m.record_decode(n_requests=2, n_tokens=51)
    m.record_finish("length", generated_tokens=3, ttft_s=0.2, e2e_s=0.5, inter_token_s=[0.01, 0.02])
    m.record_finish("cancelled", generated_tokens=1, ttft_s=None, e2e_s=0.1)
    m.inc("preemptions")
    m.set_gauge("requests_queued", 4)
    snap = m.snapshot()
    counters = snap["counters"]
    assert counters == {  # type: ignore[comparison-overlap]
        "requests_started": 2,
        "requests_completed": 1,
        "requests_failed": 0,
        "requests_cancelled": 1,
        "prompt_tokens": 110,
        "generated_tokens": 4,
        "cache_hits": 1,
        "reused_tokens": 60,
        "decode_calls": 1,
        "preemptions": 1,
        "context_shifts": 0,
        "spec_draft_tokens": 0,
        "spec_accepted_tokens": 0,
    }
    assert snap["gauges"] == {"requests_running": 0.0, "requests_queued": 4}
    hists = snap["histograms"]
    assert isinstance(hists, dict)
    assert hists["inter_token_latency_seconds"]["count"] == 2
    assert hists["time_to_first_token_seconds"]["count"] == 1
    assert hists["batch_size_tokens"]["buckets"][-1] == [float("inf"), 1]
    with pytest.raises(ValueError, match="cannot decrease"):
        m.inc("decode_calls", -1)
    with pytest.raises(ValueError, match="reason must be one of"):
        m.record_finish("oops", generated_tokens=0, ttft_s=None, e2e_s=0)  # type: ignore[arg-type]


def test_prometheus_text_is_well_formed() -> None:
    m = RuntimeMetrics()
    m.record_decode(n_requests=3, n_tokens=3)
    m.observe("time_to_first_token_seconds", 0.07)
    text = m.render_prometheus("sipp_local", {"model": 'ge"m\\ma'})
    lines = text.splitlines()
    assert text.endswith("\n")
    assert "# TYPE sipp_local_decode_calls_total counter" in lines
    assert 'sipp_local_decode_calls_total{model="ge\\"m\\\\ma"} 1' in lines
    assert "# TYPE sipp_local_requests_running gauge" in lines
    assert "# TYPE sipp_local_time_to_first_token_seconds histogram" in lines
    assert (
        'sipp_local_time_to_first_token_seconds_bucket{model="ge\\"m\\\\ma",le="0.05"} 0' in lines
    )
    assert 'sipp_local_time_to_first_token_seconds_bucket{model="ge\\"m\\\\ma",le="0.1"} 1' in lines
    assert (
        'sipp_local_time_to_first_token_seconds_bucket{model="ge\\"m\\\\ma",le="+Inf"} 1' in lines
    )
    assert 'sipp_local_batch_size_requests_count{model="ge\\"m\\\\ma"} 1' in lines
    sample = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eInfNa]+$")
    for line in lines:
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    # every metric has exactly one HELP and one TYPE line
    helps = [ln.split()[2] for ln in lines if ln.startswith("# HELP")]
    assert len(helps) == len(set(helps)) == len([ln for ln in lines if ln.startswith("# TYPE")])


def test_prometheus_without_labels_and_bad_names() -> None:
    text = RuntimeMetrics().render_prometheus()
    assert "sipp_preemptions_total 0" in text.splitlines()
    with pytest.raises(ValueError, match="prefix must match"):
        RuntimeMetrics().render_prometheus("9bad")
    with pytest.raises(ValueError, match="not a valid Prometheus label name"):
        RuntimeMetrics().render_prometheus("sipp", {"le": "x"})


def test_updates_from_many_threads_are_not_lost() -> None:
    m = RuntimeMetrics()

    def work() -> None:
        for _ in range(5000):
            m.inc("generated_tokens")
            m.observe("inter_token_latency_seconds", 0.003)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = m.snapshot()
    assert snap["counters"]["generated_tokens"] == 20000  # type: ignore[index]
    assert snap["histograms"]["inter_token_latency_seconds"]["count"] == 20000  # type: ignore[index]
