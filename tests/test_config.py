"""NativeRuntimeConfig: defaults, validation messages, dict conversion, immutability."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sipp.config import (
    DEFAULT_CONTEXT_KEY,
    DEFAULT_MAX_QUEUED_REQUESTS,
    DEFAULT_MAX_TOKENS,
    CacheRuntimeConfig,
    ContextRuntimeConfig,
    ModelPlacementConfig,
    MultimodalRuntimeConfig,
    NativeRuntimeConfig,
    ObservabilityRuntimeConfig,
    ResidencyRuntimeConfig,
    SamplingRuntimeConfig,
    SamplingRuntimeOverride,
    SchedulerPolicyConfig,
    SchedulerRuntimeConfig,
)
from sipp.errors import ConfigurationError, SippError
from sipp.scheduler import SchedulerConfig

MIB = 1024 * 1024

GROUPS: dict[str, type[Any]] = {
    "placement": ModelPlacementConfig,
    "context": ContextRuntimeConfig,
    "sampling": SamplingRuntimeConfig,
    "scheduler": SchedulerRuntimeConfig,
    "cache": CacheRuntimeConfig,
    "multimodal": MultimodalRuntimeConfig,
    "residency": ResidencyRuntimeConfig,
    "observability": ObservabilityRuntimeConfig,
}

# The original's field names (inventory §1.4); ours may add fields but never drop one, except
# fit_params_min_ctx and fit_params_target_bytes: they only tuned fit_params, which the pinned
# libllama cannot do, so they were removed (see test_removed_fields_are_unknown_keys).
ORIGINAL_FIELDS: dict[type[Any], set[str]] = {
    ModelPlacementConfig: {
        "devices", "gpu_layers", "split_mode", "main_gpu", "tensor_split", "use_mmap",
        "use_mlock", "fit_params", "check_tensors", "no_extra_bufts", "no_host",
    },
    ContextRuntimeConfig: {
        "n_ctx", "n_batch", "n_ubatch", "n_parallel", "n_threads", "n_threads_batch",
        "flash_attention", "kv_unified", "cache_type_k", "cache_type_v", "offload_kqv",
        "op_offload", "swa_full", "warmup", "rope_scaling", "rope_freq_base", "rope_freq_scale",
        "yarn_orig_ctx", "yarn_ext_factor", "yarn_attn_factor", "yarn_beta_fast",
        "yarn_beta_slow", "embeddings", "pooling",
    },
    SamplingRuntimeConfig: {
        "samplers", "seed", "top_k", "top_p", "min_p", "typical_p", "xtc_probability",
        "xtc_threshold", "top_n_sigma", "temperature", "dynatemp_range", "dynatemp_exponent",
        "repeat_last_n", "repeat_penalty", "frequency_penalty", "presence_penalty",
        "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
        "dry_sequence_breakers", "mirostat", "mirostat_tau", "mirostat_eta", "min_keep",
        "n_probs", "logit_bias", "ignore_eos", "grammar_lazy", "preserved_tokens",
        "backend_sampling",
    },
    SchedulerPolicyConfig: {"mode", "decode_token_reserve", "enable_adaptive_prefill_chunking"},
    SchedulerRuntimeConfig: {
        "continuous_batching", "policy", "prefill_chunk_size", "max_running_requests",
        "max_queued_requests",
    },
    CacheRuntimeConfig: {
        "mode", "retained_prefix_tokens", "snapshot_interval_tokens", "max_snapshot_entries",
        "max_snapshot_bytes",
    },
    MultimodalRuntimeConfig: {"projector_path", "use_gpu", "image_min_tokens", "image_max_tokens"},
    ResidencyRuntimeConfig: {
        "max_gpu_models_per_device", "allow_cpu_models_while_gpu_loaded", "require_gpu_lease",
        "gpu_memory_safety_margin_bytes",
    },
    ObservabilityRuntimeConfig: {"runtime_metrics", "backend_profiling"},
    NativeRuntimeConfig: set(GROUPS),
}  # fmt: skip


def _names(cls: type[Any]) -> set[str]:
    return {spec.name for spec in dataclasses.fields(cls)}


# --- surface ------------------------------------------------------------------------------


def test_constants() -> None:
    assert DEFAULT_CONTEXT_KEY == "default"
    assert DEFAULT_MAX_TOKENS == 64


@pytest.mark.parametrize("cls", list(ORIGINAL_FIELDS), ids=lambda cls: cls.__name__)
def test_every_original_field_exists(cls: type[Any]) -> None:
    assert ORIGINAL_FIELDS[cls] <= _names(cls)


def test_sampling_override_is_the_same_class() -> None:
    assert SamplingRuntimeOverride is SamplingRuntimeConfig


@pytest.mark.parametrize("cls", list(ORIGINAL_FIELDS), ids=lambda cls: cls.__name__)
def test_groups_are_keyword_only(cls: type[Any]) -> None:
    with pytest.raises(TypeError):
        cls(1)


# --- defaults -----------------------------------------------------------------------------


def test_empty_config_reads_the_documented_defaults() -> None:
    resolved = NativeRuntimeConfig()

    placement = resolved.placement
    assert placement.devices == ()
    assert placement.gpu_layers == "auto"
    assert placement.split_mode == "layer"
    assert placement.main_gpu is None
    assert placement.use_mmap is True
    assert placement.use_mlock is False
    assert placement.fit_params is False
    assert placement.tensor_split == ()

    context = resolved.context
    assert context.n_parallel == 1
    assert context.n_ctx is None and context.n_batch is None and context.n_ubatch is None
    assert context.flash_attention == "auto"
    assert (context.cache_type_k, context.cache_type_v) == ("f16", "f16")
    assert context.offload_kqv is True and context.op_offload is True
    assert context.swa_full is None and context.warmup is True  # AUTO: decided at load
    assert context.kv_unified is None and context.embeddings is None
    assert context.pooling == "unspecified"

    sampling = resolved.sampling
    assert sampling.samplers == ("top_k", "penalties", "top_p", "temperature")
    assert sampling.seed is None
    assert sampling.top_k == 40
    assert sampling.top_p == pytest.approx(0.8)
    assert sampling.temperature == pytest.approx(0.7)
    assert sampling.repeat_last_n == 64
    assert sampling.repeat_penalty == pytest.approx(1.05)
    assert sampling.frequency_penalty == 0.0 and sampling.presence_penalty == 0.0
    assert sampling.mirostat == 0
    assert sampling.logit_bias == () and sampling.preserved_tokens == ()
    assert sampling.ignore_eos is False and sampling.grammar_lazy is False
    assert sampling.backend_sampling is True

    scheduler = resolved.scheduler
    assert scheduler.continuous_batching is True
    assert scheduler.prefill_chunk_size == 0
    assert scheduler.max_running_requests is None  # AUTO: context.n_parallel
    assert scheduler.max_queued_requests == DEFAULT_MAX_QUEUED_REQUESTS == 256
    assert scheduler.policy.mode == "balanced"
    assert scheduler.policy.decode_token_reserve == 1
    assert scheduler.policy.enable_adaptive_prefill_chunking is False

    cache = resolved.cache
    assert cache.mode == "live_slot_prefix"
    assert cache.retained_prefix_tokens == 100
    assert cache.snapshot_interval_tokens == 128
    assert cache.max_snapshot_entries == 32
    assert cache.max_snapshot_bytes == 256 * MIB

    assert resolved.multimodal.projector_path is None
    assert resolved.multimodal.use_gpu is True

    residency = resolved.residency
    assert residency.max_gpu_models_per_device == 1
    assert residency.allow_cpu_models_while_gpu_loaded is True
    assert residency.require_gpu_lease is True
    assert residency.gpu_memory_safety_margin_bytes == 512 * MIB

    assert resolved.observability.runtime_metrics is False
    assert resolved.observability.backend_profiling is False
    assert resolved.observability.metrics_enabled is False


def test_unset_fields_read_their_default_and_are_not_given() -> None:
    config = NativeRuntimeConfig()
    assert config.context.n_parallel == 1
    assert config.sampling.top_k == 40
    assert config.context.n_ctx is None  # AUTO
    assert config.observability.runtime_metrics is False
    assert config.fields_set == frozenset() and config.context.fields_set == frozenset()
    explicit_none = NativeRuntimeConfig(
        context=None,
        observability=ObservabilityRuntimeConfig(runtime_metrics=None),  # type: ignore[arg-type]
    )
    assert explicit_none == NativeRuntimeConfig()


def test_set_values_are_read_back() -> None:
    resolved = NativeRuntimeConfig(
        context=ContextRuntimeConfig(n_ctx=4096, n_parallel=4, flash_attention="enabled"),
        sampling=SamplingRuntimeConfig(top_k=0, temperature=0, seed=7),
        scheduler=SchedulerRuntimeConfig(max_running_requests=2, max_queued_requests=10),
        observability=ObservabilityRuntimeConfig(backend_profiling=True),
    )
    assert resolved.context.n_ctx == 4096
    assert resolved.context.flash_attention == "enabled"
    assert (resolved.sampling.top_k, resolved.sampling.temperature) == (0, 0.0)
    assert resolved.sampling.seed == 7
    assert resolved.scheduler.max_running_requests == 2
    assert resolved.scheduler.max_queued_requests == 10
    assert resolved.observability.metrics_enabled is True


def _scheduler(config: NativeRuntimeConfig) -> SchedulerConfig:
    """The scheduler settings a model loaded with ``config`` gets (as the engine builds
    them; the window and budget are decided at load)."""
    return SchedulerConfig.from_runtime(config, n_ctx_per_slot=512, token_budget=512)


def test_max_running_requests_defaults_to_n_parallel() -> None:
    scheduler = _scheduler(NativeRuntimeConfig(context={"n_parallel": 8}))
    assert scheduler.running_limit == 8
    assert _scheduler(NativeRuntimeConfig()).running_limit == 1


@pytest.mark.parametrize(
    ("mode", "resolved_mode", "live", "shared", "snapshots", "retained"),
    [
        ("off", "disabled", False, False, False, 0),
        ("disabled", "disabled", False, False, False, 0),
        ("context_key", "context_key", True, False, False, 100),
        ("live_slot_prefix", "live_slot_prefix", True, True, False, 100),
        ("state_snapshot", "state_snapshot", False, False, True, 0),
        ("live_slot_and_snapshot", "live_slot_and_snapshot", True, True, True, 100),
    ],
)
def test_cache_modes(
    mode: str, resolved_mode: str, live: bool, shared: bool, snapshots: bool, retained: int
) -> None:
    cache = _scheduler(NativeRuntimeConfig(cache=CacheRuntimeConfig(mode=mode)))  # type: ignore[arg-type]
    assert cache.cache_mode == resolved_mode
    assert cache.live_reuse is live
    assert cache.shares_across_keys is shared
    assert cache.snapshots is snapshots
    assert cache.shift_keep_tokens == retained


def test_numbers_are_normalized() -> None:
    sampling = SamplingRuntimeConfig(
        top_p=1,
        top_k=np.int64(5),  # type: ignore[arg-type]
        temperature=np.float32(0.5),  # type: ignore[arg-type]
    )
    assert isinstance(sampling.top_p, float) and sampling.top_p == 1.0
    assert type(sampling.top_k) is int and sampling.top_k == 5
    assert type(sampling.temperature) is float
    assert SamplingRuntimeConfig(top_p=1) == SamplingRuntimeConfig(top_p=1.0)


def test_gpu_layers_forms() -> None:
    assert ModelPlacementConfig(gpu_layers="all").gpu_layers == "all"
    assert ModelPlacementConfig(gpu_layers=12).gpu_layers == 12
    assert ModelPlacementConfig(gpu_layers={"count": 0}).gpu_layers == 0  # type: ignore[arg-type]
    assert ModelPlacementConfig(gpu_layers=3).to_dict() == {"gpu_layers": {"count": 3}}


def test_logit_bias_forms() -> None:
    as_pairs = SamplingRuntimeConfig(logit_bias=[(5, -1.5), [7, -math.inf]])  # type: ignore[list-item]
    as_dict = SamplingRuntimeConfig(logit_bias={5: -1.5, 7: -math.inf})  # type: ignore[arg-type]
    assert as_pairs == as_dict
    assert as_pairs.logit_bias == ((5, -1.5), (7, -math.inf))


def test_projector_path_accepts_path_objects(tmp_path: Path) -> None:
    config = MultimodalRuntimeConfig(projector_path=tmp_path / "mmproj.gguf")  # type: ignore[arg-type]
    assert config.projector_path == str(tmp_path / "mmproj.gguf")


# --- sampling overrides -------------------------------------------------------------------


def test_override_replaces_only_the_fields_it_sets() -> None:
    base = NativeRuntimeConfig(sampling={"top_k": 10, "temperature": 0.2}).sampling
    merged = base.with_override(SamplingRuntimeOverride(temperature=0.0, seed=3))
    assert merged.temperature == 0.0
    assert merged.seed == 3
    assert merged.top_k == 10
    assert merged.top_p == pytest.approx(0.8)
    assert base.temperature == pytest.approx(0.2)
    assert base.with_override(None) is base
    assert base.with_override(SamplingRuntimeOverride()) is base
    assert SamplingRuntimeOverride().is_empty()
    assert not SamplingRuntimeOverride(top_k=1).is_empty()


# --- validation ---------------------------------------------------------------------------

BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"context": {"n_ctx": -5}}, "context.n_ctx must be a positive integer, got -5"),
    ({"context": {"n_ctx": 0}}, "context.n_ctx must be a positive integer, got 0"),
    ({"context": {"n_ctx": True}}, "context.n_ctx must be a positive integer, got True"),
    ({"context": {"n_ctx": 2.0}}, "context.n_ctx must be a positive integer, got 2.0"),
    ({"context": {"n_ctx": "2048"}}, "context.n_ctx must be a positive integer, got '2048'"),
    ({"context": {"n_ctx": 2**32}}, "context.n_ctx must be at most 4294967295, got 4294967296"),
    ({"context": {"n_parallel": 0}}, "context.n_parallel must be a positive integer, got 0"),
    ({"context": {"n_parallel": 257}}, "context.n_parallel must be at most 256, got 257"),
    ({"context": {"n_threads": -1}}, "context.n_threads must be a positive integer, got -1"),
    # 65536 threads segfaulted at the first decode (red-team); 512 is GGML_MAX_N_THREADS
    ({"context": {"n_threads": 65536}}, "context.n_threads must be at most 512, got 65536"),
    ({"context": {"n_threads_batch": 513}}, "context.n_threads_batch must be at most 512, got 513"),
    (
        {"context": {"n_batch": 256, "n_ubatch": 512}},
        "context.n_ubatch (512) must not exceed context.n_batch (256)",
    ),
    (
        {"context": {"flash_attention": "on"}},
        "context.flash_attention must be one of: auto, enabled, disabled; got 'on'",
    ),
    (
        {"context": {"cache_type_k": "q8"}},
        "context.cache_type_k must be one of: f16, f32, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1; "
        "got 'q8'",
    ),
    (
        {"context": {"rope_scaling": "longrope"}},
        "context.rope_scaling must be one of: none, linear, yarn; got 'longrope'",
    ),
    (
        {"context": {"pooling": "max"}},
        "context.pooling must be one of: unspecified, none, mean, cls, last, rank; got 'max'",
    ),
    ({"context": {"kv_unified": 1}}, "context.kv_unified must be a bool (true or false), got 1"),
    (
        {"context": {"rope_freq_base": 0}},
        "context.rope_freq_base must be a finite number > 0, got 0",
    ),
    (
        {"sampling": {"top_p": 1.5}},
        "sampling.top_p must be a finite number in [0, 1], got 1.5",
    ),
    (
        {"sampling": {"temperature": math.nan}},
        "sampling.temperature must be a finite number >= 0, got nan",
    ),
    (
        {"sampling": {"temperature": math.inf}},
        "sampling.temperature must be a finite number >= 0, got inf",
    ),
    (
        {"sampling": {"temperature": 1e39}},
        "sampling.temperature must be a finite number >= 0, got 1e+39",
    ),
    (
        {"sampling": {"temperature": -0.1}},
        "sampling.temperature must be a finite number >= 0, got -0.1",
    ),
    (
        {"sampling": {"repeat_penalty": 0.0}},
        "sampling.repeat_penalty must be a finite number > 0, got 0.0",
    ),
    (
        {"sampling": {"presence_penalty": math.inf}},
        "sampling.presence_penalty must be a finite number, got inf",
    ),
    (
        {"sampling": {"seed": -1}},
        "sampling.seed must be an unsigned 32-bit integer in [0, 4294967295], got -1",
    ),
    ({"sampling": {"seed": 2**32}}, "sampling.seed must be at most 4294967295, got 4294967296"),
    ({"sampling": {"top_k": -1}}, "sampling.top_k must be a non-negative integer, got -1"),
    (
        {"sampling": {"repeat_last_n": -2}},
        "sampling.repeat_last_n must be an integer >= -1 (-1 means the whole context), got -2",
    ),
    ({"sampling": {"mirostat": 3}}, "sampling.mirostat must be one of: 0, 1, 2; got 3"),
    (
        {"sampling": {"samplers": "top_k"}},
        "sampling.samplers must be a list of sampler stage names, got 'top_k'",
    ),
    (
        {"sampling": {"samplers": ["top_k", "greedy"]}},
        "sampling.samplers[1] must be one of: dry, top_k, typical_p, top_p, top_n_sigma, "
        "min_p, xtc, temperature, infill, penalties, adaptive_p; got 'greedy'",
    ),
    (
        {"sampling": {"samplers": ["top_k", "top_k"]}},
        "sampling.samplers lists 'top_k' more than once",
    ),
    (
        {"sampling": {"samplers": ["adaptive_p", "min_p"]}},
        "sampling.samplers: 'adaptive_p' picks the token itself and must be the last stage",
    ),
    (
        {"sampling": {"logit_bias": [[5]]}},
        "sampling.logit_bias[0] must be a [token_id, bias] pair, got a list",
    ),
    (
        {"sampling": {"logit_bias": [[-5, 1.0]]}},
        "sampling.logit_bias[0][0] must be a non-negative integer, got -5",
    ),
    (
        {"sampling": {"logit_bias": [[5, math.inf]]}},
        "sampling.logit_bias[0][1] must be a finite number or -inf, got inf",
    ),
    (
        {"sampling": {"preserved_tokens": [1, 1]}},
        "sampling.preserved_tokens lists 1 more than once",
    ),
    (
        {"sampling": {"dry_sequence_breakers": [""]}},
        "sampling.dry_sequence_breakers[0] must be a non-empty string, got ''",
    ),
    (
        {"placement": {"gpu_layers": "some"}},
        'placement.gpu_layers must be "auto", "all", a layer count or {"count": int}; got \'some\'',
    ),
    (
        {"placement": {"gpu_layers": {"layers": 3}}},
        'placement.gpu_layers must be "auto", "all", a layer count or {"count": int}; '
        "got a dict with keys 'layers'",
    ),
    (
        {"placement": {"gpu_layers": True}},
        'placement.gpu_layers must be "auto", "all", a layer count or {"count": int}; got True',
    ),
    (
        {"placement": {"gpu_layers": {"count": -1}}},
        'placement.gpu_layers count must be a non-negative integer (use "all" for every '
        "layer), got -1",
    ),
    (
        {"placement": {"split_mode": "rows"}},
        "placement.split_mode must be one of: none, layer, row, tensor; got 'rows'",
    ),
    ({"placement": {"main_gpu": -1}}, "placement.main_gpu must be a non-negative integer, got -1"),
    (
        {"placement": {"devices": ["CUDA0", "CUDA0"]}},
        "placement.devices lists 'CUDA0' more than once",
    ),
    (
        {"placement": {"tensor_split": [0.5, -0.5]}},
        "placement.tensor_split[1] must be a finite number >= 0, got -0.5",
    ),
    (
        {"placement": {"tensor_split": [1, "a"]}},
        "placement.tensor_split[1] must be a finite number >= 0, got 'a'",
    ),
    (
        {"scheduler": {"max_running_requests": 4}},
        "scheduler.max_running_requests (4) must not exceed context.n_parallel (1, the "
        "default); raise context.n_parallel to run more requests at once",
    ),
    (
        {"context": {"n_parallel": 2}, "scheduler": {"max_running_requests": 3}},
        "scheduler.max_running_requests (3) must not exceed context.n_parallel (2); raise "
        "context.n_parallel to run more requests at once",
    ),
    (
        {"scheduler": {"max_queued_requests": 0}},
        "scheduler.max_queued_requests must be a positive integer, got 0",
    ),
    (
        {"scheduler": {"prefill_chunk_size": -1}},
        "scheduler.prefill_chunk_size must be a non-negative integer, got -1",
    ),
    (
        {"scheduler": {"policy": {"mode": "fast"}}},
        "scheduler.policy.mode must be one of: latency_first, balanced, throughput_first; "
        "got 'fast'",
    ),
    (
        {"scheduler": {"policy": {"decode_token_reserve": -1}}},
        "scheduler.policy.decode_token_reserve must be a non-negative integer, got -1",
    ),
    (
        {"scheduler": {"policy": "balanced"}},
        "scheduler.policy must be a SchedulerPolicyConfig or a dict, got 'balanced'",
    ),
    (
        {"cache": {"mode": "lru"}},
        "cache.mode must be one of: disabled, live_slot_prefix, state_snapshot, "
        "live_slot_and_snapshot, off, context_key; got 'lru'",
    ),
    (
        {"cache": {"max_snapshot_entries": 0}},
        "cache.max_snapshot_entries must be a positive integer, got 0",
    ),
    (
        {"cache": {"retained_prefix_tokens": -1}},
        "cache.retained_prefix_tokens must be a non-negative integer, got -1",
    ),
    (
        {"multimodal": {"projector_path": ""}},
        "multimodal.projector_path must be a non-empty file path, got ''",
    ),
    (
        {"multimodal": {"image_min_tokens": 10, "image_max_tokens": 5}},
        "multimodal.image_min_tokens (10) must not exceed multimodal.image_max_tokens (5)",
    ),
    (
        {"residency": {"max_gpu_models_per_device": 0}},
        "residency.max_gpu_models_per_device must be a positive integer, got 0",
    ),
    (
        {"residency": {"gpu_memory_safety_margin_bytes": -1}},
        "residency.gpu_memory_safety_margin_bytes must be a non-negative integer, got -1",
    ),
    (
        {"observability": {"runtime_metrics": "yes"}},
        "observability.runtime_metrics must be a bool (true or false), got 'yes'",
    ),
    ({"context": [("n_ctx", 1)]}, "context must be a ContextRuntimeConfig or a dict, got a list"),
    (
        {"sampling": ContextRuntimeConfig()},
        "sampling must be a SamplingRuntimeConfig or a dict, got a ContextRuntimeConfig",
    ),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_VALUES, ids=lambda item: str(item)[:60])
def test_bad_values_raise_configuration_error_naming_the_field(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        NativeRuntimeConfig(**kwargs)
    assert str(raised.value) == message
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, SippError)
    assert raised.value.code == "configuration"


def test_group_classes_raise_the_same_messages_directly() -> None:
    with pytest.raises(ConfigurationError, match=r"^context\.n_ctx must be a positive integer"):
        ContextRuntimeConfig(n_ctx=-5)
    with pytest.raises(ConfigurationError, match=r"^scheduler\.policy\.mode must be one of"):
        SchedulerPolicyConfig(mode="fast")  # type: ignore[arg-type]


def _field_cases() -> list[tuple[type[Any], str]]:
    cases = []
    for cls in ORIGINAL_FIELDS:
        for name in sorted(_names(cls)):
            cases.append((cls, name))
    return cases


@pytest.mark.parametrize(
    ("cls", "name"), _field_cases(), ids=lambda item: getattr(item, "__name__", str(item))
)
def test_every_field_rejects_a_wrong_type_naming_its_path(cls: type[Any], name: str) -> None:
    path = cls._PATH
    with pytest.raises(ConfigurationError) as raised:
        cls(**{name: object()})
    assert str(raised.value).startswith(f"{path}.{name} " if path else f"{name} ")
    assert str(raised.value).endswith("got an object")


# --- dict conversion ----------------------------------------------------------------------


def test_dicts_are_accepted_for_groups() -> None:
    config = NativeRuntimeConfig(
        context={"n_ctx": 2048},
        scheduler={"policy": {"mode": "latency_first"}, "max_queued_requests": 5},
    )
    assert config.context == ContextRuntimeConfig(n_ctx=2048)
    assert isinstance(config.scheduler.policy, SchedulerPolicyConfig)
    assert config.scheduler.policy.mode == "latency_first"
    assert config == NativeRuntimeConfig(
        context=ContextRuntimeConfig(n_ctx=2048),
        scheduler=SchedulerRuntimeConfig(
            policy=SchedulerPolicyConfig(mode="latency_first"), max_queued_requests=5
        ),
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"contxt": {}}, "unknown key 'contxt' in runtime config (did you mean 'context'?)"),
        (
            {"zzz": 1},
            "unknown key 'zzz' in runtime config (expected one of: placement, context, "
            "sampling, scheduler, cache, multimodal, residency, observability, speculative)",
        ),
        ({"context": {"n_ctxx": 1}}, "unknown key 'n_ctxx' in context (did you mean 'n_ctx'?)"),
        (
            {"scheduler": {"policy": {"modes": "balanced"}}},
            "unknown key 'modes' in scheduler.policy (did you mean 'mode'?)",
        ),
        ({"context": {1: 2}}, "context keys must be strings, got 1"),
    ],
)
def test_unknown_keys_are_rejected_with_their_path(data: dict[Any, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        NativeRuntimeConfig.from_dict(data)
    assert str(raised.value) == message


def test_from_dict_rejects_a_non_dict() -> None:
    with pytest.raises(ConfigurationError, match=r"^runtime config must be a dict, got a list$"):
        NativeRuntimeConfig.from_dict([])  # type: ignore[arg-type]


FULL = NativeRuntimeConfig(
    placement=ModelPlacementConfig(
        devices=["CUDA0", "CUDA1"],
        gpu_layers=20,
        split_mode="row",
        main_gpu=1,
        tensor_split=[0.25, 0.75],
        use_mmap=False,
        fit_params=False,
    ),
    context=ContextRuntimeConfig(
        n_ctx=8192,
        n_batch=1024,
        n_ubatch=512,
        n_parallel=4,
        n_threads=2,
        flash_attention="disabled",
        kv_unified=True,
        cache_type_k="q8_0",
        swa_full=True,
        rope_scaling="yarn",
        yarn_ext_factor=0.5,
        embeddings=False,
        pooling="mean",
    ),
    sampling=SamplingRuntimeConfig(
        samplers=["penalties", "top_k", "min_p", "temperature"],
        seed=42,
        top_k=20,
        min_p=0.1,
        temperature=0.3,
        repeat_last_n=-1,
        dry_sequence_breakers=["\n", "."],
        mirostat=2,
        logit_bias=[(11, -2.5)],
        preserved_tokens=[1, 2],
        backend_sampling=False,
    ),
    scheduler=SchedulerRuntimeConfig(
        continuous_batching=False,
        policy=SchedulerPolicyConfig(
            mode="throughput_first", enable_adaptive_prefill_chunking=True
        ),
        prefill_chunk_size=256,
        max_running_requests=3,
        max_queued_requests=16,
    ),
    cache=CacheRuntimeConfig(mode="context_key", retained_prefix_tokens=8),
    multimodal=MultimodalRuntimeConfig(projector_path="mmproj.gguf", image_max_tokens=256),
    residency=ResidencyRuntimeConfig(require_gpu_lease=False),
    observability=ObservabilityRuntimeConfig(runtime_metrics=True),
)


def test_to_dict_from_dict_round_trip() -> None:
    data = FULL.to_dict()
    assert NativeRuntimeConfig.from_dict(data) == FULL
    assert NativeRuntimeConfig.from_dict(json.loads(json.dumps(data))) == FULL


def test_to_dict_writes_only_what_was_set() -> None:
    assert NativeRuntimeConfig().to_dict() == {}
    assert NativeRuntimeConfig(
        placement={"gpu_layers": 0}, sampling={"samplers": ["top_k"], "logit_bias": {3: -1.0}}
    ).to_dict() == {
        "placement": {"gpu_layers": {"count": 0}},
        "sampling": {"samplers": ["top_k"], "logit_bias": [[3, -1.0]]},
    }
    assert FULL.to_dict()["scheduler"]["policy"] == {
        "mode": "throughput_first",
        "enable_adaptive_prefill_chunking": True,
    }


def test_gateway_toml_runtime_table() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the stdlib from 3.11")
    table = tomllib.loads(
        """
        [context]
        n_ctx = 2048
        n_parallel = 2

        [placement]
        gpu_layers = { count = 10 }

        [sampling]
        samplers = ["top_k", "temperature"]
        logit_bias = [[15, -inf]]

        [scheduler.policy]
        mode = "latency_first"

        [cache]
        mode = "off"
        """
    )
    config = NativeRuntimeConfig.from_dict(table)
    assert config.context.n_ctx == 2048
    assert _scheduler(config).running_limit == 2
    assert config.placement.gpu_layers == 10
    assert config.sampling.logit_bias == ((15, -math.inf),)
    assert config.scheduler.policy.mode == "latency_first"
    assert _scheduler(config).cache_mode == "disabled"


# --- immutability -------------------------------------------------------------------------


def test_configs_are_frozen_and_hashable() -> None:
    config = NativeRuntimeConfig(context={"n_ctx": 2048})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.context = ContextRuntimeConfig()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.context.n_ctx = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        FULL.sampling.top_k = 1  # type: ignore[misc]
    assert hash(FULL) == hash(NativeRuntimeConfig.from_dict(FULL.to_dict()))
    assert len({FULL, NativeRuntimeConfig.from_dict(FULL.to_dict())}) == 1


def test_lists_are_copied_into_tuples() -> None:
    devices = ["CUDA0"]
    placement = ModelPlacementConfig(devices=devices)
    devices.append("CUDA1")
    assert placement.devices == ("CUDA0",)


def test_replace_validates_again() -> None:
    context = ContextRuntimeConfig(n_ctx=2048)
    assert dataclasses.replace(context, n_ctx=4096).n_ctx == 4096
    with pytest.raises(ConfigurationError, match=r"^context\.n_ctx must be a positive integer"):
        dataclasses.replace(context, n_ctx=-1)


def test_repr_shows_only_what_was_set() -> None:
    config = NativeRuntimeConfig(context={"n_ctx": 2048}, cache={"mode": "off"})
    assert repr(config) == (
        "NativeRuntimeConfig(context=ContextRuntimeConfig(n_ctx=2048), "
        "cache=CacheRuntimeConfig(mode='off'))"
    )
    assert repr(NativeRuntimeConfig()) == "NativeRuntimeConfig()"


# --- fields that could do nothing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"scheduler": {"policy": {"order": "fifo"}}},
            "unknown key 'order' in scheduler.policy (did you mean 'mode'?)",
        ),
        (
            {"placement": {"fit_params_min_ctx": 512}},
            "unknown key 'fit_params_min_ctx' in placement (did you mean 'fit_params'?)",
        ),
        (
            {"placement": {"fit_params_target_bytes": [MIB]}},
            "unknown key 'fit_params_target_bytes' in placement (did you mean 'fit_params'?)",
        ),
    ],
)
def test_removed_fields_are_unknown_keys(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        NativeRuntimeConfig.from_dict(data)
    assert str(raised.value) == message
    with pytest.raises(TypeError):
        SchedulerPolicyConfig(order="fifo")  # type: ignore[call-arg]


def test_fit_params_true_is_refused_naming_the_field() -> None:
    # fit_params is in the spec; the pinned libllama has no llama_params_fit (it lives in
    # llama.cpp's common library), so True stays a clear error rather than a silent no-op.
    with pytest.raises(ConfigurationError, match=r"^placement\.fit_params is not supported.*"
                       "llama_params_fit"):
        NativeRuntimeConfig(placement={"fit_params": True})
    assert ModelPlacementConfig(fit_params=False).fit_params is False
