"""Single-stream prefill and decode tokens/s: Sipp vs ``llama-bench -p 512 -n 128``.

Both sides use the same GGUF, the same llama.cpp build, threads, n_batch/n_ubatch, flash
attention and weight-repacking choice. llama-bench times ``pp512`` (one 512-token prompt)
and ``tg128`` (128 single-token decodes) separately; Sipp mirrors that with a 512-token
prompt and ``max_tokens=1`` (prefill = prompt tokens / time to first token, measured from
the request's arrival in the engine) and a 4-token prompt with ``max_tokens=129`` and
``ignore_eos`` (decode = 128 / time from the first to the last token). KV reuse is off and
every sample uses a fresh prompt. Each side warms up like llama-bench (one full-size prompt,
then one generated token) before its first sample. Each round runs the prefill test on both
sides, then the decode test on both sides (llama-bench once with ``-n 0``, once with
``-p 0``), so the samples compared were taken seconds apart and load drift hits both.

    python benchmarks/bench_single_stream.py [--rounds 3] [--reps 3] [--json] [--out F]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c


def llama_bench(
    ctx: c.Context, model: Path, n_prompt: int, n_gen: int, reps: int
) -> dict[str, Any]:
    """One llama-bench run (``n_prompt`` or ``n_gen`` may be 0 to skip that test); returns the
    per-sample tokens/s of pp and tg."""
    out = c.run_tool(
        [
            ctx.build.tool("llama-bench"),
            "-m",
            model,
            "-p",
            n_prompt,
            "-n",
            n_gen,
            "-t",
            ctx.args.threads,
            "-b",
            2048,
            "-ub",
            512,
            "-r",
            reps,
            "-fa",
            "1" if ctx.args.flash_attn == "on" else "0",
            "--repack",
            int(ctx.repack),
            "-o",
            "json",
        ]
    )
    samples: dict[str, list[float]] = {"pp": [], "tg": []}
    for test in json.loads(out):
        key = "pp" if test["n_prompt"] > 0 else "tg"
        samples[key].extend(float(x) for x in test["samples_ts"])
    return samples


class SippSide:
    """One loaded Gemma endpoint, configured like llama-bench's contexts."""

    def __init__(self, ctx: c.Context, model: Path, n_prompt: int, n_gen: int) -> None:
        import sipp

        self.tok = c.Tokenizer(model)
        self.n_prompt, self.n_gen = n_prompt, n_gen
        config = c.sipp_config(ctx, n_ctx=n_prompt + n_gen, cache={"mode": "off"})
        self.client = sipp.SippClient()
        self.ref = self.client.add("bench", sipp.LocalModelDescriptor(model, config=config))
        self.seed = 1000
        self.stats: list[dict[str, Any]] = []
        # warm-up like llama-bench's: one full-size prompt, then one generated token
        c.sipp_text(self.client, self.ref, self.tok.prompt(n_prompt, 1), 2).result()

    def sample_pp(self, reps: int) -> list[float]:
        """``reps`` prefill samples: prompt tokens / time to first token."""
        out: list[float] = []
        for _ in range(reps):
            self.seed += 1
            prompt = self.tok.prompt(self.n_prompt, self.seed)
            st = c.sipp_text(self.client, self.ref, prompt, 1).result()["local_stats"]
            out.append(st["input_tokens"] * 1000.0 / st["ttft_ms"])
            self.stats.append({"test": "pp", **st})
        return out

    def sample_tg(self, reps: int) -> list[float]:
        """``reps`` decode samples: n_gen tokens after the first / their time."""
        out: list[float] = []
        for _ in range(reps):
            self.seed += 1
            short = self.tok.prompt(4, self.seed)
            st = c.sipp_text(self.client, self.ref, short, self.n_gen + 1).result()["local_stats"]
            out.append(st["decode_tokens_per_second"])
            self.stats.append({"test": "tg", **st})
        return out

    def close(self) -> None:
        self.client.close()
        self.tok.close()


def main(argv: list[str] | None = None) -> int:
    p = c.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--n-prompt", type=int, default=512)
    p.add_argument("--n-gen", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3, help="alternations of the two sides")
    p.add_argument("--reps", type=int, default=3, help="samples per side per round")
    args = p.parse_args(argv)
    ctx = c.prepare(args)
    model = c.gemma_path()
    report = c.Report(
        "single_stream",
        {
            "model": str(model),
            "native_dir": str(ctx.build.directory),
            "threads": args.threads,
            "n_prompt": args.n_prompt,
            "n_gen": args.n_gen,
            "n_batch": 2048,
            "n_ubatch": 512,
            "flash_attn": args.flash_attn,
            "repack": ctx.repack,
            "rounds": args.rounds,
            "reps": args.reps,
        },
    )
    ours: dict[str, list[float]] = {"pp": [], "tg": []}
    peer: dict[str, list[float]] = {"pp": [], "tg": []}
    side = SippSide(ctx, model, args.n_prompt, args.n_gen) if ctx.wants("sipp") else None
    try:
        for r in range(args.rounds):
            c.log(f"round {r + 1}/{args.rounds}")
            for key, n_prompt, n_gen in (("pp", args.n_prompt, 0), ("tg", 0, args.n_gen)):
                if ctx.wants("llama-bench"):
                    peer[key].extend(llama_bench(ctx, model, n_prompt, n_gen, args.reps)[key])
                if side is not None:
                    sample = side.sample_pp if key == "pp" else side.sample_tg
                    ours[key].extend(sample(args.reps))
    finally:
        if side is not None:
            side.close()
    for key, label in (("pp", f"prefill pp{args.n_prompt}"), ("tg", f"decode tg{args.n_gen}")):
        report.rows.append(
            c.Row(
                label,
                "tokens/s",
                c.mean(ours[key]) if ours[key] else None,
                c.mean(peer[key]) if peer[key] else None,
                "llama-bench",
                (">=", 0.98),
            )
        )
    report.figures = {
        "sipp_samples": ours,
        "llama_bench_samples": peer,
        "sipp_stdev": {k: c.stdev(v) for k, v in ours.items()},
        "llama_bench_stdev": {k: c.stdev(v) for k, v in peer.items()},
        "sipp_median": {k: c.median(v) for k, v in ours.items() if v},
        "llama_bench_median": {k: c.median(v) for k, v in peer.items() if v},
        "sipp_prefill_engine_tokens_per_s": [
            s["prefill_tokens_per_second"]
            for s in (side.stats if side else [])
            if s["test"] == "pp"
        ],
    }
    c.emit(report, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
