"""Time to first token with a ~1,800-token shared prefix plus ~20 new tokens, reused vs cold:
Sipp (``cache.mode = "context_key"``, second request with the same ``context_key``) vs
``llama-server`` (one slot, ``cache_prompt``), in the same run.

Each trial uses a fresh prefix (so "cold" is really cold on both sides): request A =
prefix + suffix A (cold), request B = prefix + suffix B (reuses the prefix); both sides
stay loaded and take turns per trial. TTFT is the
caller's wall time of a ``max_tokens=1`` request (Sipp: ``query(...).result()``;
llama-server: one ``POST /completion`` with ``n_predict=1`` on loopback). Reported: both
TTFTs per side, reused/cold per side (target ≤ 0.03 for Sipp), and Sipp's reused TTFT over
llama-server's (target ≤ 1.5). Both sides: one slot, full-size SWA cache, same threads.

    python benchmarks/bench_prefix_reuse.py [--prefix 1800] [--suffix 20] [--trials 3]
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
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


Completer = Callable[[str, str], tuple[float, dict[str, Any]]]


@contextlib.contextmanager
def sipp_completer(ctx: c.Context, model: Path) -> Iterator[Completer]:
    """A loaded Sipp endpoint; yields ``ttft(prompt, key) -> (ms, local_stats)``."""
    import sipp

    config = c.sipp_config(
        ctx, n_ctx=N_CTX, cache={"mode": "context_key"}, extra_context={"swa_full": True}
    )
    with sipp.SippClient() as client:
        ref = client.add("bench", sipp.LocalModelDescriptor(model, config=config))

        def ttft(prompt: str, key: str) -> tuple[float, dict[str, Any]]:
            t0 = time.perf_counter()
            stats = c.sipp_text(client, ref, prompt, 1, context_key=key).result()["local_stats"]
            return (time.perf_counter() - t0) * 1000.0, dict(stats)

        yield ttft


@contextlib.contextmanager
def server_completer(ctx: c.Context, model: Path) -> Iterator[Completer]:
    """llama-server with one slot; yields ``ttft(prompt, key) -> (ms, timings)``."""
    t = str(ctx.args.threads)
    args = [
        "-m", str(model), "-c", str(N_CTX), "-np", "1", "-t", t, "-tb", t, "-b", "2048",
        "-ub", "512", "-fa", ctx.args.flash_attn, "--swa-full", "--no-webui",
    ]  # fmt: skip
    if not ctx.repack:
        args.append("--no-repack")
    with c.llama_server(ctx.build, args) as url:

        def ttft(prompt: str, key: str) -> tuple[float, dict[str, Any]]:
            body = {"prompt": prompt, "n_predict": 1, "temperature": 0, "cache_prompt": True}
            t0 = time.perf_counter()
            res = c.http_json(url + "/completion", body)
            ms = (time.perf_counter() - t0) * 1000.0
            return ms, {"tokens_cached": res.get("tokens_cached"), **(res.get("timings") or {})}

        yield ttft


def measure(sides: dict[str, Completer], trials: list[dict[str, str]]) -> dict[str, Any]:
    """Per trial and side: the cold request A, then the reused request B (same key).
    Sides alternate per trial so load drift hits both; each side has one slot, so a new
    trial's prefix evicts the previous one (cold is cold)."""
    out: dict[str, Any] = {n: {"cold_ms": [], "reused_ms": [], "stats": []} for n in sides}
    for warm in sides.values():
        warm("Warm up the engine.", "warm")
    for i, trial in enumerate(trials):
        order = list(sides.items()) if i % 2 == 0 else list(sides.items())[::-1]
        for name, ttft in order:
            for which, key in (("a", "cold_ms"), ("b", "reused_ms")):
                ms, stats = ttft(trial[which], f"doc-{i}")
                out[name][key].append(ms)
                out[name]["stats"].append({"trial": i, "request": which, **stats})
            c.log(f"trial {i + 1}: {name} cold {out[name]['cold_ms'][-1]:.0f} ms, "
                  f"reused {out[name]['reused_ms'][-1]:.0f} ms")  # fmt: skip
    return out


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
    with contextlib.ExitStack() as stack:
        sides: dict[str, Completer] = {}
        if ctx.wants("sipp"):
            sides["sipp"] = stack.enter_context(sipp_completer(ctx, model))
        if ctx.wants("llama-server"):
            sides["llama-server"] = stack.enter_context(server_completer(ctx, model))
        measured = measure(sides, trials)
    ours, peer = measured.get("sipp", {}), measured.get("llama-server", {})

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
