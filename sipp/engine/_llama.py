"""The engine's narrow view of libllama: model, context, batch and sampler-chain handles.

Everything the engine thread calls on llama.cpp goes through this module, so the engine core
stays free of cdata. It uses the process-wide ``ffi``/``lib`` of :mod:`sipp.native`.

TODO(native): replace with the owner objects of ``sipp.native`` once they land; the API
below is what the engine needs from them.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sipp.engine.sampling import Stage
from sipp.errors import GrammarError, ModelLoadError
from sipp.native._lib import get_native, recent_log_errors

__all__ = ["Batch", "ContextSettings", "LlamaContext", "LlamaModel", "SamplerChain"]

Tokens = npt.NDArray[np.int32]

_POOLING_NAMES = {-1: "unspecified", 0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}
POOLING_IDS = {name: value for value, name in _POOLING_NAMES.items()}
_FLASH = {"auto": -1, "disabled": 0, "enabled": 1}
_GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
               "iq4_nl": 20}
_ROPE = {"none": 0, "linear": 1, "yarn": 2}


def _free_model(lib: Any, ptr: Any) -> None:
    lib.llama_model_free(ptr)


def _free_context(lib: Any, ptr: Any) -> None:
    lib.llama_free(ptr)


def _free_sampler(lib: Any, ptr: Any) -> None:
    lib.llama_sampler_free(ptr)


class LlamaModel:
    """A loaded GGUF model and its vocabulary facts."""

    def __init__(self, path: str, *, use_mmap: bool = True, use_mlock: bool = False,
                 gpu_layers: int | None = None, check_tensors: bool = False,
                 extra_bufts: bool = True, no_host: bool = False) -> None:
        native = get_native()
        self._ffi, self._lib = native.ffi, native.lib
        lib, ffi = self._lib, self._ffi
        params = lib.llama_model_default_params()
        params.load_mode = (1 if use_mmap else 0) | (2 if use_mlock else 0)
        params.check_tensors = check_tensors
        params.use_extra_bufts = extra_bufts
        params.no_host = no_host
        if gpu_layers is not None:
            params.n_gpu_layers = gpu_layers
        recent_log_errors(clear=True)
        ptr = lib.llama_model_load_from_file(path.encode(), params)
        if ptr == ffi.NULL:
            detail = "; ".join(recent_log_errors(clear=True)[-3:]) or "see llama.cpp log"
            raise ModelLoadError(f"failed to load model from {path}: {detail}")
        self.ptr = ptr
        self._finalizer = weakref.finalize(self, _free_model, lib, ptr)
        self.path = path
        self.vocab = lib.llama_model_get_vocab(ptr)
        self.n_vocab = int(lib.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(lib.llama_model_n_ctx_train(ptr))
        self.n_embd = int(lib.llama_model_n_embd(ptr))
        self.n_swa = int(lib.llama_model_n_swa(ptr))
        self.n_cls_out = int(lib.llama_model_n_cls_out(ptr))
        self.has_encoder = bool(lib.llama_model_has_encoder(ptr))
        self.has_decoder = bool(lib.llama_model_has_decoder(ptr))
        self.is_recurrent = bool(lib.llama_model_is_recurrent(ptr)) or bool(
            lib.llama_model_is_hybrid(ptr))
        self.add_bos = bool(lib.llama_vocab_get_add_bos(self.vocab))
        self.bos = int(lib.llama_vocab_bos(self.vocab))
        self.eos = int(lib.llama_vocab_eos(self.vocab))
        self.decoder_start = int(lib.llama_model_decoder_start_token(ptr))
        template = lib.llama_model_chat_template(ptr, ffi.NULL)
        self.chat_template = None if template == ffi.NULL else ffi.string(template).decode()
        self.architecture = self.meta("general.architecture") or ""
        self._eog_tokens: tuple[int, ...] | None = None
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ffi.new("char[]", 256)

    @property
    def eog_tokens(self) -> tuple[int, ...]:
        """Every end-of-generation token (scans the vocabulary once, on first use)."""
        if self._eog_tokens is None:
            lib, vocab = self._lib, self.vocab
            self._eog_tokens = tuple(
                t for t in range(self.n_vocab) if lib.llama_vocab_is_eog(vocab, t)
            )
        return self._eog_tokens

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as text, or None."""
        buf = self._ffi.new("char[]", 4096)
        n = self._lib.llama_model_meta_val_str(self.ptr, key.encode(), buf, 4096)
        return None if n < 0 else self._ffi.string(buf).decode("utf-8", "replace")

    def is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self.vocab, token))

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> Tokens:
        """Token ids of ``text`` (int32 array)."""
        raw = text.encode("utf-8")
        capacity = len(raw) + 8
        out = np.empty(capacity, dtype=np.int32)
        ptr = self._ffi.cast("llama_token *", out.ctypes.data)
        n = self._lib.llama_tokenize(self.vocab, raw, len(raw), ptr, capacity, add_special,
                                     parse_special)
        if n < 0:
            capacity = -n
            out = np.empty(capacity, dtype=np.int32)
            ptr = self._ffi.cast("llama_token *", out.ctypes.data)
            n = self._lib.llama_tokenize(self.vocab, raw, len(raw), ptr, capacity,
                                         add_special, parse_special)
        result: Tokens = out[:n].copy()
        return result

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render as empty), cached."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        n = self._lib.llama_token_to_piece(self.vocab, token, self._piece_buf, 256, 0, False)
        data = self._ffi.unpack(self._piece_buf, n) if n > 0 else b""
        self._pieces[token] = data
        return data

    def token_text(self, token: int) -> str:
        """The text of a token with special tokens rendered (e.g. ``<bos>``); "" if none."""
        if token < 0:
            return ""
        buf = self._ffi.new("char[]", 256)
        n = self._lib.llama_token_to_piece(self.vocab, token, buf, 256, 0, True)
        return self._ffi.unpack(buf, n).decode("utf-8", "replace") if n > 0 else ""

    def close(self) -> None:
        self._finalizer()


@dataclass(frozen=True)
class ContextSettings:
    """What the engine decided for the ``llama_context``."""

    n_ctx: int
    n_batch: int
    n_ubatch: int
    n_seq_max: int
    n_threads: int | None = None
    n_threads_batch: int | None = None
    embeddings: bool = False
    pooling: str = "unspecified"
    kv_unified: bool = False
    swa_full: bool = False
    flash_attention: str = "auto"
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    offload_kqv: bool = True
    op_offload: bool = True
    rope_scaling: str | None = None
    rope_freq_base: float | None = None
    rope_freq_scale: float | None = None
    no_perf: bool = True


class LlamaContext:
    """One ``llama_context``; used only from the engine thread after creation."""

    def __init__(self, model: LlamaModel, s: ContextSettings) -> None:
        lib, ffi = model._lib, model._ffi
        self._lib, self._ffi, self.model = lib, ffi, model
        p = lib.llama_context_default_params()
        p.n_ctx, p.n_batch, p.n_ubatch, p.n_seq_max = s.n_ctx, s.n_batch, s.n_ubatch, s.n_seq_max
        if s.n_threads:
            p.n_threads = s.n_threads
        if s.n_threads_batch:
            p.n_threads_batch = s.n_threads_batch
        p.embeddings = s.embeddings
        p.pooling_type = POOLING_IDS[s.pooling]
        p.kv_unified = s.kv_unified
        p.swa_full = s.swa_full
        p.flash_attn_type = _FLASH[s.flash_attention]
        p.type_k, p.type_v = _GGML_TYPES[s.cache_type_k], _GGML_TYPES[s.cache_type_v]
        p.offload_kqv, p.op_offload, p.no_perf = s.offload_kqv, s.op_offload, s.no_perf
        if s.rope_scaling is not None:
            p.rope_scaling_type = _ROPE[s.rope_scaling]
        if s.rope_freq_base is not None:
            p.rope_freq_base = s.rope_freq_base
        if s.rope_freq_scale is not None:
            p.rope_freq_scale = s.rope_freq_scale
        recent_log_errors(clear=True)
        ptr = lib.llama_init_from_model(model.ptr, p)
        if ptr == ffi.NULL:
            detail = "; ".join(recent_log_errors(clear=True)[-3:]) or "see llama.cpp log"
            raise ModelLoadError(
                f"failed to create a context for {model.path} (n_ctx={s.n_ctx}, "
                f"n_batch={s.n_batch}, n_seq_max={s.n_seq_max}): {detail}"
            )
        self.ptr = ptr
        self._finalizer = weakref.finalize(self, _free_context, lib, ptr)
        self.n_ctx = int(lib.llama_n_ctx(ptr))
        self.n_batch = int(lib.llama_n_batch(ptr))
        self.n_ubatch = int(lib.llama_n_ubatch(ptr))
        self.n_seq_max = int(lib.llama_n_seq_max(ptr))
        self.pooling = _POOLING_NAMES.get(int(lib.llama_pooling_type(ptr)), "unspecified")
        mem = lib.llama_get_memory(ptr)
        self._mem = None if mem == ffi.NULL else mem
        self.settings = s

    # ---- memory
    def seq_rm(self, seq: int, p0: int, p1: int) -> bool:
        if self._mem is None:
            return True
        return bool(self._lib.llama_memory_seq_rm(self._mem, seq, p0, p1))

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        if self._mem is not None:
            self._lib.llama_memory_seq_cp(self._mem, src, dst, p0, p1)

    def seq_save(self, seq: int) -> bytes:
        size = int(self._lib.llama_state_seq_get_size(self.ptr, seq))
        buf = self._ffi.new("uint8_t[]", max(size, 1))
        n = int(self._lib.llama_state_seq_get_data(self.ptr, buf, size, seq))
        return bytes(self._ffi.buffer(buf, n))

    def seq_restore(self, seq: int, data: bytes) -> bool:
        n = int(self._lib.llama_state_seq_set_data(self.ptr, data, len(data), seq))
        return n > 0

    # ---- compute
    def decode(self, batch: Batch) -> int:
        return int(self._lib.llama_decode(self.ptr, batch.struct))

    def encode(self, batch: Batch) -> int:
        return int(self._lib.llama_encode(self.ptr, batch.struct))

    def embedding(self, seq: int, size: int) -> npt.NDArray[np.float32]:
        """The pooled embedding of ``seq`` (a copy)."""
        ptr = self._lib.llama_get_embeddings_seq(self.ptr, seq)
        if ptr == self._ffi.NULL:
            raise RuntimeError(f"no pooled embedding for sequence {seq}")
        vec: npt.NDArray[np.float32] = np.frombuffer(
            self._ffi.buffer(ptr, size * 4), dtype=np.float32
        ).copy()
        return vec

    def perf(self) -> dict[str, float]:
        data = self._lib.llama_perf_context(self.ptr)
        return {"t_load_ms": data.t_load_ms, "t_p_eval_ms": data.t_p_eval_ms,
                "t_eval_ms": data.t_eval_ms, "n_p_eval": data.n_p_eval, "n_eval": data.n_eval}

    def close(self) -> None:
        self._finalizer()


class Batch:
    """A reusable ``llama_batch`` whose arrays are NumPy views (filled without Python loops).

    Each token belongs to exactly one sequence: ``seq_id[i]`` points at ``seq[i]``.
    """

    def __init__(self, ctx: LlamaContext, capacity: int) -> None:
        ffi = ctx._ffi
        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        self._seq_ptrs = ffi.new("llama_seq_id *[]", capacity)
        base = ffi.cast("llama_seq_id *", self.seq.ctypes.data)
        for i in range(capacity):  # once per engine, not per step
            self._seq_ptrs[i] = base + i
        self._owner = ffi.new("llama_batch *")
        self.struct = self._owner[0]
        s = self.struct
        s.token = ffi.cast("llama_token *", self.token.ctypes.data)
        s.embd = ffi.NULL
        s.pos = ffi.cast("llama_pos *", self.pos.ctypes.data)
        s.n_seq_id = ffi.cast("int32_t *", self.n_seq_id.ctypes.data)
        s.seq_id = self._seq_ptrs
        s.logits = ffi.cast("int8_t *", self.logits.ctypes.data)
        s.n_tokens = 0

    def set_size(self, n: int) -> None:
        self.struct.n_tokens = n


class SamplerChain:
    """A native sampler chain built from planned stages."""

    _lock = threading.Lock()

    def __init__(self, model: LlamaModel, stages: Sequence[Stage]) -> None:
        lib, ffi = model._lib, model._ffi
        self._lib, self._ffi = lib, ffi
        cparams = lib.llama_sampler_chain_default_params()
        cparams.no_perf = True
        chain = lib.llama_sampler_chain_init(cparams)
        self.ptr = chain
        self._finalizer = weakref.finalize(self, _free_sampler, lib, chain)
        self._keep: list[Any] = []
        for stage in stages:
            smpl = self._init(model, stage)
            lib.llama_sampler_chain_add(chain, smpl)

    def _init(self, model: LlamaModel, stage: Stage) -> Any:
        lib, ffi, a = self._lib, self._ffi, stage.args
        name = stage.name
        if name == "grammar":
            recent_log_errors(clear=True)
            smpl = lib.llama_sampler_init_grammar(model.vocab, a[0].encode(), a[1].encode())
            if smpl == ffi.NULL:
                detail = "; ".join(recent_log_errors(clear=True)[-3:]) or "parse error"
                raise GrammarError(f"invalid grammar: {detail}")
            return smpl
        if name == "logit_bias":
            arr = ffi.new("llama_logit_bias[]", len(a[1]))
            for i, (token, bias) in enumerate(a[1]):
                arr[i].token, arr[i].bias = token, bias
            self._keep.append(arr)
            return lib.llama_sampler_init_logit_bias(a[0], len(a[1]), arr)
        if name == "dry":
            breakers = [ffi.new("char[]", s.encode()) for s in a[4]]
            ptrs = ffi.new("const char *[]", breakers)
            return lib.llama_sampler_init_dry(model.vocab, a[0], a[1], a[2], a[3], ptrs,
                                              len(breakers))
        if name == "infill":
            return lib.llama_sampler_init_infill(model.vocab)
        fn = {"temperature": "temp"}.get(name, name)
        return getattr(lib, f"llama_sampler_init_{fn}")(*a)

    def sample(self, ctx: LlamaContext, index: int) -> int:
        return int(self._lib.llama_sampler_sample(self.ptr, ctx.ptr, index))

    def accept(self, token: int) -> None:
        self._lib.llama_sampler_accept(self.ptr, token)

    def close(self) -> None:
        self._finalizer()
