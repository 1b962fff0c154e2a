"""The value sets of config settings (``Literal`` types) and the module-wide constants."""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "DEFAULT_CONTEXT_KEY",
    "DEFAULT_MAX_QUEUED_REQUESTS",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_SAMPLERS",
    "MAX_PARALLEL_SEQUENCES",
    "MIB",
    "CacheMode",
    "FlashAttention",
    "GpuLayers",
    "KvCacheType",
    "PoolingType",
    "RopeScaling",
    "SamplerStage",
    "SchedulerMode",
    "SplitMode",
]

DEFAULT_CONTEXT_KEY: Final = "default"
"""The ``context_key`` of text requests that do not set one (so, in ``context_key`` cache
mode, requests without a key reuse each other's KV under this key)."""
DEFAULT_MAX_TOKENS: Final = 64
"""Generated-token limit of text requests that do not set ``max_tokens``."""
DEFAULT_MAX_QUEUED_REQUESTS: Final = 256
"""Queue bound per loaded model when ``scheduler.max_queued_requests`` is not set."""

MIB: Final = 1024 * 1024
MAX_PARALLEL_SEQUENCES: Final = 256  # libllama's llama_max_parallel_sequences()

GpuLayers = Literal["auto", "all"] | int
"""Layers offloaded to GPUs: ``"auto"``, ``"all"`` or a count (``{"count": n}`` accepted)."""
SplitMode = Literal["none", "layer", "row", "tensor"]
FlashAttention = Literal["auto", "enabled", "disabled"]
KvCacheType = Literal["f16", "f32", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
RopeScaling = Literal["none", "linear", "yarn"]
PoolingType = Literal["unspecified", "none", "mean", "cls", "last", "rank"]
SamplerStage = Literal[
    "dry",
    "top_k",
    "typical_p",
    "top_p",
    "top_n_sigma",
    "min_p",
    "xtc",
    "temperature",
    "infill",
    "penalties",
    "adaptive_p",
]
SchedulerMode = Literal["latency_first", "balanced", "throughput_first"]
CacheMode = Literal[
    "disabled",
    "live_slot_prefix",
    "state_snapshot",
    "live_slot_and_snapshot",
    "off",
    "context_key",
]
"""KV reuse between requests (``off`` is an alias of ``disabled``).

- ``disabled`` / ``off``: no reuse; every request prefills its whole prompt.
- ``context_key``: a finished request's KV stays in its slot for its ``context_key``; the
  next request with the same key reuses the longest common prefix. No sharing across keys.
- ``live_slot_prefix`` (default): as ``context_key``, and a request may also copy the longest
  common prefix held by any live slot, whatever its key.
- ``state_snapshot``: no live reuse; prefix KV states are saved to host memory every
  ``snapshot_interval_tokens`` and restored for a matching prompt (bounded by
  ``max_snapshot_entries`` and ``max_snapshot_bytes``).
- ``live_slot_and_snapshot``: both live-slot reuse and snapshots.
"""
DEFAULT_SAMPLERS: Final[tuple[SamplerStage, ...]] = ("top_k", "penalties", "top_p", "temperature")
"""Sampler stages applied, in order, when ``sampling.samplers`` is not set."""
