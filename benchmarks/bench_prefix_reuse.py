"""Time to first token with a ~1,800-token shared prefix plus ~20 new tokens, reused vs cold:
Sipp (``cache.mode = "context_key"``, second request with the same ``context_key``) vs
``llama-server`` (one slot, ``cache_prompt``), in the same run.

Each trial uses a fresh prefix (so "cold" is really cold on both sides): request A =
prefix + suffix A (cold), request B = prefix + suffix B (reuses the prefix). TTFT is the
caller's wall time of a ``max_tokens=1`` request (Sipp: ``query(...).result()``;
llama-server: one ``POST /completion`` with ``n_predict=1`` on loopback). Reported: both
TTFTs per side, reused/cold per side (target ≤ 0.03 for Sipp), and Sipp's reused TTFT over
llama-server's (target ≤ 1.5). Both sides: one slot, full-size SWA cache, same threads.

    python benchmarks/bench_prefix_reuse.py [--prefix 1800] [--suffix 20] [--trials 3]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

N_CTX = 4096


def make_trials(model: Path, n_prefix: int, n_suffix: int, trials: int) -> list[dict[str, str]]:
    """Per trial: a distinct prefix of ``n_prefix`` tokens and two ``n_suffix``-token tails."""
    tok = c.Tokenizer(model)
    try:
        out = []
        for i in range(trials):
            prefix = f"Document {i}. " + tok.prompt(n_prefix - 4, 7000 + i)
            a = " Question: " + c.word_text(max(n_suffix - 3, 1), 8000 + i)
            b = " Question: " + c.word_text(max(n_suffix - 3, 1), 9000 + i)
            out.append({"a": prefix + a, "b": prefix + b})
        counts = [(tok.count(t["a"]), tok.count(t["b"])) for t in out]
    finally:
        tok.close()
    c.log(f"prompt tokens per trial (cold, reused): {counts}")
    return out


def sipp_side(ctx: c.Context, model: Path, trials: list[dict[str, str]]) -> dict[str, Any]:
    import sipp

    config = c.sipp_config(
        ctx, n_ctx=N_CTX, cache={"mode": "context_key"}, extra_context={"swa_full": True}
    )
    cold: list[float] = []
    reused: list[float] = []
    stats: list[dict[str, Any]] = []
    with sipp.SippClient() as client:
        ref = client.add("bench", sipp.LocalModelDescriptor(model, config=config))
        c.sipp_text(client, ref, "Warm up the engine.", 4, context_key="warm").result()
        for i, trial in enumerate(trials):
            for which, sink in (("a", cold), ("b", reused)):
                t0 = time.perf_counter()
                run = c.sipp_text(client, ref, trial[which], 1, context_key=f"doc-{i}")
                st = run.result()["local_stats"]
                sink.append((time.perf_counter() - t0) * 1000.0)
                stats.append({"trial": i, "request": which, **st})
    return {"cold_ms": cold, "reused_ms": reused, "local_stats": stats}


def server_side(ctx: c.Context, model: Path, trials: list[dict[str, str]]) -> dict[str, Any]:
    t = str(ctx.args.threads)
    args = [
        "-m", str(model), "-c", str(N_CTX), "-np", "1", "-t", t, "-tb", t, "-b", "2048",
        "-ub", "512", "-fa", ctx.args.flash_attn, "--swa-full", "--no-webui",
    ]  # fmt: skip
    if not ctx.repack:
        args.append("--no-repack")
    cold: list[float] = []
    reused: list[float] = []
    timings: list[dict[str, Any]] = []
    with c.llama_server(ctx.build, args) as url:

        def complete(prompt: str) -> tuple[float, dict[str, Any]]:
            body = {"prompt": prompt, "n_predict": 1, "temperature": 0, "cache_prompt": True}
            t0 = time.perf_counter()
            res = c.http_json(url + "/completion", body)
            return (time.perf_counter() - t0) * 1000.0, res

        complete("Warm up the server.")
        for i, trial in enumerate(trials):
            for which, sink in (("a", cold), ("b", reused)):
                ms, res = complete(trial[which])
                sink.append(ms)
                timings.append(
                    {"trial": i, "request": which, "tokens_cached": res.get("tokens_cached"),
                     **(res.get("timings") or {})}
                )  # fmt: skip
    return {"cold_ms": cold, "reused_ms": reused, "timings": timings}


def main(argv: list[str] | None = None) -> int:
    p = c.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--prefix", type=int, default=1800, help="shared prefix tokens")
    p.add_argument("--suffix", type=int, default=20, help="new tokens (approximate)")
    p.add_argument("--trials", type=int, default=3)
    args = p.parse_args(argv)
    ctx = c.prepare(args)
    model = c.gemma_path()
    report = c.Report("prefix_reuse", {
        "model": str(model), "native_dir": str(ctx.build.directory), "threads": args.threads,
        "prefix_tokens": args.prefix, "suffix_tokens": args.suffix, "trials": args.trials,
        "n_ctx": N_CTX, "slots": 1, "swa_full": True, "flash_attn": args.flash_attn,
        "repack": ctx.repack, "statistic": "median over trials",
    })  # fmt: skip
    trials = make_trials(model, args.prefix, args.suffix, args.trials)
    ours = sipp_side(ctx, model, trials) if ctx.wants("sipp") else {}
    peer = server_side(ctx, model, trials) if ctx.wants("llama-server") else {}

    def med(side: dict[str, Any], key: str) -> float | None:
        return c.median(side[key]) if side.get(key) else None

    o_cold, o_re = med(ours, "cold_ms"), med(ours, "reused_ms")
    s_cold, s_re = med(peer, "cold_ms"), med(peer, "reused_ms")
    o_rc = o_re / o_cold if o_re and o_cold else None
    s_rc = s_re / s_cold if s_re and s_cold else None
    report.rows += [
        c.Row("TTFT cold", "ms", o_cold, s_cold, "llama-server"),
        c.Row("TTFT reused", "ms", o_re, s_re, "llama-server", ("<=", 1.5)),
        c.Row("reused / cold", "fraction", o_rc, s_rc, "llama-server", ("<=", 0.03),
              target_on_ours=True),
    ]  # fmt: skip
    report.figures = {"sipp": ours, "llama_server": peer}
    c.emit(report, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
