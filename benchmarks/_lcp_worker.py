"""llama-cpp-python side of the benchmarks; runs with the interpreter of its own venv.

Reads one JSON job on stdin and prints one JSON result line on stdout. Imports only the
standard library and ``llama_cpp`` (Sipp is not installed in that venv).

Jobs:
- ``{"mode": "generate", "model", "prompts", "max_tokens", ...}``: the prompts one after
  another (llama-cpp-python serves one sequence per model), greedy, ``max_tokens`` tokens
  each through ``Llama.generate`` (no EOS stop, like ``ignore_eos`` on the other sides).
- ``{"mode": "embed", "model", "inputs", ...}``: ``Llama.embed(inputs)``, one
  call per ``rounds``.
- ``{"mode": "lookup", "model", "prompts", "max_tokens", "num_pred_tokens",
  "max_ngram_size", ...}``: prompt-lookup speculative decoding,
  ``Llama(draft_model=LlamaPromptLookupDecoding(...))``, greedy through ``Llama.generate``,
  each prompt until ``max_tokens`` tokens or an end-of-generation token (like Sipp's
  request without ``ignore_eos``). Decode tok/s = tokens after the first / seconds from
  the first token to the last, as Sipp's ``decode_tokens_per_second``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def _load(job: dict[str, Any], **extra: Any) -> Any:
    import llama_cpp
    import llama_cpp.llama_cpp as raw

    if not job.get("repack", True):  # same weight-repacking choice as the other sides
        default = raw.llama_model_default_params

        def no_repack() -> Any:
            params = default()
            params.use_extra_bufts = False
            return params

        raw.llama_model_default_params = no_repack
    threads = int(job["threads"])
    return llama_cpp.Llama(
        job["model"],
        n_ctx=int(job["n_ctx"]),
        n_batch=int(job["n_batch"]),
        n_ubatch=int(job["n_ubatch"]),
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=bool(job.get("flash_attn", True)),
        seed=0,
        verbose=False,
        **extra,
    )


def _generate(job: dict[str, Any]) -> dict[str, Any]:
    llm = _load(job)
    max_tokens = int(job["max_tokens"])

    def one(prompt: str) -> dict[str, Any]:
        tokens = llm.tokenize(prompt.encode(), add_bos=True, special=False)
        t0 = time.perf_counter()
        first = t0
        out: list[int] = []
        for token in llm.generate(tokens, temp=0.0, top_k=1, reset=True):
            if not out:
                first = time.perf_counter()
            out.append(token)
            if len(out) >= max_tokens:
                break
        t1 = time.perf_counter()
        return {
            "prompt_tokens": len(tokens),
            "output_tokens": len(out),
            "ttft_s": first - t0,
            "decode_s": t1 - first,
            "total_s": t1 - t0,
            "text": llm.detokenize(out).decode(errors="replace"),
        }

    one(job.get("warmup", "Hello"))
    started = time.perf_counter()
    results = [one(p) for p in job["prompts"]]
    return {"wall_s": time.perf_counter() - started, "requests": results, "version": _version()}


def _lookup(job: dict[str, Any]) -> dict[str, Any]:
    import llama_cpp
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    counts = {"drafted": 0, "draft_calls": 0}

    class Counted(LlamaPromptLookupDecoding):  # type: ignore[misc]
        """The library's prompt lookup, counting the tokens it drafts."""

        def __call__(self, input_ids: Any, /, **kwargs: Any) -> Any:
            drafted = super().__call__(input_ids, **kwargs)
            counts["drafted"] += len(drafted)
            counts["draft_calls"] += 1
            return drafted

    draft = Counted(
        max_ngram_size=int(job["max_ngram_size"]), num_pred_tokens=int(job["num_pred_tokens"])
    )
    llm = _load(job, draft_model=draft)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    max_tokens = int(job["max_tokens"])

    def one(prompt: str) -> dict[str, Any]:
        tokens = llm.tokenize(prompt.encode(), add_bos=True, special=False)
        counts.update(drafted=0, draft_calls=0)
        t0 = time.perf_counter()
        first = t0
        out: list[int] = []
        for token in llm.generate(tokens, temp=0.0, top_k=1, reset=True):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            if not out:
                first = time.perf_counter()
            out.append(token)
            if len(out) >= max_tokens:
                break
        t1 = time.perf_counter()
        decode_s = t1 - first
        return {
            "prompt_tokens": len(tokens),
            "output_tokens": len(out),
            "ttft_s": first - t0,
            "decode_s": decode_s,
            "decode_tokens_per_s": (len(out) - 1) / decode_s if decode_s > 0 else None,
            "n_drafted": counts["drafted"],
            "draft_calls": counts["draft_calls"],
            "text": llm.detokenize(out).decode(errors="replace"),
        }

    one(job.get("warmup", "Hello"))
    results = [one(p) for p in job["prompts"]]
    return {"requests": results, "version": _version()}


def _embed(job: dict[str, Any]) -> dict[str, Any]:
    import llama_cpp

    llm = _load(job, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN)
    llm.embed(job["inputs"][:8])  # warm-up
    walls = []
    vectors: list[Any] = []
    for _ in range(int(job.get("rounds", 1))):
        started = time.perf_counter()
        vectors = llm.embed(job["inputs"])
        walls.append(time.perf_counter() - started)
    return {
        "walls_s": walls,
        "count": len(vectors),
        "dim": len(vectors[0]) if vectors else 0,
        "first": [float(x) for x in vectors[0][:8]] if vectors else [],
        "version": _version(),
    }


def _version() -> str:
    import llama_cpp

    return str(getattr(llama_cpp, "__version__", "?"))


def main() -> int:
    job = json.loads(sys.stdin.read())
    modes = {"generate": _generate, "embed": _embed, "lookup": _lookup}
    if job.get("mode") not in modes:
        print(f"mode must be one of {sorted(modes)}, got {job.get('mode')!r}", file=sys.stderr)
        return 2
    print(json.dumps(modes[job["mode"]](job)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
