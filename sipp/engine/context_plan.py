"""Context planning: every model-dependent choice for the ``llama_context`` in one pure
function, :func:`plan_context` (model facts + config in, a :class:`ContextPlan` out).

Kept free of native calls so each rule (window per slot, batch sizes, unified KV, full SWA
cache, model class, cache mode) is unit-tested without loading a model;
:meth:`ModelFacts.of` reads the facts from a loaded model once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sipp.config import ContextRuntimeConfig, NativeRuntimeConfig
from sipp.errors import ConfigurationError, ModelLoadError
from sipp.scheduler import CacheMode

__all__ = [
    "DEFAULT_N_CTX_PER_SLOT",
    "ContextPlan",
    "ModelClass",
    "ModelFacts",
    "context_params",
    "plan_context",
]

ModelClass = Literal["decoder", "encoder", "encoder_decoder"]
# What the AUTO sizes start from, as declared with the settings (sipp.config).
DEFAULT_N_CTX_PER_SLOT: int = ContextRuntimeConfig.setting("n_ctx").fallback
_DEFAULT_N_BATCH: int = ContextRuntimeConfig.setting("n_batch").fallback
_DEFAULT_N_UBATCH: int = ContextRuntimeConfig.setting("n_ubatch").fallback
# libllama reports these non-causal architectures as "decoder" models.
_ENCODER_ONLY_ARCHS = frozenset({
    "bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert",
    "neo-bert", "t5encoder",
})
_FLASH = {"auto": "auto", "enabled": "on", "disabled": "off"}
_SHARING_MODES = ("live_slot_prefix", "live_slot_and_snapshot")


class _ModelLike(Protocol):
    """What :meth:`ModelFacts.of` reads (a :class:`sipp.native.LlamaModel`)."""

    @property
    def architecture(self) -> str: ...
    @property
    def n_ctx_train(self) -> int: ...
    @property
    def n_swa(self) -> int: ...
    @property
    def has_encoder(self) -> bool: ...
    @property
    def has_decoder(self) -> bool: ...
    @property
    def is_recurrent(self) -> bool: ...
    @property
    def is_hybrid(self) -> bool: ...


@dataclass(frozen=True)
class ModelFacts:
    """What the plan needs to know about a model (read once after loading it)."""

    architecture: str
    n_ctx_train: int = 0
    n_swa: int = 0
    has_encoder: bool = False
    has_decoder: bool = True
    is_recurrent: bool = False
    is_hybrid: bool = False

    @classmethod
    def of(cls, model: _ModelLike) -> ModelFacts:
        return cls(
            architecture=model.architecture, n_ctx_train=int(model.n_ctx_train),
            n_swa=int(model.n_swa), has_encoder=bool(model.has_encoder),
            has_decoder=bool(model.has_decoder), is_recurrent=bool(model.is_recurrent),
            is_hybrid=bool(model.is_hybrid),
        )

    @property
    def model_class(self) -> ModelClass:
        if self.has_encoder and self.has_decoder:
            return "encoder_decoder"
        if self.has_encoder or not self.has_decoder or self.architecture in _ENCODER_ONLY_ARCHS:
            return "encoder"
        return "decoder"


@dataclass(frozen=True)
class ContextPlan:
    """The context the engine asks libllama for, and how its slots share it."""

    model_class: ModelClass
    embeddings: bool
    cache_mode: CacheMode
    n_parallel: int
    n_ctx: int
    n_batch: int
    n_ubatch: int
    kv_unified: bool
    swa_full: bool
    partial_kv_edits: bool

    @property
    def cross_slot_copy(self) -> bool:
        """Whether KV can be copied between slots (one shared cache)."""
        return self.kv_unified or self.n_parallel == 1

    def window(self, n_ctx: int) -> int:
        """Tokens one slot holds in a context of ``n_ctx`` (libllama may round the planned
        ``n_ctx`` up): all of it when the KV is unified or there is one slot, else an even
        share."""
        return n_ctx if self.cross_slot_copy else n_ctx // self.n_parallel


def plan_context(facts: ModelFacts, config: NativeRuntimeConfig) -> ContextPlan:
    """Decide n_ctx, batch sizes, unified KV, full SWA cache and the cache mode.

    ``n_ctx`` unset is ``min(training context, 4096) * n_parallel``; ``n_batch`` 2048 and
    ``n_ubatch`` ``min(512, n_batch)``, except for non-causal or pooled models, which take a
    whole sequence in one ubatch. ``kv_unified`` unset is on when slots share prefixes
    (live-slot cache modes with more than one slot); ``swa_full`` unset is on for a
    sliding-window model whose cache is reused. Raises ``ModelLoadError`` for what an
    encoder-decoder model cannot do.
    """
    c = config.context
    model_class = facts.model_class
    embeddings = c.embeddings if c.embeddings is not None else model_class == "encoder"
    n_par = c.n_parallel
    if model_class == "encoder_decoder":
        if embeddings:
            raise ModelLoadError("encoder-decoder models do not support embedding output")
        if n_par > 1:
            raise ModelLoadError(
                f"encoder-decoder models require n_parallel=1 (got context.n_parallel={n_par})"
            )
    train = facts.n_ctx_train or DEFAULT_N_CTX_PER_SLOT
    n_ctx = c.n_ctx or min(train, DEFAULT_N_CTX_PER_SLOT) * n_par
    cache_mode: CacheMode = "disabled" if (
        model_class != "decoder" or embeddings or facts.is_recurrent
        or config.cache.mode == "off"
    ) else config.cache.mode
    kv_unified = c.kv_unified if c.kv_unified is not None else (
        cache_mode in _SHARING_MODES and n_par > 1)
    deterministic = config.scheduler.deterministic
    if deterministic:
        if c.kv_unified:
            raise ConfigurationError(
                "scheduler.deterministic needs per-sequence KV streams: leave "
                "context.kv_unified unset or False"
            )
        kv_unified = False
        # flash attention stays as configured: in the CPU backend's reference mode (see
        # LlamaContext.set_batch_invariant) it runs its per-row kernel, no tiling nor KV
        # chunking by batch shape
    swa_full = c.swa_full if c.swa_full is not None else (
        facts.n_swa > 0 and cache_mode != "disabled")
    n_batch = c.n_batch or _DEFAULT_N_BATCH
    n_ubatch = c.n_ubatch or min(_DEFAULT_N_UBATCH, n_batch)
    if model_class != "decoder" or embeddings:
        n_ubatch = n_batch  # non-causal / pooled: a whole sequence in one ubatch
        if embeddings and n_par > 1:
            # libllama reserves its pooled-output graph for min(n_ctx, n_ubatch) tokens
            # split evenly over n_seq_max sequences and aborts the process
            # (GGML_ASSERT ggml_can_mul_mat) when they do not divide: use the largest
            # multiple of n_parallel that fits both.
            n_ubatch = n_batch = max(min(n_batch, n_ctx) // n_par * n_par, n_par)
    return ContextPlan(
        model_class=model_class, embeddings=bool(embeddings), cache_mode=cache_mode,
        n_parallel=n_par, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_ubatch,
        kv_unified=bool(kv_unified), swa_full=bool(swa_full),
        partial_kv_edits=not facts.is_hybrid,
    )


def context_params(plan: ContextPlan, config: NativeRuntimeConfig) -> dict[str, Any]:
    """The :class:`sipp.native.LlamaContext` keyword arguments for ``plan`` (the settings
    the plan does not decide pass straight through; None keeps libllama's default)."""
    c = config.context
    return {
        "n_ctx": plan.n_ctx, "n_batch": plan.n_batch, "n_ubatch": plan.n_ubatch,
        "n_seq_max": plan.n_parallel, "n_threads": c.n_threads,
        "n_threads_batch": c.n_threads_batch, "embeddings": plan.embeddings,
        "pooling_type": None if c.pooling == "unspecified" else c.pooling,
        "kv_unified": plan.kv_unified, "swa_full": plan.swa_full,
        "flash_attn": _FLASH[c.flash_attention], "type_k": c.cache_type_k,
        "type_v": c.cache_type_v, "offload_kqv": c.offload_kqv, "op_offload": c.op_offload,
        "no_perf": not config.observability.backend_profiling,
        "rope_scaling_type": c.rope_scaling, "rope_freq_base": c.rope_freq_base,
        "rope_freq_scale": c.rope_freq_scale, "yarn_orig_ctx": c.yarn_orig_ctx,
        "yarn_ext_factor": c.yarn_ext_factor, "yarn_attn_factor": c.yarn_attn_factor,
        "yarn_beta_fast": c.yarn_beta_fast, "yarn_beta_slow": c.yarn_beta_slow,
    }
