"""Translation of libllama return codes into the Sipp error hierarchy (one place for all)."""

from __future__ import annotations

from sipp.errors import EngineDeadError, EngineError, KvCacheFullError

__all__ = [
    "DecodeAbortedError",
    "InvalidBatchError",
    "UseAfterCloseError",
    "raise_for_decode",
]


class DecodeAbortedError(EngineError):
    """``llama_decode`` returned 2: the abort callback stopped it (processed ubatches stay)."""


class InvalidBatchError(EngineError, ValueError):
    """``llama_decode``/``llama_encode`` returned -1: the batch was rejected as invalid."""


class UseAfterCloseError(EngineError, ValueError):
    """A native owner object (model, context, sampler, batch) was used after ``close()``."""


def raise_for_decode(rc: int, op: str, n_tokens: int) -> None:
    """Raise the error matching a non-zero ``llama_decode``/``llama_encode`` return code."""
    if rc == 1:
        raise KvCacheFullError(
            f"{op}: no KV cache slot for a batch of {n_tokens} tokens "
            "(shrink the batch, free sequences or use a larger n_ctx)"
        )
    if rc == 2:
        raise DecodeAbortedError(f"{op}: aborted by the abort callback")
    if rc == -1:
        raise InvalidBatchError(
            f"{op}: invalid batch of {n_tokens} tokens (token ids, positions, sequence ids "
            "or n_tokens out of range for this context)"
        )
    if rc < -1:
        raise EngineDeadError(f"{op}: fatal error (return code {rc}); the context is unusable")
    raise EngineError(f"{op}: unexpected return code {rc}")
