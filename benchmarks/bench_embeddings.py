"""Embedding throughput on the MiniLM GGUF, 256 short sentences in ONE call: Sipp
(``client.embed(list)``; the engine batches the inputs into shared decode calls) vs
``llama-server --embeddings -np 8`` (one ``POST /v1/embeddings`` carrying all inputs) and
llama-cpp-python ``Llama.embed(list)``.

Sentences/s = inputs / median wall time of the one call over ``--rounds`` calls that
alternate the sides, after a warm-up call on each side. All
sides: mean pooling, same threads, n_batch = n_ubatch = 2048 (BERT needs a whole sequence in
one ubatch), same weight-repacking choice; Sipp gets the same number of slots as the server.
The first vector of each side is compared (cosine similarity) as a sanity check.

    python benchmarks/bench_embeddings.py [--sentences 256] [--parallel 8] [--json]
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

N_CTX = 4096
N_BATCH = 2048

SUBJECTS = "The old bridge|A quiet student|My neighbour's dog|The morning train|This small café"
VERBS = "crosses|remembers|follows|waits for|paints|describes|avoids|finds"
OBJECTS = (
    "the river at dawn|a forgotten letter|the city lights|an empty station|the autumn market"
    "|a winter storm|the garden path|a distant mountain|the library steps"
)


def sentences(n: int) -> list[str]:
    """``n`` distinct short English sentences (6 to 14 tokens), deterministic."""
    subj, verb, obj = SUBJECTS.split("|"), VERBS.split("|"), OBJECTS.split("|")
    out = []
    for i in range(n):
        s = f"{subj[i % len(subj)]} {verb[(i // 5) % len(verb)]} {obj[(i // 3) % len(obj)]}"
        out.append(f"{s} (note {i}).")
    return out


def cosine(a: Sequence[float], b: Sequence[float]) -> float | None:
    n = min(len(a), len(b))
    if n == 0:
        return None
    dot = sum(a[i] * b[i] for i in range(n))
    na = math.sqrt(sum(a[i] * a[i] for i in range(n)))
    nb = math.sqrt(sum(b[i] * b[i] for i in range(n)))
    return dot / (na * nb) if na and nb else None


Embedder = Callable[[list[str]], tuple[float, list[list[float]]]]


@contextlib.contextmanager
def sipp_embedder(ctx: c.Context, model: Path, parallel: int) -> Iterator[Embedder]:
    """A loaded Sipp endpoint; yields ``embed(inputs) -> (wall seconds, vectors)``."""
    import sipp

    config = c.sipp_config(
        ctx, n_ctx=N_CTX, n_parallel=parallel, n_batch=N_BATCH, n_ubatch=N_BATCH,
        extra_context={"embeddings": True, "pooling": "mean"},
    )  # fmt: skip
    with sipp.SippClient() as client:
        ref = client.add("bench", sipp.LocalModelDescriptor(model, config=config))

        def embed(inputs: list[str]) -> tuple[float, list[list[float]]]:
            t0 = time.perf_counter()
            values = client.embed(inputs, endpoint=ref).result()["values"]
            return time.perf_counter() - t0, values

        yield embed


@contextlib.contextmanager
def server_embedder(ctx: c.Context, model: Path, parallel: int) -> Iterator[Embedder]:
    """A running llama-server; yields ``embed(inputs)`` (one ``/v1/embeddings`` call)."""
    t = str(ctx.args.threads)
    args = [
        "-m", str(model), "--embeddings", "--pooling", "mean", "-np", str(parallel),
        "-c", str(N_CTX), "-b", str(N_BATCH), "-ub", str(N_BATCH), "-t", t, "-tb", t,
        "-fa", ctx.args.flash_attn, "--no-webui",
    ]  # fmt: skip
    if not ctx.repack:
        args.append("--no-repack")
    with c.llama_server(ctx.build, args) as url:

        def embed(inputs: list[str]) -> tuple[float, list[list[float]]]:
            t0 = time.perf_counter()
            res = c.http_json(url + "/v1/embeddings", {"input": inputs})
            wall = time.perf_counter() - t0
            return wall, [d["embedding"] for d in sorted(res["data"], key=lambda d: d["index"])]

        yield embed


def main(argv: list[str] | None = None) -> int:
    p = c.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--sentences", type=int, default=256)
    p.add_argument("--parallel", type=int, default=8, help="slots (server -np and Sipp)")
    p.add_argument("--rounds", type=int, default=3, help="timed calls per side (median)")
    args = p.parse_args(argv)
    ctx = c.prepare(args)
    model = c.minilm_path()
    inputs = sentences(args.sentences)
    report = c.Report("embeddings", {
        "model": str(model), "native_dir": str(ctx.build.directory), "threads": args.threads,
        "sentences": args.sentences, "parallel": args.parallel, "n_ctx": N_CTX,
        "n_batch": N_BATCH, "n_ubatch": N_BATCH, "pooling": "mean",
        "flash_attn": args.flash_attn, "repack": ctx.repack,
    })  # fmt: skip
    sides: dict[str, Embedder] = {}
    walls: dict[str, list[float]] = {}
    first: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        if ctx.wants("sipp"):
            sides["sipp"] = stack.enter_context(sipp_embedder(ctx, model, args.parallel))
        if ctx.wants("llama-server"):
            sides["llama-server"] = stack.enter_context(server_embedder(ctx, model, args.parallel))
        for embed in sides.values():  # warm-up
            embed(inputs[:8])
        for r in range(args.rounds):  # alternate the sides so load drift hits both
            for name, embed in sides.items():
                wall, vectors = embed(inputs)
                if len(vectors) != len(inputs):
                    raise RuntimeError(f"{name} returned {len(vectors)} vectors for {len(inputs)}")
                walls.setdefault(name, []).append(wall)
                first[name] = [float(x) for x in vectors[0]]
                c.log(f"round {r + 1}: {name} {len(inputs) / wall:.1f} sentences/s")
    rate = {name: len(inputs) / c.median(w) for name, w in walls.items()}
    lcp: dict[str, Any] = {}
    if ctx.lcp is not None and ctx.wants("llama-cpp-python"):
        lcp = ctx.run_lcp({
            "mode": "embed", "model": str(model), "inputs": inputs, "threads": args.threads,
            "n_ctx": N_CTX, "n_batch": N_BATCH, "n_ubatch": N_BATCH, "repack": ctx.repack,
            "flash_attn": args.flash_attn == "on", "rounds": args.rounds,
        })  # fmt: skip
        lcp["sentences_per_s"] = lcp["count"] / c.median(lcp["walls_s"])
    elif ctx.wants("llama-cpp-python"):
        report.skipped["llama-cpp-python"] = ctx.lcp_why
    report.rows += [
        c.Row("embeddings", "sentences/s", rate.get("sipp"), rate.get("llama-server"),
              f"llama-server -np {args.parallel}", (">=", 1.0)),
        c.Row("embeddings", "sentences/s", rate.get("sipp"), lcp.get("sentences_per_s"),
              "llama-cpp-python"),
    ]  # fmt: skip
    ours = first.get("sipp", [])
    report.figures = {
        "walls_s": walls,
        "sentences_per_s_median": rate,
        "llama_cpp_python": {k: v for k, v in lcp.items() if k != "first"},
        "cosine_first_vector": {
            "sipp_vs_llama_server": cosine(ours, first.get("llama-server", [])),
            "sipp_vs_llama_cpp_python_first8": cosine(ours[:8], lcp.get("first", [])),
        },
    }
    c.emit(report, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
