"""The engine's view of libllama, on top of the owner objects of :mod:`sipp.native`.

This module adapts :class:`sipp.native.LlamaModel` / ``LlamaContext`` / ``LlamaBatch`` /
``SamplerChain`` to what the engine thread needs (vocabulary facts read once, decode status
codes instead of exceptions for the recoverable cases, a batch filled with NumPy slices). It
touches no cdata itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sipp.config import ResolvedPlacementConfig
from sipp.engine.sampling import Stage
from sipp.errors import ConfigurationError, KvCacheFullError
from sipp.native import DecodeAbortedError, InvalidBatchError
from sipp.native import LlamaBatch as NativeBatch
from sipp.native import LlamaContext as NativeContext
from sipp.native import LlamaModel as NativeModel
from sipp.native import SamplerChain as NativeChain
from sipp.native.model import Device
from sipp.native.rpc import is_rpc_device

__all__ = [
    "Batch",
    "ContextSettings",
    "LlamaContext",
    "LlamaModel",
    "SamplerChain",
    "gpu_devices",
    "placement_args",
]

Tokens = npt.NDArray[np.int32]
_FLASH = {"auto": "auto", "enabled": "on", "disabled": "off"}


def gpu_devices(devices: Sequence[Device], chosen: Sequence[str] = ()) -> list[str]:
    """The offload devices libllama will use: ``chosen`` (``["none"]`` = none) or, by
    default, every discrete GPU (the integrated ones only when there is no discrete GPU)."""
    if chosen:
        return [] if list(chosen) == ["none"] else list(chosen)
    gpus = [d.name for d in devices if d.type == "gpu"]
    return gpus or [d.name for d in devices if d.type == "igpu"]


def placement_args(
    p: ResolvedPlacementConfig, devices: Sequence[Device]
) -> dict[str, Any]:
    """The :class:`LlamaModel` arguments for placement ``p`` on a backend that sees
    ``devices``; what cannot take effect raises ``ConfigurationError`` naming the field."""
    names = [d.name for d in devices]
    offload = [d.name for d in devices if d.type != "cpu"]
    chosen = list(p.devices)
    if "none" in chosen and chosen != ["none"]:
        raise ConfigurationError(
            'placement.devices: "none" (no offload device) cannot be combined with device names'
        )
    for index, name in enumerate(chosen):
        if name == "none" or is_rpc_device(name):  # remote workers are checked at load
            continue
        if name not in names:
            raise ConfigurationError(
                f"placement.devices[{index}]: unknown device {name!r}; this backend's offload "
                f"devices are: {', '.join(offload) or 'none (CPU only)'}"
            )
        if name not in offload:
            raise ConfigurationError(
                f"placement.devices[{index}]: {name!r} is the CPU, which holds whatever is not "
                'offloaded; list GPU devices only (or ["none"] to offload nothing)'
            )
    used = gpu_devices(devices, chosen)
    if p.split_mode == "tensor" and not used:
        raise ConfigurationError(
            "placement.split_mode='tensor' splits every tensor across GPU devices, and this "
            "backend has none to use"
        )
    if p.main_gpu is not None and used and p.main_gpu >= len(used):
        raise ConfigurationError(
            f"placement.main_gpu={p.main_gpu} is out of range: {len(used)} offload device(s) "
            f"({', '.join(used)})"
        )
    if p.tensor_split and len(p.tensor_split) > len(used):
        raise ConfigurationError(
            f"placement.tensor_split has {len(p.tensor_split)} entries but the model is "
            f"placed on {len(used)} offload device(s)"
            + (f" ({', '.join(used)})" if used else " (CPU only: nothing to split)")
        )
    return {
        "devices": ([] if chosen == ["none"] else chosen) if chosen else None,
        "split_mode": p.split_mode,
        "main_gpu": p.main_gpu,
        "tensor_split": p.tensor_split,
        "no_host": p.no_host,
    }


class LlamaModel:
    """A loaded GGUF model and its vocabulary facts (read once at load)."""

    def __init__(self, path: str, *, use_mmap: bool = True, use_mlock: bool = False,
                 gpu_layers: int | None = None, check_tensors: bool = False,
                 extra_bufts: bool | None = None, devices: Sequence[str] | None = None,
                 split_mode: str | None = None, main_gpu: int | None = None,
                 tensor_split: Sequence[float] = (), no_host: bool = False) -> None:
        load_mode = ("mmap_mlock" if use_mlock else "mmap") if use_mmap else (
            "mlock" if use_mlock else "none")
        native = NativeModel(path, n_gpu_layers=gpu_layers, load_mode=load_mode,
                             check_tensors=check_tensors, use_extra_bufts=extra_bufts,
                             devices=devices, split_mode=split_mode, main_gpu=main_gpu,
                             tensor_split=tensor_split or None, no_host=no_host)
        self.native = native
        self.path = path
        self.n_vocab = int(native.n_vocab)
        self.n_ctx_train = int(native.n_ctx_train)
        self.n_embd = int(native.n_embd_out or native.n_embd)
        self.n_swa = int(native.n_swa)
        self.n_cls_out = int(native.n_cls_out)
        self.has_encoder = bool(native.has_encoder)
        self.has_decoder = bool(native.has_decoder)
        self.is_recurrent = bool(native.is_recurrent)
        self.add_bos = bool(native.add_bos)
        self.bos = -1 if native.bos is None else int(native.bos)
        self.eos = -1 if native.eos is None else int(native.eos)
        start = native.decoder_start_token
        self.decoder_start = self.bos if start is None else int(start)
        self.chat_template = native.chat_template()
        self.architecture = native.architecture
        self._eog: frozenset[int] | None = None
        self._on_close: list[Callable[[], None]] = []

    @property
    def eog_tokens(self) -> tuple[int, ...]:
        """Every end-of-generation token (scans the vocabulary once, on first use)."""
        if self._eog is None:
            self._eog = self.native.eog_tokens()
        return tuple(sorted(self._eog))

    def is_eog(self, token: int) -> bool:
        return self.native.is_eog(token)

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> Tokens:
        """Token ids of ``text`` (int32 array)."""
        ids = self.native.tokenize(text, add_special=add_special, parse_special=parse_special)
        return np.asarray(ids, dtype=np.int32)

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render as empty); cached natively."""
        return self.native.token_to_piece(token)

    def token_text(self, token: int) -> str:
        """The text of a token with special tokens rendered (e.g. ``<bos>``); "" if none."""
        if token < 0:
            return ""
        return self.native.token_to_piece(token, special=True).decode("utf-8", "replace")

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the model is closed (e.g. release its GPU lease)."""
        self._on_close.append(callback)

    def close(self) -> None:
        try:
            self.native.close()
        finally:
            callbacks, self._on_close = self._on_close, []
            for callback in callbacks:
                callback()


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
    no_perf: bool = True
    rope_scaling: str | None = None  # None: the model's
    rope_freq_base: float | None = None
    rope_freq_scale: float | None = None
    yarn_orig_ctx: int | None = None
    yarn_ext_factor: float | None = None
    yarn_attn_factor: float | None = None
    yarn_beta_fast: float | None = None
    yarn_beta_slow: float | None = None


class LlamaContext:
    """One ``llama_context``; used only from the engine thread after creation."""

    def __init__(self, model: LlamaModel, s: ContextSettings) -> None:
        self.model = model
        native = NativeContext(
            model.native, n_ctx=s.n_ctx, n_batch=s.n_batch, n_ubatch=s.n_ubatch,
            n_seq_max=s.n_seq_max, n_threads=s.n_threads, n_threads_batch=s.n_threads_batch,
            embeddings=s.embeddings,
            pooling_type=None if s.pooling == "unspecified" else s.pooling,
            kv_unified=s.kv_unified, swa_full=s.swa_full,
            flash_attn=_FLASH[s.flash_attention], type_k=s.cache_type_k,
            type_v=s.cache_type_v, offload_kqv=s.offload_kqv, op_offload=s.op_offload,
            no_perf=s.no_perf, rope_scaling_type=s.rope_scaling,
            rope_freq_base=s.rope_freq_base, rope_freq_scale=s.rope_freq_scale,
            yarn_orig_ctx=s.yarn_orig_ctx, yarn_ext_factor=s.yarn_ext_factor,
            yarn_attn_factor=s.yarn_attn_factor, yarn_beta_fast=s.yarn_beta_fast,
            yarn_beta_slow=s.yarn_beta_slow,
        )
        self.native = native
        self.n_ctx = native.n_ctx
        self.n_batch = native.n_batch
        self.n_ubatch = native.n_ubatch
        self.n_seq_max = native.n_seq_max
        self.pooling = native.pooling_type
        self.settings = s

    def warmup(self) -> float:
        """One throw-away run at load, as llama.cpp's ``common_init`` does: BOS and EOS
        through the encoder (if any) and the decoder, so weights are paged in and compute
        buffers allocated before the first request; then the KV memory is cleared and the
        perf counters reset. Returns the seconds it took."""
        start = time.perf_counter()
        model = self.model
        tokens = [t for t in (model.bos, model.eos) if t >= 0] or [0]
        native = self.native
        if model.has_encoder:
            batch = _one_sequence(tokens, logits=False)
            native.encode(batch)
            tokens = [model.decoder_start if model.decoder_start >= 0 else tokens[0]]
        if model.has_decoder:
            native.decode(_one_sequence(tokens[: self.n_batch], logits=True))
        native.memory_clear(True)
        native.synchronize()
        native.perf_reset()
        return time.perf_counter() - start

    def top_logprobs(self, index: int, n: int, token: int) -> dict[str, Any]:
        """Log-probabilities of batch entry ``index`` under the model's own distribution
        (softmax of the raw logits, before any sampler stage): the sampled ``token``'s and
        the ``n`` most likely tokens', most likely first."""
        logits = self.native.logits_ith(index).astype(np.float64)
        top = logits.max()
        logz = top + math.log(float(np.exp(logits - top).sum()))
        n = min(n, logits.shape[0])
        ids = np.argpartition(-logits, n - 1)[:n]
        ids = ids[np.argsort(-logits[ids], kind="stable")]
        return {
            "token": token,
            "logprob": float(logits[token] - logz),
            "top": [(int(i), float(logits[i] - logz)) for i in ids.tolist()],
        }

    def seq_rm(self, seq: int, p0: int, p1: int) -> bool:
        return self.native.seq_rm(seq, p0, p1)

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        self.native.seq_cp(src, dst, p0, p1)

    def seq_save(self, seq: int) -> bytes:
        return self.native.seq_state_get(seq)

    def seq_restore(self, seq: int, data: bytes) -> bool:
        return self.native.seq_state_set(data, seq) > 0

    def decode(self, batch: Batch) -> int:
        """0 on success, 1 when the KV cache is full, 2 when aborted, -1 for an invalid
        batch; fatal errors raise."""
        try:
            self.native.decode(batch.native)
        except KvCacheFullError:
            return 1
        except DecodeAbortedError:
            return 2
        except InvalidBatchError:
            return -1
        return 0

    def encode(self, batch: Batch) -> None:
        self.native.encode(batch.native)

    def embedding(self, seq: int) -> npt.NDArray[np.float32]:
        """The pooled embedding of ``seq`` (a copy)."""
        vec: npt.NDArray[np.float32] = self.native.embeddings_seq(seq, copy=True)
        return vec

    def perf(self) -> dict[str, float]:
        return self.native.perf()

    def close(self) -> None:
        self.native.close()


def _one_sequence(tokens: Sequence[int], *, logits: bool) -> NativeBatch:
    """A batch of ``tokens`` at positions 0.. of sequence 0 (output for the last one)."""
    batch = NativeBatch(len(tokens))
    n = len(tokens)
    batch.tokens[:n] = tokens
    batch.pos[:n] = np.arange(n, dtype=np.int32)
    batch.n_seq_id[:n] = 1
    batch.seq_ids[:n, 0] = 0
    batch.logits[:n] = 0
    batch.logits[n - 1] = 1 if logits else 0
    batch.n_tokens = n
    return batch


class Batch:
    """A reusable batch where each token belongs to one sequence, filled with NumPy."""

    def __init__(self, ctx: LlamaContext, capacity: int) -> None:
        native = NativeBatch(capacity)
        self.native = native
        self.capacity = capacity
        self.token = native.tokens
        self.pos = native.pos
        self.seq = native.seq_ids[:, 0]
        self.logits = native.logits
        native.n_seq_id[:] = 1

    def set_size(self, n: int) -> None:
        self.native.n_tokens = n


_BAN = -3.0e38  # the native logit_bias stage takes finite biases; this bans a token


def _native_spec(stage: Stage) -> tuple[str, Mapping[str, Any]]:
    if stage.name == "logit_bias":
        bias = tuple((t, _BAN if b == -math.inf else b) for t, b in stage.options["bias"])
        return "logit_bias", {"bias": bias}
    return stage.spec()


class _Greedy:
    """Greedy selection (after an optional logit bias) straight from the logits row.

    ``llama_sampler_sample`` first copies the whole vocabulary into a candidate array
    (262,144 entries for Gemma: most of a millisecond per token); a stateless greedy
    chain needs only the row's argmax, compared with the few biased entries. Same result
    as the native stages: biases added in float32, first index of the maximum wins.
    """

    __slots__ = ("bans", "bias", "ids", "only_bans", "unique")

    def __init__(self, bias: Sequence[tuple[int, float]]) -> None:
        self.ids = np.array([t for t, _ in bias], dtype=np.intp)
        self.bias = np.array([b for _, b in bias], dtype=np.float32)
        self.unique = len(set(self.ids.tolist())) == self.ids.shape[0]
        # bans (huge negative biases, e.g. every EOG token under ignore_eos) can only lose
        # against a finite maximum elsewhere: a set lookup settles them
        self.bans = frozenset(t for t, b in bias if b <= _BAN_LIMIT)
        self.only_bans = self.unique and len(self.bans) == self.ids.shape[0]

    def select(self, logits: npt.NDArray[np.float32]) -> int:
        ids = self.ids
        best = int(np.argmax(logits))
        if not ids.shape[0]:
            return best
        if self.only_bans and best not in self.bans and abs(logits[best]) < _FINITE_LIMIT:
            return best
        if not self.unique or best in ids:  # rare: the raw maximum is a biased token
            row = logits.copy()
            with np.errstate(over="ignore"):  # a ban on a ban is -inf, as in C
                np.add.at(row, ids, self.bias)
            return int(np.argmax(row))
        # ``best`` is the first maximum of every unbiased entry; only a biased entry
        # whose new value beats it (or ties at a lower index) can win instead.
        with np.errstate(over="ignore"):
            biased = logits[ids] + self.bias
        top = biased.max()
        if top < logits[best]:
            return best
        first = int(ids[biased == top].min())
        return first if top > logits[best] or first < best else best


_BAN_LIMIT = -1.0e37  # a bias at most this large in magnitude bans its token ...
_FINITE_LIMIT = 1.0e36  # ... against any maximum logit smaller than this in magnitude


def _greedy_plan(specs: Sequence[tuple[str, Mapping[str, Any]]]) -> _Greedy | None:
    """A :class:`_Greedy` when the chain is ``[logit_bias] greedy`` (no state), else None."""
    names = [name for name, _ in specs]
    if names == ["greedy"]:
        return _Greedy(())
    if names == ["logit_bias", "greedy"]:
        return _Greedy(specs[0][1]["bias"])
    return None


class SamplerChain:
    """A native sampler chain built from planned stages (plain greedy reads the logits
    row directly: see :class:`_Greedy`)."""

    def __init__(self, model: LlamaModel, stages: Sequence[Stage]) -> None:
        specs = [_native_spec(s) for s in stages]
        self.native = NativeChain(model.native, specs)
        self._greedy = _greedy_plan(specs)

    def sample(self, ctx: LlamaContext, index: int) -> int:
        if self._greedy is not None:
            return self._greedy.select(ctx.native.logits_ith(index))
        return self.native.sample(ctx.native, index)

    def accept(self, token: int) -> None:
        self.native.accept(token)

    def close(self) -> None:
        self.native.close()
