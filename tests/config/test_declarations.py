"""Each setting is declared once (type, default or AUTO, check, doc) and read from there."""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any

import pytest

from sipp.config import (
    AUTO,
    DEFAULT_SAMPLERS,
    CacheRuntimeConfig,
    ContextRuntimeConfig,
    Group,
    ModelPlacementConfig,
    MultimodalRuntimeConfig,
    NativeRuntimeConfig,
    ObservabilityRuntimeConfig,
    ResidencyRuntimeConfig,
    SamplingRuntimeConfig,
    SchedulerPolicyConfig,
    SchedulerRuntimeConfig,
    Setting,
    SpeculativeConfig,
)
from sipp.errors import ConfigurationError
from sipp.scheduler import SchedulerConfig

MIB = 1024 * 1024
DOCS = Path(__file__).resolve().parents[2] / "docs" / "local-runtime.md"

# The documented defaults (docs/local-runtime.md, the seed's values); AUTO = decided at load.
DEFAULTS: dict[type[Group], dict[str, Any]] = {
    ModelPlacementConfig: {
        "devices": (), "gpu_layers": "auto", "split_mode": "layer", "main_gpu": AUTO,
        "tensor_split": (), "use_mmap": True, "use_mlock": False, "fit_params": False,
        "check_tensors": False, "no_extra_bufts": AUTO, "no_host": False,
    },
    ContextRuntimeConfig: {
        "n_ctx": AUTO, "n_batch": AUTO, "n_ubatch": AUTO, "n_parallel": 1, "n_threads": AUTO,
        "n_threads_batch": AUTO, "flash_attention": "auto", "kv_unified": AUTO,
        "cache_type_k": "f16", "cache_type_v": "f16", "offload_kqv": True, "op_offload": True,
        "swa_full": AUTO, "warmup": True, "rope_scaling": AUTO, "rope_freq_base": AUTO,
        "rope_freq_scale": AUTO, "yarn_orig_ctx": AUTO, "yarn_ext_factor": AUTO,
        "yarn_attn_factor": AUTO, "yarn_beta_fast": AUTO, "yarn_beta_slow": AUTO,
        "embeddings": AUTO, "pooling": "unspecified",
    },
    SamplingRuntimeConfig: {
        "samplers": ("top_k", "penalties", "top_p", "temperature"), "seed": None,
        "top_k": 40, "top_p": 0.8, "min_p": 0.05, "typical_p": 1.0, "xtc_probability": 0.0,
        "xtc_threshold": 0.1, "top_n_sigma": None, "temperature": 0.7, "dynatemp_range": 0.0,
        "dynatemp_exponent": 1.0, "adaptive_target": None, "adaptive_decay": 0.9,
        "repeat_last_n": 64, "repeat_penalty": 1.05, "frequency_penalty": 0.0,
        "presence_penalty": 0.0, "dry_multiplier": 0.0, "dry_base": 1.75,
        "dry_allowed_length": 2, "dry_penalty_last_n": 64,
        "dry_sequence_breakers": ("\n", ":", '"', "*"), "mirostat": 0, "mirostat_tau": 5.0,
        "mirostat_eta": 0.1, "min_keep": 0, "n_probs": 0, "logit_bias": (),
        "ignore_eos": False, "grammar_lazy": False, "preserved_tokens": (),
        "backend_sampling": True,
    },
    SchedulerPolicyConfig: {
        "mode": "balanced", "decode_token_reserve": 1, "enable_adaptive_prefill_chunking": False,
    },
    SchedulerRuntimeConfig: {
        "continuous_batching": True, "policy": SchedulerPolicyConfig(),
        "prefill_chunk_size": 0, "max_running_requests": AUTO, "max_queued_requests": 256,
        "deterministic": False,
    },
    CacheRuntimeConfig: {
        "mode": "live_slot_prefix", "retained_prefix_tokens": 100,
        "snapshot_interval_tokens": 128, "max_snapshot_entries": 32,
        "max_snapshot_bytes": 256 * MIB,
    },
    MultimodalRuntimeConfig: {
        "projector_path": None, "use_gpu": True, "image_min_tokens": AUTO,
        "image_max_tokens": AUTO,
    },
    ResidencyRuntimeConfig: {
        "max_gpu_models_per_device": 1, "allow_cpu_models_while_gpu_loaded": True,
        "require_gpu_lease": True, "gpu_memory_safety_margin_bytes": 512 * MIB,
    },
    ObservabilityRuntimeConfig: {"runtime_metrics": False, "backend_profiling": False},
    SpeculativeConfig: {
        "mode": "off", "max_draft_tokens": 8, "ngram_min": 2, "ngram_max": 4,
        "draft_model": None, "draft_context": ContextRuntimeConfig(),
    },
    NativeRuntimeConfig: {
        "placement": ModelPlacementConfig(), "context": ContextRuntimeConfig(),
        "sampling": SamplingRuntimeConfig(), "scheduler": SchedulerRuntimeConfig(),
        "cache": CacheRuntimeConfig(), "multimodal": MultimodalRuntimeConfig(),
        "residency": ResidencyRuntimeConfig(), "observability": ObservabilityRuntimeConfig(),
        "speculative": SpeculativeConfig(),
    },
}  # fmt: skip

CASES = [(cls, name) for cls, table in DEFAULTS.items() for name in table]


def _id(item: object) -> str:
    return getattr(item, "__name__", str(item))


def test_the_table_covers_every_declared_field() -> None:
    for cls, table in DEFAULTS.items():
        assert list(cls.settings()) == list(table), cls.__name__
        assert [f.name for f in dataclasses.fields(cls)] == list(table)


@pytest.mark.parametrize(("cls", "name"), CASES, ids=_id)
def test_every_field_is_declared_with_default_check_and_doc(cls: type[Group], name: str) -> None:
    declared = cls.setting(name)
    assert isinstance(declared, Setting)
    assert declared.default == DEFAULTS[cls][name]
    assert callable(declared.check)
    assert declared.doc.strip() and declared.doc.rstrip().endswith((".", ")"))
    assert name in typing.get_type_hints(cls)


@pytest.mark.parametrize(("cls", "name"), CASES, ids=_id)
def test_an_unset_field_reads_its_declared_default(cls: type[Group], name: str) -> None:
    declared = cls.setting(name)
    value = getattr(cls(), name)
    if declared.is_auto:
        assert value is None
    else:
        assert value == declared.default
    assert name not in cls().fields_set


@pytest.mark.parametrize(("cls", "name"), CASES, ids=_id)
def test_a_default_passes_its_own_check_unchanged(cls: type[Group], name: str) -> None:
    declared = cls.setting(name)
    if declared.stored_default is None:
        return
    checked = declared.check(declared.default, name)
    assert checked == declared.default


@pytest.mark.parametrize(("cls", "name"), CASES, ids=_id)
def test_every_setting_is_documented_in_the_runtime_guide(cls: type[Group], name: str) -> None:
    assert f"`{name}`" in DOCS.read_text(encoding="utf-8")


def test_auto_values_say_what_they_start_from() -> None:
    assert ContextRuntimeConfig.setting("n_ctx").fallback == 4096
    assert ContextRuntimeConfig.setting("n_batch").fallback == 2048
    assert ContextRuntimeConfig.setting("n_ubatch").fallback == 512
    assert repr(AUTO) == "AUTO"


def test_scheduler_defaults_are_the_declared_ones() -> None:
    scheduler = SchedulerConfig()
    assert scheduler.n_slots == ContextRuntimeConfig().n_parallel
    assert scheduler.n_ctx_per_slot == ContextRuntimeConfig.setting("n_ctx").fallback
    assert scheduler.token_budget == ContextRuntimeConfig.setting("n_batch").fallback
    cache = CacheRuntimeConfig()
    assert (scheduler.cache_mode, scheduler.retained_prefix_tokens) == (
        cache.mode, cache.retained_prefix_tokens)
    assert scheduler.max_snapshot_bytes == cache.max_snapshot_bytes == 256 * MIB
    assert scheduler.max_queued_requests == SchedulerRuntimeConfig().max_queued_requests
    assert scheduler.mode == SchedulerPolicyConfig().mode
    from_config = SchedulerConfig.from_runtime(
        NativeRuntimeConfig(), n_ctx_per_slot=scheduler.n_ctx_per_slot,
        token_budget=scheduler.token_budget,
    )
    assert from_config == scheduler


def test_given_defaults_are_kept_apart_from_unset_ones() -> None:
    explicit = SamplingRuntimeConfig(top_k=40)
    assert explicit.top_k == SamplingRuntimeConfig().top_k
    assert explicit != SamplingRuntimeConfig()
    assert explicit.to_dict() == {"top_k": 40}
    assert not explicit.is_empty()
    # an override that sets a default value still replaces the model's value
    model = SamplingRuntimeConfig(top_k=10, temperature=0.2)
    merged = model.with_override(explicit)
    assert (merged.top_k, merged.temperature) == (40, 0.2)
    assert merged.fields_set == {"top_k", "temperature"}


def test_replace_keeps_which_fields_were_given() -> None:
    context = ContextRuntimeConfig(n_ctx=2048)
    changed = dataclasses.replace(context, n_parallel=2)
    assert changed.fields_set == {"n_ctx", "n_parallel"}
    assert changed.to_dict() == {"n_ctx": 2048, "n_parallel": 2}
    with pytest.raises(ConfigurationError, match=r"^context\.n_parallel must be a positive"):
        dataclasses.replace(context, n_parallel=0)


def test_nested_groups_count_as_given_only_with_given_fields() -> None:
    assert NativeRuntimeConfig(context=ContextRuntimeConfig()) == NativeRuntimeConfig()
    config = NativeRuntimeConfig(scheduler={"policy": {"mode": "latency_first"}})
    assert config.fields_set == {"scheduler"}
    assert config.scheduler.fields_set == {"policy"}
    assert config.to_dict() == {"scheduler": {"policy": {"mode": "latency_first"}}}


def test_configs_pickle_with_what_was_given() -> None:
    import pickle

    config = NativeRuntimeConfig(sampling={"top_k": 40, "logit_bias": {3: -math.inf}})
    copy = pickle.loads(pickle.dumps(config))
    assert copy == config and copy.sampling.fields_set == {"top_k", "logit_bias"}
    assert copy.sampling.samplers == DEFAULT_SAMPLERS
