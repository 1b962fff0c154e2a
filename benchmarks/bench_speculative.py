"""Speculative decoding (``speculative.mode = "ngram"``) vs off on Gemma 3 270M.

One engine, one model: each sample runs the same request with speculation off and with
the per-request override ``LocalTextOptions(speculative=SpeculativeConfig(mode="ngram"))``,
alternating, so drift on a shared machine hits both sides. Greedy throughout; the script
also reports whether the speculative text equals the plain text (it must).

- **input-grounded**: the prompt holds a passage (code) and asks for it back; 256 new
  tokens at most; single-stream decode tok/s (``local_stats.decode_tokens_per_second``).
  Target: ngram ≥ 1.6× off.
- **free**: a story prompt with no overlap to copy; 256 tokens (``ignore_eos``). Target:
  ngram costs ≤ 3 %.
- **concurrent**: 8 input-grounded requests at once (``n_parallel`` 8): aggregate output
  tokens / wall time. Target: ngram ≥ 1.0× off.

Peers (llama-cpp-python ``LlamaPromptLookupDecoding``, ``llama-lookup``) are not run here.

    python benchmarks/bench_speculative.py [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

from sipp.config import NativeRuntimeConfig, SamplingRuntimeConfig, SpeculativeConfig
from sipp.engine.core import Engine
from sipp.requests import TextRequest
from sipp.runs import RunSink, SippTextRun
from sipp.scheduler import _budget, _spans
from sipp.types import EndpointRef, LocalTextOptions, SippTextOptions

REF = EndpointRef.local("bench")
NGRAM = SpeculativeConfig(mode="ngram")
PASSAGES = [inspect.getsource(_budget.split_budget), inspect.getsource(_budget.fair_shares),
            inspect.getsource(_spans)]
FREE = "Write a long story about a lighthouse keeper who finds a map in a bottle.\n\n"


def grounded(passage: str) -> str:
    return ("Copy the following Python code exactly, line by line.\n\n```python\n"
            f"{passage}```\n\nThe same code, copied:\n\n```python\n")


def run(engine: Engine, prompt: str, spec: SpeculativeConfig | None, *,
        ignore_eos: bool = False) -> SippTextRun:
    sampling = SamplingRuntimeConfig(ignore_eos=True) if ignore_eos else None
    local = LocalTextOptions(speculative=spec, sampling=sampling)
    options = SippTextOptions(max_tokens=256, temperature=0.0)
    sink = RunSink(REF, wants_tokens=False)
    engine.submit_text(TextRequest("query", prompt, None, options, local, None, None, False),
                       sink)
    return SippTextRun(sink)


def single(engine: Engine, prompt: str, spec: SpeculativeConfig | None,
           ignore_eos: bool = False) -> dict[str, Any]:
    result = run(engine, prompt, spec, ignore_eos=ignore_eos).result(600)
    stats = result["local_stats"]
    return {"text": result["text"], "tps": stats["decode_tokens_per_second"],  # type: ignore[index]
            "n": result["usage"]["output_tokens"],  # type: ignore[index]
            "accepted": stats.get("accepted_tokens", 0),  # type: ignore[union-attr]
            "drafted": stats.get("draft_tokens", 0)}  # type: ignore[union-attr]


def together(engine: Engine, prompts: list[str], spec: SpeculativeConfig | None) -> dict[str, Any]:
    start = time.perf_counter()
    runs = [run(engine, p, spec) for p in prompts]
    results = [r.result(600) for r in runs]
    wall = time.perf_counter() - start
    n = sum(r["usage"]["output_tokens"] for r in results)  # type: ignore[index]
    return {"texts": [r["text"] for r in results], "tps": n / wall, "n": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    model = c.gemma_path()
    engine = Engine.load(str(model), NativeRuntimeConfig(
        context={"n_parallel": 8, "n_ctx": 8 * 2048}, cache={"mode": "disabled"}))
    out: dict[str, Any] = {"model": model.name, "machine": c.machine_state()}
    try:
        single(engine, grounded(PASSAGES[0]), None)  # warm-up
        rows: dict[str, dict[str, list[float]]] = {}
        same: dict[str, bool] = {}
        extra: dict[str, Any] = {}
        for _ in range(args.rounds):
            for name, prompt, eos in (("input_grounded", grounded(PASSAGES[0]), False),
                                      ("free", FREE, True)):
                off = single(engine, prompt, None, eos)
                ngram = single(engine, prompt, NGRAM, eos)
                row = rows.setdefault(name, {"off": [], "ngram": []})
                row["off"].append(off["tps"])
                row["ngram"].append(ngram["tps"])
                same[name] = same.get(name, True) and off["text"] == ngram["text"]
                extra[name] = {"output_tokens": ngram["n"], "drafted": ngram["drafted"],
                               "accepted": ngram["accepted"]}
                c.log(f"{name}: off {off['tps']:.1f} tok/s, ngram {ngram['tps']:.1f} tok/s")
            prompts = [grounded(PASSAGES[i % len(PASSAGES)]) for i in range(8)]
            off8 = together(engine, prompts, None)
            ngram8 = together(engine, prompts, NGRAM)
            row = rows.setdefault("concurrent_8", {"off": [], "ngram": []})
            row["off"].append(off8["tps"])
            row["ngram"].append(ngram8["tps"])
            same["concurrent_8"] = same.get("concurrent_8", True) and (
                off8["texts"] == ngram8["texts"])
            c.log(f"8 concurrent: off {off8['tps']:.1f} tok/s, ngram {ngram8['tps']:.1f} tok/s")
        out["speculative"] = engine.metrics()["speculative"]
        table = {}
        for name, row in rows.items():
            off_m, ng_m = statistics.median(row["off"]), statistics.median(row["ngram"])
            table[name] = {"off_tps": off_m, "ngram_tps": ng_m, "ratio": ng_m / off_m,
                           "same_text": same[name], **extra.get(name, {})}
        out["results"] = table
    finally:
        engine.close()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{'case':<16}{'off tok/s':>11}{'ngram tok/s':>13}{'ratio':>8}  same text")
    for name, row in out["results"].items():
        print(f"{name:<16}{row['off_tps']:>11.1f}{row['ngram_tps']:>13.1f}"
              f"{row['ratio']:>8.2f}  {row['same_text']}")
    print("targets: input_grounded >= 1.6, free >= 0.97, concurrent_8 >= 1.0")


if __name__ == "__main__":
    main()
