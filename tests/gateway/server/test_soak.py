"""The short soak (about two minutes): ``benchmarks/bench_soak.py`` drives requests with
random disconnects mid-stream, cancels and stop strings through a real ``sipp-gateway``
process and a tiny local model; afterwards every gauge is back to 0, no 5xx was answered,
no descriptor or thread leaked and RSS after warm-up grew by less than 5 %. The 30-minute
run is ``python benchmarks/bench_soak.py --duration 1800``."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.bench_soak import run_soak


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_minute_soak_returns_to_rest(tiny_llama_path: Path) -> None:
    report = run_soak(duration=100, requests=400, concurrency=64, model=tiny_llama_path)
    summary = {k: v for k, v in report.items() if k != "curve"}
    detail = (report["checks"], report["gauges"], report["end"], report["rss_growth_percent"])
    assert report["ok"], detail
    outcomes = report["outcomes"]
    assert outcomes.get("http_200", 0) > 100 and outcomes.get("disconnected", 0) > 10, summary
