"""Aggregate decode throughput with 8 and 16 concurrent requests: Sipp (continuous batching,
``n_parallel`` = requests) vs ``llama-batched-bench`` with the same PP/TG/PL, and the same
8 requests through llama-cpp-python (one sequence per model: one request after another).

Each request has its own PP-token prompt and decodes TG tokens greedily with ``ignore_eos``.
Decode throughput (the target row) = tokens generated while every request is decoding /
that window (from the last request's first token to the first request's last token, from
per-token arrival times on the caller side), like llama-batched-bench's ``speed_tg`` =
PL*TG / t_tg over steps where all PL sequences decode. Sipp starts decoding the first
requests while later ones still arrive and prefill (continuous batching), so "decode from
1st token" (first first-token to last token) also counts those prefills and is reported
apart. Total throughput = PL*(PP+TG) / wall time from submission to the last token
(``speed``).
Both sides: KV cache not unified (llama-batched-bench's default), no prefix reuse.

    python benchmarks/bench_batched.py [--pp 128] [--tg 128] [--pl 8,16] [--json] [--out F]
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c


def batched_bench(ctx: c.Context, model: Path, pp: int, tg: int, pls: list[int]) -> list[Any]:
    """One llama-batched-bench run over every PL; returns its JSON lines."""
    cmd: list[Any] = [
        ctx.build.tool("llama-batched-bench"), "-m", model, "-c", max(pls) * (pp + tg),
        "-b", 2048, "-ub", 512, "-npp", pp, "-ntg", tg, "-npl", ",".join(map(str, pls)),
        "-t", ctx.args.threads, "-tb", ctx.args.threads,
        "-fa", ctx.args.flash_attn, "--output-format", "jsonl",
    ]  # fmt: skip
    if not ctx.repack:
        cmd.append("--no-repack")
    out = c.run_tool(cmd)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def token_times(run: Any) -> list[float]:
    """Arrival time of each token of ``run`` (consumed on the calling thread)."""
    return [time.perf_counter() for batch in run.tokens() for _ in range(batch.token_count)]


def steady_decode(times: list[list[float]]) -> tuple[float, int]:
    """``(seconds, tokens)`` of the window where every request is decoding: from the last
    request's first token to the first request's last token (llama-batched-bench's ``t_tg``
    covers exactly such steps: PL sequences decoding together, no prefill)."""
    start = max(t[0] for t in times)
    end = min(t[-1] for t in times)
    return end - start, sum(1 for ts in times for t in ts if start < t <= end)


def sipp_batch(ctx: c.Context, model: Path, prompts: list[str], pp: int, tg: int) -> dict[str, Any]:
    """Submit every prompt at once to an engine with one slot per prompt; time the batch."""
    import sipp

    pl = len(prompts)
    config = c.sipp_config(
        ctx, n_ctx=pl * (pp + tg + 32), n_parallel=pl, cache={"mode": "off"},
        extra_context={"kv_unified": False}, scheduler={"max_running_requests": pl},
    )  # fmt: skip
    with sipp.SippClient() as client, ThreadPoolExecutor(pl) as pool:
        ref = client.add("bench", sipp.LocalModelDescriptor(model, config=config))
        warm = [c.sipp_text(client, ref, p[:200], 4) for p in prompts]
        for run in warm:
            run.result()
        t0 = time.perf_counter()
        runs = [c.sipp_text(client, ref, p, tg + 1, emit_tokens=True) for p in prompts]
        stamps = list(pool.map(token_times, runs))
        results = [run.result() for run in runs]
        wall = time.perf_counter() - t0
    stats = [r["local_stats"] for r in results]
    firsts = [t0 + s["ttft_ms"] / 1000.0 for s in stats]
    lasts = [f + s["decode_ms"] / 1000.0 for f, s in zip(firsts, stats, strict=True)]
    decoded = sum(s["output_tokens"] - 1 for s in stats)
    prompt_tokens = sum(s["input_tokens"] for s in stats)
    out_tokens = sum(s["output_tokens"] for s in stats)
    steady_s, steady_tokens = steady_decode(stamps)
    return {
        "pl": pl, "wall_s": wall, "decode_window_s": max(lasts) - min(firsts),
        "decode_tokens_per_s": decoded / (max(lasts) - min(firsts)),
        "steady_decode_s": steady_s, "steady_decode_tokens": steady_tokens,
        "steady_decode_tokens_per_s": steady_tokens / steady_s,
        "total_tokens_per_s": (prompt_tokens + out_tokens - pl) / wall,
        "generated_tokens_per_s": out_tokens / wall,
        "prompt_tokens": prompt_tokens, "output_tokens": out_tokens,
        "ttft_ms": [s["ttft_ms"] for s in stats],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = c.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--pp", type=int, default=128, help="prompt tokens per request")
    p.add_argument("--tg", type=int, default=128, help="generated tokens per request")
    p.add_argument("--pl", default="8,16", help="concurrent requests, comma-separated")
    p.add_argument("--lcp-requests", type=int, default=8, help="requests for llama-cpp-python")
    args = p.parse_args(argv)
    pls = [int(x) for x in args.pl.split(",")]
    ctx = c.prepare(args)
    model = c.gemma_path()
    report = c.Report("batched", {
        "model": str(model), "native_dir": str(ctx.build.directory), "threads": args.threads,
        "pp": args.pp, "tg": args.tg, "pl": pls, "n_batch": 2048, "n_ubatch": 512,
        "kv_unified": False, "flash_attn": args.flash_attn, "repack": ctx.repack,
    })  # fmt: skip
    tok = c.Tokenizer(model)
    prompts = [tok.prompt(args.pp, 500 + i) for i in range(max([*pls, args.lcp_requests]))]
    tok.close()

    peer: dict[int, dict[str, Any]] = {}
    if ctx.wants("llama-batched-bench"):
        for line in batched_bench(ctx, model, args.pp, args.tg, pls):
            peer[int(line["pl"])] = line
    ours: dict[int, dict[str, Any]] = {}
    if ctx.wants("sipp"):
        for pl in pls:
            c.log(f"sipp: {pl} concurrent requests")
            ours[pl] = sipp_batch(ctx, model, prompts[:pl], args.pp, args.tg)
    for pl in pls:
        o, q = ours.get(pl, {}), peer.get(pl, {})
        target = (">=", 1.0) if pl == 8 else None
        report.rows.append(c.Row(
            f"decode PL={pl}", "tokens/s", o.get("steady_decode_tokens_per_s"), q.get("speed_tg"),
            "llama-batched-bench", target, "steps where all PL requests decode",
        ))  # fmt: skip
        report.rows.append(c.Row(
            f"decode from 1st token PL={pl}", "tokens/s", o.get("decode_tokens_per_s"),
            q.get("speed_tg"), "llama-batched-bench", None,
            "first first-token to last token: includes prefill of late arrivals",
        ))  # fmt: skip
        report.rows.append(c.Row(
            f"total pp+tg PL={pl}", "tokens/s", o.get("total_tokens_per_s"), q.get("speed"),
            "llama-batched-bench",
        ))  # fmt: skip

    lcp: dict[str, Any] = {}
    if ctx.lcp is not None and ctx.wants("llama-cpp-python"):
        lcp = ctx.run_lcp({
            "mode": "generate", "model": str(model), "prompts": prompts[:args.lcp_requests],
            "max_tokens": args.tg + 1, "threads": args.threads, "n_batch": 2048,
            "n_ubatch": 512, "n_ctx": args.pp + args.tg + 64, "repack": ctx.repack,
            "flash_attn": args.flash_attn == "on",
        })  # fmt: skip
        reqs = lcp["requests"]
        lcp["decode_tokens_per_s"] = sum(r["output_tokens"] - 1 for r in reqs) / sum(
            r["decode_s"] for r in reqs
        )
        lcp["generated_tokens_per_s"] = sum(r["output_tokens"] for r in reqs) / lcp["wall_s"]
        for r in reqs:
            r.pop("text", None)
    elif ctx.wants("llama-cpp-python"):
        report.skipped["llama-cpp-python"] = ctx.lcp_why
    n = args.lcp_requests
    o = ours.get(n, {})
    report.rows.append(c.Row(
        f"{n} requests generated", "tokens/s", o.get("generated_tokens_per_s"),
        lcp.get("generated_tokens_per_s"), "llama-cpp-python", (">=", 2.0),
        "wall time from submission to the last token, prefill included",
    ))  # fmt: skip
    report.rows.append(c.Row(
        f"{n} requests decode", "tokens/s", o.get("decode_tokens_per_s"),
        lcp.get("decode_tokens_per_s"), "llama-cpp-python",
    ))  # fmt: skip
    report.figures = {"sipp": ours, "llama_batched_bench": peer, "llama_cpp_python": lcp}
    c.emit(report, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
