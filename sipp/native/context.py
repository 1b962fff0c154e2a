"""``LlamaContext``: one ``llama_context`` (KV memory + compute) over a ``LlamaModel``."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from sipp.errors import EngineError, ModelLoadError
from sipp.native._errors import raise_for_decode
from sipp.native._lib import recent_log_errors
from sipp.native._owner import Owner
from sipp.native.batch import LlamaBatch
from sipp.native.model import LlamaModel

__all__ = ["ATTENTION_TYPES", "FLASH_ATTN", "KV_TYPES", "POOLING", "ROPE_SCALING", "LlamaContext"]

POOLING: dict[str, int] = {"unspecified": -1, "none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}  # fmt: skip  # noqa: E501
ATTENTION_TYPES: dict[str, int] = {"unspecified": -1, "causal": 0, "non_causal": 1}
FLASH_ATTN: dict[str, int] = {"auto": -1, "off": 0, "on": 1}
ROPE_SCALING: dict[str, int] = {"unspecified": -1, "none": 0, "linear": 1, "yarn": 2, "longrope": 3}  # fmt: skip  # noqa: E501
KV_TYPES: dict[str, int] = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20, "bf16": 30}  # fmt: skip  # noqa: E501

_UINT_PARAMS = (
    "n_ctx",
    "n_batch",
    "n_ubatch",
    "n_seq_max",
    "n_outputs_max",
    "n_outputs_max_per_seq",
)
_INT_PARAMS = ("n_threads", "n_threads_batch")
# Upper bounds the pinned llama.cpp needs (past them it crashes or fails late):
# GGML_MAX_N_THREADS (ggml.h; 65536 threads segfault at the first decode), LLAMA_MAX_SEQ.
MAX_THREADS = 512
MAX_SEQ = 256
_UPPER: dict[str, int] = {"n_threads": MAX_THREADS, "n_threads_batch": MAX_THREADS, "n_seq_max": MAX_SEQ}  # fmt: skip  # noqa: E501
_UINT32_MAX = 2**32 - 1
_FLOAT_PARAMS = (
    "rope_freq_base",
    "rope_freq_scale",
    "yarn_ext_factor",
    "yarn_attn_factor",
    "yarn_beta_fast",
    "yarn_beta_slow",
)
_ORIG_CTX = "yarn_orig_ctx"
_BOOL_PARAMS = ("embeddings", "offload_kqv", "no_perf", "op_offload", "swa_full", "kv_unified")
_CHOICE_PARAMS: dict[str, tuple[str, dict[str, int]]] = {
    "pooling_type": ("pooling_type", POOLING),
    "rope_scaling_type": ("rope_scaling_type", ROPE_SCALING),
    "attention_type": ("attention_type", ATTENTION_TYPES),
    "flash_attn": ("flash_attn_type", FLASH_ATTN),
    "type_k": ("type_k", KV_TYPES),
    "type_v": ("type_v", KV_TYPES),
}


def _int_in(key: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{key} must be an int >= {low} and <= {high}, got {value!r}")
    return value


def _free_context(lib: Any, ptr: Any, _model: LlamaModel) -> None:
    # ``_model`` keeps the model alive until this context is freed (finalizer order).
    lib.llama_free(ptr)


class LlamaContext(Owner):
    """A context over ``model``; every argument left ``None`` keeps libllama's default.

    Integers: ``n_ctx`` (0 = from model), ``n_batch``, ``n_ubatch``, ``n_seq_max``,
    ``n_outputs_max``, ``n_outputs_max_per_seq``, ``n_threads``, ``n_threads_batch``.
    Booleans: ``embeddings``, ``offload_kqv``, ``no_perf``, ``op_offload``, ``swa_full``,
    ``kv_unified``. Choices: ``pooling_type`` (none, mean, cls, last, rank),
    ``attention_type`` (causal, non_causal), ``flash_attn`` (auto, on, off), ``type_k`` /
    ``type_v`` (f16, q8_0...), ``rope_scaling_type`` (none, linear, yarn, longrope).
    RoPE numbers: ``rope_freq_base``, ``rope_freq_scale``, ``yarn_orig_ctx`` (0 = from the
    model), ``yarn_ext_factor``, ``yarn_attn_factor``, ``yarn_beta_fast``,
    ``yarn_beta_slow`` (negative = from the model). All calls on one context must come
    from one thread.
    """

    _kind = "LlamaContext"

    def __init__(self, model: LlamaModel, **params: Any) -> None:
        if not isinstance(model, LlamaModel):
            raise TypeError(f"model must be a LlamaModel, got {type(model).__name__}")
        model_ptr = model._handle()
        if model.vocab_only:
            raise ModelLoadError(
                f"Cannot create a context for {model.path}: it was loaded with vocab_only=True"
            )
        ffi, lib = model._ffi, model._lib
        cparams = lib.llama_context_default_params()
        for key, value in params.items():
            if value is None:
                continue
            if key in _FLOAT_PARAMS:
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float))
                    or not math.isfinite(value)
                ):
                    raise ValueError(f"{key} must be a number (finite), got {value!r}")
                setattr(cparams, key, float(value))
            elif key == _ORIG_CTX:
                setattr(cparams, key, _int_in(key, value, 0, _UINT32_MAX))
            elif key in _UINT_PARAMS or key in _INT_PARAMS:
                low = 0 if key in _UINT_PARAMS else 1
                setattr(cparams, key, _int_in(key, value, low, _UPPER.get(key, _UINT32_MAX)))
            elif key in _BOOL_PARAMS:
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be a bool, got {value!r}")
                setattr(cparams, key, value)
            elif key in _CHOICE_PARAMS:
                field, table = _CHOICE_PARAMS[key]
                if value not in table:
                    raise ValueError(f"{key} must be one of {', '.join(table)}, got {value!r}")
                setattr(cparams, field, table[value])
            else:
                raise TypeError(f"unknown context parameter {key!r}")
        recent_log_errors(clear=True)
        ptr = lib.llama_init_from_model(model_ptr, cparams)
        if ptr == ffi.NULL:
            detail = "; ".join(recent_log_errors(clear=True)[-3:]) or "llama.cpp returned NULL"
            shown = {k: v for k, v in params.items() if v is not None}
            raise ModelLoadError(f"Cannot create a context for {model.path} with {shown}: {detail}")
        self._own(ptr, _free_context, lib, ptr, model)
        self.model = model
        self._ffi = ffi
        self._lib = lib
        self._mem = lib.llama_get_memory(ptr)
        self.n_vocab = model.n_vocab
        self.n_embd_out = model.n_embd_out
        self.embeddings = bool(cparams.embeddings)
        self.n_ctx: int = int(lib.llama_n_ctx(ptr))
        self.n_batch: int = int(lib.llama_n_batch(ptr))
        self.n_ubatch: int = int(lib.llama_n_ubatch(ptr))
        self.n_seq_max: int = int(lib.llama_n_seq_max(ptr))
        self.pooling_type: str = {v: k for k, v in POOLING.items()}.get(
            int(lib.llama_pooling_type(ptr)), "unspecified"
        )
        model._attach(self)

    # ------------------------------------------------------------------ compute
    def decode(self, batch: LlamaBatch) -> None:
        """Run the decoder on ``batch``; raises ``KvCacheFullError`` (rc 1, recoverable),
        ``DecodeAbortedError`` (2), ``InvalidBatchError`` (-1) or ``EngineDeadError`` (< -1)."""
        ptr = self._ptr
        if ptr is None:
            raise self._closed()
        rc = self._lib.llama_decode(ptr, batch._struct[0])
        if rc != 0:
            raise_for_decode(rc, "llama_decode", batch.n_tokens)

    def encode(self, batch: LlamaBatch) -> None:
        """Run the encoder (encoder-decoder and embedding models); errors as :meth:`decode`."""
        ptr = self._ptr
        if ptr is None:
            raise self._closed()
        rc = self._lib.llama_encode(ptr, batch._struct[0])
        if rc != 0:
            raise_for_decode(rc, "llama_encode", batch.n_tokens)

    def warmup(self) -> float:
        """One throw-away run, as llama.cpp's ``common_init`` does: BOS and EOS through the
        encoder (if any) and the decoder, so weights are paged in and compute buffers
        allocated before the first request; then the KV memory is cleared and the perf
        counters reset. Returns the seconds it took."""
        start = time.perf_counter()
        model = self.model
        tokens = [t for t in (model.bos, model.eos) if t is not None] or [0]
        if model.has_encoder:
            self.encode(_one_sequence(tokens, logits=False))
            start_token = model.decoder_start_token
            tokens = [start_token if start_token is not None else tokens[0]]
        if model.has_decoder:
            self.decode(_one_sequence(tokens[: self.n_batch], logits=True))
        self.memory_clear(True)
        self.synchronize()
        self.perf_reset()
        return time.perf_counter() - start

    def synchronize(self) -> None:
        """Wait until queued computations finish."""
        self._lib.llama_synchronize(self._handle())

    def set_n_threads(self, n_threads: int, n_threads_batch: int) -> None:
        """Threads for single-token decode and for batch (prefill) decode."""
        _int_in("n_threads", n_threads, 1, MAX_THREADS)
        _int_in("n_threads_batch", n_threads_batch, 1, MAX_THREADS)
        self._lib.llama_set_n_threads(self._handle(), n_threads, n_threads_batch)

    @property
    def n_threads(self) -> tuple[int, int]:
        """``(n_threads, n_threads_batch)``."""
        ptr = self._handle()
        return int(self._lib.llama_n_threads(ptr)), int(self._lib.llama_n_threads_batch(ptr))

    def set_embeddings(self, enabled: bool) -> None:
        """Switch embedding output on or off."""
        self._lib.llama_set_embeddings(self._handle(), bool(enabled))
        self.embeddings = bool(enabled)

    def set_causal_attn(self, causal: bool) -> None:
        """Use causal (True) or full (False) attention for following decodes."""
        self._lib.llama_set_causal_attn(self._handle(), bool(causal))

    def set_batch_invariant(self, enabled: bool) -> bool:
        """Switch the CPU backend to kernels whose result for one token does not depend on
        the other tokens of the batch (our patch to the pinned llama.cpp; see
        ``native/patches``). False when the context has no CPU backend to switch or the
        backend was built without the patch."""
        try:
            switch = self._lib.llama_set_batch_invariant
        except AttributeError:  # a libllama built without native/patches
            return False
        return bool(switch(self._handle(), bool(enabled)))

    # ------------------------------------------------------------------ outputs
    def logits_ith(self, i: int, copy: bool = False) -> np.ndarray:
        """Logits (``n_vocab`` float32) of batch entry ``i`` (negative counts from the end).

        Without ``copy`` the array is a view of libllama's buffer, valid until the next
        decode. Raises ``IndexError`` if entry ``i`` had no output requested.
        """
        ptr = self._ptr
        if ptr is None:
            raise self._closed()
        out = self._lib.llama_get_logits_ith(ptr, i)
        if out == self._ffi.NULL:
            raise IndexError(f"no logits for batch entry {i} (was logits[{i}] set?)")
        arr = np.frombuffer(self._ffi.buffer(out, self.n_vocab * 4), dtype=np.float32)
        return arr.copy() if copy else arr

    def embeddings_ith(self, i: int, copy: bool = True) -> np.ndarray:
        """Embedding (``n_embd_out`` float32) of batch entry ``i`` (pooling none)."""
        out = self._lib.llama_get_embeddings_ith(self._handle(), i)
        if out == self._ffi.NULL:
            raise IndexError(f"no embedding for batch entry {i} (embeddings on, output set?)")
        arr = np.frombuffer(self._ffi.buffer(out, self.n_embd_out * 4), dtype=np.float32)
        return arr.copy() if copy else arr

    def embeddings_seq(self, seq_id: int, copy: bool = True) -> np.ndarray:
        """Pooled embedding of sequence ``seq_id`` (``n_cls_out`` scores for rank pooling)."""
        out = self._lib.llama_get_embeddings_seq(self._handle(), seq_id)
        if out == self._ffi.NULL:
            raise IndexError(
                f"no pooled embedding for sequence {seq_id} (pooling {self.pooling_type})"
            )
        n = self.model.n_cls_out if self.pooling_type == "rank" else self.n_embd_out
        arr = np.frombuffer(self._ffi.buffer(out, max(n, 1) * 4), dtype=np.float32)
        return arr.copy() if copy else arr

    # ------------------------------------------------------------------ memory (KV)
    def memory_clear(self, data: bool = True) -> None:
        """Drop all sequences (``data`` also zeroes the buffers)."""
        self._handle()
        self._lib.llama_memory_clear(self._mem, data)

    def seq_rm(self, seq_id: int, p0: int = -1, p1: int = -1) -> bool:
        """Remove positions ``[p0, p1)`` of ``seq_id`` (-1 = open end); False if partial
        removal is impossible for this memory type."""
        self._handle()
        return bool(self._lib.llama_memory_seq_rm(self._mem, seq_id, p0, p1))

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        """Copy positions ``[p0, p1)`` of ``src`` into ``dst``."""
        self._handle()
        self._lib.llama_memory_seq_cp(self._mem, src, dst, p0, p1)

    def seq_keep(self, seq_id: int) -> None:
        """Remove every sequence but ``seq_id``."""
        self._handle()
        self._lib.llama_memory_seq_keep(self._mem, seq_id)

    def seq_add(self, seq_id: int, p0: int, p1: int, delta: int) -> None:
        """Shift positions ``[p0, p1)`` of ``seq_id`` by ``delta``."""
        self._handle()
        self._lib.llama_memory_seq_add(self._mem, seq_id, p0, p1, delta)

    def seq_pos_min(self, seq_id: int) -> int:
        """Smallest position held for ``seq_id`` (-1 if empty)."""
        self._handle()
        return int(self._lib.llama_memory_seq_pos_min(self._mem, seq_id))

    def seq_pos_max(self, seq_id: int) -> int:
        """Largest position held for ``seq_id`` (-1 if empty)."""
        self._handle()
        return int(self._lib.llama_memory_seq_pos_max(self._mem, seq_id))

    @property
    def can_shift(self) -> bool:
        """Whether positions can be shifted (``seq_add``)."""
        self._handle()
        return bool(self._lib.llama_memory_can_shift(self._mem))

    # ------------------------------------------------------------------ state
    def seq_state_get(self, seq_id: int) -> bytes:
        """Snapshot of one sequence's state (KV) as bytes."""
        ptr = self._handle()
        size = int(self._lib.llama_state_seq_get_size(ptr, seq_id))
        buf = self._ffi.new("uint8_t[]", max(size, 1))
        n = int(self._lib.llama_state_seq_get_data(ptr, buf, size, seq_id))
        return self._ffi.unpack(self._ffi.cast("char *", buf), n)

    def seq_state_set(self, data: bytes, seq_id: int) -> int:
        """Restore a :meth:`seq_state_get` snapshot into ``seq_id``; returns bytes read."""
        ptr = self._handle()
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
            raise ValueError("data must be non-empty bytes from seq_state_get()")
        src = self._ffi.from_buffer("uint8_t[]", data)
        n = int(self._lib.llama_state_seq_set_data(ptr, src, len(data), seq_id))
        if n == 0:
            raise EngineError(
                f"llama_state_seq_set_data failed for sequence {seq_id} "
                "(state from another model or context size?)"
            )
        return n

    # ------------------------------------------------------------------ perf
    def perf(self) -> dict[str, float]:
        """libllama's timings: load/prompt/eval ms and token counts."""
        data = self._lib.llama_perf_context(self._handle())
        return {
            "t_start_ms": data.t_start_ms,
            "t_load_ms": data.t_load_ms,
            "t_p_eval_ms": data.t_p_eval_ms,
            "t_eval_ms": data.t_eval_ms,
            "n_p_eval": data.n_p_eval,
            "n_eval": data.n_eval,
            "n_reused": data.n_reused,
        }

    def perf_reset(self) -> None:
        """Zero the timings."""
        self._lib.llama_perf_context_reset(self._handle())

    @property
    def ptr(self) -> Any:
        """The ``llama_context *`` (for samplers and mtmd); raises once closed."""
        return self._handle()

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else f"n_ctx={self.n_ctx} n_seq_max={self.n_seq_max}"
        return f"<LlamaContext {state}>"


def _one_sequence(tokens: Sequence[int], *, logits: bool) -> LlamaBatch:
    """A batch of ``tokens`` at positions 0.. of sequence 0 (output for the last one)."""
    n = len(tokens)
    batch = LlamaBatch(n)
    batch.set(np.asarray(tokens, dtype=np.int32), np.arange(n, dtype=np.int32), 0,
              logits=np.array([0] * (n - 1) + [1 if logits else 0], dtype=np.int8))
    return batch
