"""Fuzz worker: load each GGUF path read from stdin and run one forward pass.

One line out per path: ``ok`` or ``err <ExceptionType>: <message>``. A signal kills the
worker, which is how the parent (:mod:`tests.native.test_gguf_fuzz`) sees a crash: the path
it sent last is the one that crashed. Run as ``python -m tests.native.gguf_fuzz_worker``.
"""

from __future__ import annotations

import sys

import numpy as np


def load_and_run(path: str) -> None:
    """What serving a model does first: load, make a context, tokenize, one forward pass."""
    from sipp.native import LlamaBatch, LlamaContext, LlamaModel

    with LlamaModel(path, n_gpu_layers=0) as model:
        embeddings = not model.has_decoder
        with LlamaContext(
            model, n_ctx=64, n_batch=32, n_ubatch=32, n_threads=1, n_threads_batch=1,
            embeddings=embeddings,
        ) as ctx:  # fmt: skip
            tokens = model.tokenize("Hello world", add_special=True)[:16] or [0]
            batch = LlamaBatch(32)
            batch.set(np.array(tokens), np.arange(len(tokens)), 0)
            if model.has_encoder:
                ctx.encode(batch)
            else:
                ctx.decode(batch)
            model.detokenize(tokens)


def main() -> int:
    from sipp.native import get_native

    get_native()
    for line in sys.stdin:
        path = line.strip()
        if not path:
            continue
        try:
            load_and_run(path)
            result = "ok"
        except Exception as exc:
            message = str(exc).replace("\n", " ")[:500]
            result = f"err {type(exc).__name__}: {message}"
        sys.stdout.write(result + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
