"""The llama context (``context``): window, batch sizes, slots, threads, attention, KV, RoPE."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, get_args

from sipp.config._enums import (
    MAX_PARALLEL_SEQUENCES,
    FlashAttention,
    KvCacheType,
    PoolingType,
    RopeScaling,
)
from sipp.config._group import Group, auto, setting
from sipp.config._rules import UINT32_MAX, as_bool, as_choice, as_float, as_int
from sipp.errors import ConfigurationError

__all__ = ["ContextRuntimeConfig"]

_COUNT = as_int(1, UINT32_MAX)
# GGML_MAX_N_THREADS: 65536 threads segfaulted at the first decode (and `check` passed it)
MAX_THREADS = 512
_THREADS = as_int(1, MAX_THREADS)
_POSITIVE = as_float(0.0, lo_open=True)
_NON_NEGATIVE = as_float(0.0)


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class ContextRuntimeConfig(Group):
    """The llama context: window, batch sizes, parallel slots, threads, attention and KV.

    The AUTO values (``n_ctx``, ``n_batch``, ``n_ubatch``, ``kv_unified``, ``swa_full``,
    ``embeddings``) are decided at load from the model's facts and the other settings;
    the RoPE/YaRN ones and the thread counts left unset are the GGUF's / libllama's.
    """

    _PATH: ClassVar[str] = "context"

    n_ctx: int | None = auto(
        _COUNT,
        "The total KV cells of the context, shared by the slots (unset: "
        "min(training context, 4096) * n_parallel).",
        fallback=4096,
    )
    n_batch: int | None = auto(
        _COUNT,
        "Tokens per llama_decode: the scheduler's per-step token budget (unset: 2048; "
        "embedding models with n_parallel > 1 use a multiple of n_parallel).",
        fallback=2048,
    )
    n_ubatch: int | None = auto(
        _COUNT,
        "Tokens per micro-batch, at most n_batch (unset: min(512, n_batch); non-causal and "
        "embedding models use n_batch).",
        fallback=512,
    )
    n_parallel: int = setting(
        1,
        as_int(1, MAX_PARALLEL_SEQUENCES),
        "Slots (sequences) served at once; 1 for encoder-decoder models.",
    )
    n_threads: int | None = auto(
        _THREADS, "CPU threads for generation, at most 512 (unset: libllama's)."
    )
    n_threads_batch: int | None = auto(
        _THREADS,
        "CPU threads for batches and the vision encoder, at most 512 (unset: libllama's).",
    )
    flash_attention: FlashAttention = setting(
        "auto", as_choice(get_args(FlashAttention)), "Flash attention: auto, enabled, disabled."
    )
    kv_unified: bool | None = auto(
        as_bool,
        "One KV buffer every slot may fill up to n_ctx, else n_ctx / n_parallel per slot "
        "(unset: on when n_parallel > 1 and the cache mode shares prefixes across keys).",
    )
    cache_type_k: KvCacheType = setting(
        "f16", as_choice(get_args(KvCacheType)), "Data type of the K cache."
    )
    cache_type_v: KvCacheType = setting(
        "f16", as_choice(get_args(KvCacheType)), "Data type of the V cache."
    )
    offload_kqv: bool = setting(True, as_bool, "Keep the KV cache and its ops on the GPU.")
    op_offload: bool = setting(True, as_bool, "Offload host-tensor ops to the GPU.")
    swa_full: bool | None = auto(
        as_bool,
        "A full-size sliding-window-attention cache, needed for prefix reuse (unset: on "
        "when the model uses SWA and the cache mode is not disabled).",
    )
    warmup: bool = setting(
        True,
        as_bool,
        "Run BOS/EOS through the model once at load, then clear the KV memory and perf "
        "counters, so the first request does not page in weights; False loads faster.",
    )
    rope_scaling: RopeScaling | None = auto(
        as_choice(get_args(RopeScaling)),
        "RoPE scaling type (unset: the GGUF's); none also forces a frequency scale of 1.",
    )
    rope_freq_base: float | None = auto(_POSITIVE, "RoPE base frequency (unset: the GGUF's).")
    rope_freq_scale: float | None = auto(
        _POSITIVE, "RoPE frequency scale, 0.25 stretches positions 4x (unset: the GGUF's)."
    )
    yarn_orig_ctx: int | None = auto(
        _COUNT, "The original training context YaRN scales from (unset: the GGUF's)."
    )
    yarn_ext_factor: float | None = auto(
        _NON_NEGATIVE, "YaRN extrapolation mix (unset: 1 with yarn scaling, else 0)."
    )
    yarn_attn_factor: float | None = auto(
        _POSITIVE,
        "YaRN attention magnitude; libllama recomputes it from the frequency scale whenever "
        "yarn_ext_factor is not 0.",
    )
    yarn_beta_fast: float | None = auto(_NON_NEGATIVE, "YaRN low correction dim.")
    yarn_beta_slow: float | None = auto(_NON_NEGATIVE, "YaRN high correction dim.")
    embeddings: bool | None = auto(
        as_bool,
        "Pooled embedding output; a model with it on cannot generate (unset: on for "
        "encoder-only models).",
    )
    pooling: PoolingType = setting(
        "unspecified",
        as_choice(get_args(PoolingType)),
        "Embedding pooling (unspecified: the GGUF's); none makes embed unsupported; rank "
        "returns the classifier outputs.",
    )

    def _check_together(self) -> None:
        if self.n_batch is not None and self.n_ubatch is not None and self.n_ubatch > self.n_batch:
            raise ConfigurationError(
                f"context.n_ubatch ({self.n_ubatch}) must not exceed context.n_batch "
                f"({self.n_batch})"
            )
