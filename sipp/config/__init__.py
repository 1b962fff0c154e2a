"""Native runtime configuration for local endpoints: ``NativeRuntimeConfig`` and its groups.

Every group is a frozen, keyword-only dataclass whose settings are each declared once, in
the group's module, with their type, default (or :data:`AUTO` for a model-dependent value,
stored as ``None`` and decided at load), check and doc (``Group.settings()`` lists them).
Reading a field gives the value in effect: ``NativeRuntimeConfig().context.n_parallel`` is
1. Values are checked when the object is built; a bad value raises
:class:`~sipp.errors.ConfigurationError` naming the full field path, e.g.
``"context.n_ctx must be a positive integer, got -5"``. Lists are stored as tuples, so
configs are immutable and hashable.

Plain dicts are accepted wherever a group is expected (``context={"n_ctx": 2048}``) and
:meth:`NativeRuntimeConfig.from_dict` reads the snake_case nested table used by the gateway
TOML ``runtime`` key; unknown keys are rejected with their path. :meth:`to_dict` writes the
same shape back (only the fields that were given); ``None`` for a field means "not given".

Annotations describe the stored value. At run time a few convenient inputs are also
accepted and normalized: a dict for any group, ``{"count": n}`` for ``gpu_layers``, a
``{token_id: bias}`` dict for ``logit_bias``, a path object for ``projector_path``, and
lists wherever a tuple is stored.
"""

from sipp.config._context import ContextRuntimeConfig
from sipp.config._enums import (
    DEFAULT_CONTEXT_KEY,
    DEFAULT_MAX_QUEUED_REQUESTS,
    DEFAULT_MAX_TOKENS,
    DEFAULT_SAMPLERS,
    CacheMode,
    FlashAttention,
    GpuLayers,
    KvCacheType,
    PoolingType,
    RopeScaling,
    SamplerStage,
    SchedulerMode,
    SplitMode,
)
from sipp.config._group import AUTO, Group, Setting
from sipp.config._placement import ModelPlacementConfig, ResidencyRuntimeConfig
from sipp.config._runtime import (
    MultimodalRuntimeConfig,
    NativeRuntimeConfig,
    ObservabilityRuntimeConfig,
)
from sipp.config._sampling import SamplingRuntimeConfig, SamplingRuntimeOverride
from sipp.config._scheduling import (
    CacheRuntimeConfig,
    SchedulerPolicyConfig,
    SchedulerRuntimeConfig,
)
from sipp.config._speculative import SpeculativeConfig, SpeculativeMode

__all__ = [
    "AUTO",
    "DEFAULT_CONTEXT_KEY",
    "DEFAULT_MAX_QUEUED_REQUESTS",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_SAMPLERS",
    "CacheMode",
    "CacheRuntimeConfig",
    "ContextRuntimeConfig",
    "FlashAttention",
    "GpuLayers",
    "Group",
    "KvCacheType",
    "ModelPlacementConfig",
    "MultimodalRuntimeConfig",
    "NativeRuntimeConfig",
    "ObservabilityRuntimeConfig",
    "PoolingType",
    "ResidencyRuntimeConfig",
    "RopeScaling",
    "SamplerStage",
    "SamplingRuntimeConfig",
    "SamplingRuntimeOverride",
    "SchedulerMode",
    "SchedulerPolicyConfig",
    "SchedulerRuntimeConfig",
    "Setting",
    "SpeculativeConfig",
    "SpeculativeMode",
    "SplitMode",
]
