"""Speculative decoding (``speculative.mode = "ngram"``) vs off on Gemma 3 270M.

One engine, one model: each sample runs the same request with speculation off and with
the per-request override ``LocalTextOptions(speculative=SpeculativeConfig(mode="ngram"))``,
alternating (the side that goes first swaps every round), so drift on a shared machine
hits both sides. Greedy throughout; the script
also reports whether the speculative text equals the plain text (it must).

- **input-grounded**: the prompt holds a passage (code) and asks for it back; 256 new
  tokens at most; single-stream decode tok/s (``local_stats.decode_tokens_per_second``).
  Target: ngram ≥ 1.6× off.
- **free**: a story prompt with no overlap to copy; 256 tokens (``ignore_eos``). Target:
  ngram costs ≤ 3 %. Greedy, a 270M base model soon repeats itself, and n-grams of its own
  text then pay; **free_sampled** (temperature 0.8, a fixed seed) keeps drafts mostly
  wrong and shows what speculation costs when it does not pay (the two sides' texts
  differ there: each keeps the target distribution, not the same random draws).
- **concurrent**: 8 input-grounded requests at once (``n_parallel`` 8): aggregate output
  tokens / wall time. Target: ngram ≥ 1.0× off.

- **deterministic**: 8 concurrent free generations (128 tokens) on an engine with
  ``scheduler.deterministic = true`` vs the default engine: aggregate tok/s and how many
  of the 8 answers equal the same prompt alone. Target: cost ≤ 15 %.

Peers, on the input-grounded prompt, each round next to Sipp's samples (same GGUF, same
libllama build, threads, flash attention, repacking; greedy; 256 new tokens; drafts of at
most ``max_draft_tokens`` = 8; raw prompt text with BOS, no chat template on any side):

- **llama-lookup**: llama.cpp's prompt-lookup example, compiled from the pinned source
  against the tools build's own libraries (``_lookup.py``); ``--spec-draft-n-max 8``,
  ``--temp 0 --top-k 1``, n-grams 1..4 (its compile-time sizes). Decode tok/s from the
  timings it prints: tokens after the first / decode seconds.
- **llama-cpp-python** ``Llama(draft_model=LlamaPromptLookupDecoding(num_pred_tokens=8,
  max_ngram_size=4))`` through ``Llama.generate`` (``_lcp_worker.py`` mode ``lookup``):
  tokens after the first / seconds from the first token to the last.

Sipp's figure is ``local_stats.decode_tokens_per_second`` (output tokens after the first /
time from the first token to the last). Target: Sipp ngram ≥ 1.0× the better peer. A peer
that is missing or fails is reported as skipped; ``--skip llama-lookup`` and
``--skip llama-cpp-python`` leave one out.

    python benchmarks/bench_speculative.py [--rounds 2] [--threads N] [--json] [--out F]
        [--skip llama-lookup] [--skip llama-cpp-python] [--setup-peers]
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c
import _lookup

from sipp.config import NativeRuntimeConfig, SamplingRuntimeConfig, SpeculativeConfig
from sipp.engine.core import Engine
from sipp.errors import SippError
from sipp.requests import TextRequest
from sipp.runs import RunSink, SippTextRun
from sipp.scheduler import _budget, _spans
from sipp.types import EndpointRef, LocalTextOptions, SippTextOptions

REF = EndpointRef.local("bench")
NGRAM = SpeculativeConfig(mode="ngram")
PASSAGES = [inspect.getsource(_budget.split_budget), inspect.getsource(_budget.fair_shares),
            inspect.getsource(_spans)]
SEED = 7
FREE = "Write a long story about a lighthouse keeper who finds a map in a bottle.\n\n"


def grounded(passage: str) -> str:
    return ("Copy the following Python code exactly, line by line.\n\n```python\n"
            f"{passage}```\n\nThe same code, copied:\n\n```python\n")


def run(engine: Engine, prompt: str, spec: SpeculativeConfig | None, *,
        ignore_eos: bool = False, max_tokens: int = 256, temperature: float = 0.0
        ) -> SippTextRun:
    sampling = SamplingRuntimeConfig(ignore_eos=True, seed=SEED) if ignore_eos else None
    local = LocalTextOptions(speculative=spec, sampling=sampling)
    options = SippTextOptions(max_tokens=max_tokens, temperature=temperature)
    sink = RunSink(REF, wants_tokens=False)
    engine.submit_text(TextRequest("query", prompt, None, options, local, None, None, False),
                       sink)
    return SippTextRun(sink)


def single(engine: Engine, prompt: str, spec: SpeculativeConfig | None,
           ignore_eos: bool = False, temperature: float = 0.0) -> dict[str, Any]:
    result = run(engine, prompt, spec, ignore_eos=ignore_eos,
                 temperature=temperature).result(600)
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
    n = sum(r["usage"]["output_tokens"] for r in results)  # type: ignore[index,misc]
    return {"texts": [r["text"] for r in results], "tps": n / wall, "n": n}


PEERS = ("llama-lookup", "llama-cpp-python")
PEER_CTX = 4096  # the grounded prompt (~600 tokens) plus 256 new tokens fit with room


def deterministic_cost(ctx: c.Context, model: Path, rounds: int) -> dict[str, Any]:
    """Aggregate tok/s of 8 concurrent free generations, default vs deterministic mode
    (each round loads each mode's engine alone, the order swapping every round; medians),
    and how many concurrent answers equal the answer alone in each. One engine at a time:
    two loaded engines slow each other down on two cores even when one is idle."""
    prompts = [f"Write a story about {w}.\n\n" for w in
               "a fox,the sea,a clock,rain,a king,bread,a robot,snow".split(",")]
    threads = ctx.args.threads  # placement and flash attention: each mode's defaults
    modes = {"default": False, "deterministic": True}
    row: dict[str, Any] = {}
    samples: dict[str, list[float]] = {name: [] for name in modes}
    alone: dict[str, list[str]] = {}
    for r in range(rounds):
        for name in (list(modes) if r % 2 == 0 else list(reversed(modes))):
            engine = Engine.load(str(model), NativeRuntimeConfig(
                context={"n_parallel": 8, "n_threads": threads, "n_threads_batch": threads},
                scheduler={"deterministic": modes[name]}))
            try:
                if name not in alone:
                    alone[name] = [run(engine, p, None, ignore_eos=True, max_tokens=128)
                                   .result(600)["text"] for p in prompts[:4]]
                start = time.perf_counter()
                runs = [run(engine, p, None, ignore_eos=True, max_tokens=128) for p in prompts]
                results = [x.result(600) for x in runs]
                wall = time.perf_counter() - start
            finally:
                engine.close()
            n = sum(x["usage"]["output_tokens"] for x in results)  # type: ignore[index,misc]
            samples[name].append(n / wall)
            same = sum(a == x["text"] for a, x in zip(alone[name], results[:4], strict=True))
            row[f"{name}_same_as_alone"] = min(row.get(f"{name}_same_as_alone", 4), same)
            c.log(f"{name}: {n / wall:.1f} tok/s over 8 concurrent")
    for name, values in samples.items():
        row[f"{name}_tps"] = statistics.median(values)
        row[f"{name}_samples"] = values
    row["cost"] = 1.0 - row["deterministic_tps"] / row["default_tps"]
    return row


def common_prefix(a: str, b: str) -> int:
    """Characters ``a`` and ``b`` share from the start."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)))


class Peers:
    """The prompt-lookup peers on the input-grounded prompt; a peer that cannot run is
    recorded in ``skipped`` with the reason and left out of later rounds."""

    def __init__(self, ctx: c.Context, model: Path) -> None:
        self.ctx, self.model = ctx, model
        self.samples: dict[str, list[dict[str, Any]]] = {}
        self.skipped: dict[str, str] = {}
        self.lookup: Path | None = None
        for peer in PEERS:
            if not ctx.wants(peer):
                self.skipped[peer] = "--skip"
        if ctx.wants("llama-lookup"):
            try:
                from build_scripts.llama_source import cache_root

                self.lookup = _lookup.ensure_lookup(ctx.build.directory, cache_root() / "bench")
            except (OSError, RuntimeError) as exc:
                self.skipped["llama-lookup"] = f"not built: {exc}"
        if ctx.wants("llama-cpp-python") and ctx.lcp is None:
            self.skipped["llama-cpp-python"] = ctx.lcp_why

    def sample(self, prompt: str) -> None:
        """One run of every available peer on ``prompt``."""
        args = self.ctx.args
        flash = args.flash_attn == "on"
        if "llama-lookup" not in self.skipped and self.lookup is not None:
            self._try("llama-lookup", lambda: _lookup.run_lookup(
                self.lookup, self.model, prompt, n_predict=256,
                draft_max=NGRAM.max_draft_tokens, threads=args.threads, n_ctx=PEER_CTX,
                flash_attn=flash, repack=self.ctx.repack))
        if "llama-cpp-python" not in self.skipped:
            self._try("llama-cpp-python", lambda: self.ctx.run_lcp({
                "mode": "lookup", "model": str(self.model), "prompts": [prompt],
                "max_tokens": 256, "num_pred_tokens": NGRAM.max_draft_tokens,
                "max_ngram_size": NGRAM.ngram_max, "threads": args.threads,
                "n_ctx": PEER_CTX, "n_batch": 2048, "n_ubatch": 512,
                "repack": self.ctx.repack, "flash_attn": flash,
            }, timeout=900)["requests"][0])

    def _try(self, peer: str, measure: Any) -> None:
        try:
            figures = dict(measure())
        except (OSError, RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            self.skipped[peer] = f"failed: {exc}"
            c.log(f"{peer} failed: {exc}")
            return
        self.samples.setdefault(peer, []).append(figures)
        c.log(f"{peer}: {figures['decode_tokens_per_s']:.1f} tok/s "
              f"({figures['output_tokens']} tokens)")

    def summary(self, sipp_tps: float, sipp_text: str) -> dict[str, Any]:
        """Per peer: median decode tok/s, samples, draft counters and how much of Sipp's
        greedy text it reproduces; then the better peer and Sipp ngram / that peer."""
        peers: dict[str, Any] = {}
        for peer, samples in self.samples.items():
            text = str(samples[-1].get("text", ""))
            same = common_prefix(text, sipp_text)
            peers[peer] = {
                "tps": statistics.median(s["decode_tokens_per_s"] for s in samples),
                "samples": [s["decode_tokens_per_s"] for s in samples],
                "output_tokens": samples[-1]["output_tokens"],
                "drafted": samples[-1].get("n_drafted"),
                "accepted": samples[-1].get("n_accept"),
                "draft_calls": samples[-1].get("draft_calls"),
                "same_text_prefix_chars": same,
                "sipp_text_chars": len(sipp_text),
            }
        out: dict[str, Any] = {"peers": peers, "skipped": dict(self.skipped)}
        if peers:
            best = max(peers, key=lambda k: peers[k]["tps"])
            out.update(best_peer=best, best_peer_tps=peers[best]["tps"],
                       ratio_vs_best_peer=sipp_tps / peers[best]["tps"])
        return out


def measure(ctx: c.Context, model: Path, rounds: int) -> dict[str, Any]:
    """Sipp off vs ngram on the three cases, the peers beside the grounded case."""
    engine = Engine.load(str(model), c.sipp_config(
        ctx, n_ctx=8 * 2048, n_parallel=8, cache={"mode": "disabled"}))
    peers = Peers(ctx, model)
    out: dict[str, Any] = {}
    try:
        single(engine, grounded(PASSAGES[0]), None)  # warm-up
        rows: dict[str, dict[str, list[float]]] = {}
        same: dict[str, bool] = {}
        extra: dict[str, Any] = {}
        texts: dict[str, str] = {}
        for r in range(rounds):
            c.log(f"round {r + 1}/{rounds}")
            ngram_first = r % 2 == 1  # drift on a shared machine hits both sides alike
            for name, prompt, eos, temp in (
                    ("input_grounded", grounded(PASSAGES[0]), False, 0.0),
                    ("free", FREE, True, 0.0), ("free_sampled", FREE, True, 0.8)):
                if ngram_first:
                    ngram = single(engine, prompt, NGRAM, eos, temp)
                off = single(engine, prompt, None, eos, temp)
                if not ngram_first:
                    ngram = single(engine, prompt, NGRAM, eos, temp)
                if name == "input_grounded":
                    peers.sample(prompt)
                row = rows.setdefault(name, {"off": [], "ngram": []})
                row["off"].append(off["tps"])
                row["ngram"].append(ngram["tps"])
                same[name] = same.get(name, True) and off["text"] == ngram["text"]
                texts[name] = ngram["text"]
                extra[name] = {"output_tokens": ngram["n"], "drafted": ngram["drafted"],
                               "accepted": ngram["accepted"]}
                c.log(f"{name}: off {off['tps']:.1f} tok/s, ngram {ngram['tps']:.1f} tok/s")
            prompts = [grounded(PASSAGES[i % len(PASSAGES)]) for i in range(8)]
            if ngram_first:
                ngram8 = together(engine, prompts, NGRAM)
            off8 = together(engine, prompts, None)
            if not ngram_first:
                ngram8 = together(engine, prompts, NGRAM)
            row = rows.setdefault("concurrent_8", {"off": [], "ngram": []})
            row["off"].append(off8["tps"])
            row["ngram"].append(ngram8["tps"])
            same["concurrent_8"] = same.get("concurrent_8", True) and (
                off8["texts"] == ngram8["texts"])
            c.log(f"8 concurrent: off {off8['tps']:.1f} tok/s, ngram {ngram8['tps']:.1f} tok/s")
        out["speculative"] = engine.metrics()["speculative"]
        table: dict[str, Any] = {}
        for name, row in rows.items():
            off_m, ng_m = statistics.median(row["off"]), statistics.median(row["ngram"])
            table[name] = {"off_tps": off_m, "ngram_tps": ng_m, "ratio": ng_m / off_m,
                           "same_text": same[name], "off_samples": row["off"],
                           "ngram_samples": row["ngram"], **extra.get(name, {})}
        grounded_row = table["input_grounded"]
        grounded_row.update(peers.summary(grounded_row["ngram_tps"], texts["input_grounded"]))
        out["results"] = table
    finally:
        engine.close()
    return out


def print_table(out: dict[str, Any]) -> None:
    print(f"{'case':<16}{'off tok/s':>11}{'ngram tok/s':>13}{'ratio':>8}  same text")
    results = out["results"]
    for name, row in results.items():
        if name == "deterministic_8":
            continue
        print(f"{name:<16}{row['off_tps']:>11.1f}{row['ngram_tps']:>13.1f}"
              f"{row['ratio']:>8.2f}  {row['same_text']}")
    print("targets: input_grounded >= 1.6, free and free_sampled >= 0.97, concurrent_8 >= 1.0")
    print("same text: greedy sides must match alone; free_sampled draws differ by design, and "
          "8 concurrent in the default mode may differ (batch composition changes float "
          "order; see deterministic mode)")
    grounded_row = results["input_grounded"]
    print(f"\npeers on input_grounded (greedy, 256 tokens, drafts <= {NGRAM.max_draft_tokens}):")
    print(f"  {'Sipp ngram':<44}{grounded_row['ngram_tps']:>8.1f} tok/s  drafted "
          f"{grounded_row['drafted']}, accepted {grounded_row['accepted']}")
    labels = {"llama-lookup": "llama-lookup",
              "llama-cpp-python": "llama-cpp-python LlamaPromptLookupDecoding"}
    for peer, row in grounded_row["peers"].items():
        counts = f"drafted {row['drafted']}" + (
            f", accepted {row['accepted']}" if row["accepted"] is not None
            else f" in {row['draft_calls']} steps")
        print(f"  {labels[peer]:<44}{row['tps']:>8.1f} tok/s  {counts}; same text as Sipp "
              f"for {row['same_text_prefix_chars']}/{row['sipp_text_chars']} chars")
    for peer, why in grounded_row["skipped"].items():
        print(f"  skipped {peer}: {why}")
    if "best_peer" in grounded_row:
        ratio = grounded_row["ratio_vs_best_peer"]
        print(f"  Sipp ngram / {grounded_row['best_peer']} (the better peer): {ratio:.2f}  "
              f"target >= 1.0: {'yes' if ratio >= 1.0 else 'NO'}")
    row = results.get("deterministic_8")
    if row is not None and "error" in row:
        print(f"deterministic_8: failed: {row['error']}")
    elif row is not None:
        print(f"deterministic_8: default {row['default_tps']:.1f} tok/s, deterministic "
              f"{row['deterministic_tps']:.1f} tok/s, cost {100 * row['cost']:.1f} %, "
              f"same as alone {row['default_same_as_alone']}/4 vs "
              f"{row['deterministic_same_as_alone']}/4")
    before, after = out["machine"].get("loadavg"), out["machine_after"].get("loadavg")
    print(f"load average before {c.fmt_load(before)}, after {c.fmt_load(after)}")
    busy = out["machine"].get("busy_processes") or []
    if busy:
        print("busy at start: " + ", ".join(busy[:6]))


def main(argv: list[str] | None = None) -> int:
    parser = c.base_parser(__doc__.split("\n\n")[0])
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("--skip names here: llama-lookup, llama-cpp-python (the peers), "
                     "deterministic (the deterministic-mode case).")
    parser.add_argument("--rounds", type=int, default=2, help="samples per case and side")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.skip) - {*PEERS, "deterministic"})
    if unknown:
        parser.error(f"--skip: unknown {', '.join(unknown)}; expected llama-lookup, "
                     "llama-cpp-python or deterministic")
    ctx = c.prepare(args)
    model = c.gemma_path()
    out: dict[str, Any] = {
        "model": model.name, "machine": c.machine_state(),
        "settings": {"native_dir": str(ctx.build.directory), "threads": args.threads,
                     "flash_attn": args.flash_attn, "repack": ctx.repack,
                     "rounds": args.rounds, "max_draft_tokens": NGRAM.max_draft_tokens,
                     "ngram_min": NGRAM.ngram_min, "ngram_max": NGRAM.ngram_max,
                     "lcp_python": str(ctx.lcp) if ctx.lcp else None},
    }
    out.update(measure(ctx, model, args.rounds))
    if ctx.wants("deterministic"):
        try:
            out["results"]["deterministic_8"] = deterministic_cost(ctx, model, max(2, args.rounds))
        except SippError as exc:  # keep the figures above; say why this case is missing
            out["results"]["deterministic_8"] = {"error": str(exc)}
            c.log(f"deterministic case failed: {exc}")
    out["machine_after"] = c.machine_state()
    text = json.dumps(out, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print_table(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
