"""Request scheduling (``scheduler``, ``scheduler.policy``) and KV reuse (``cache``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, get_args

from sipp.config._enums import (
    DEFAULT_MAX_QUEUED_REQUESTS,
    MAX_PARALLEL_SEQUENCES,
    MIB,
    CacheMode,
    SchedulerMode,
)
from sipp.config._group import Group, auto, group, setting
from sipp.config._rules import INT64_MAX, as_bool, as_choice, as_int

__all__ = ["CacheRuntimeConfig", "SchedulerPolicyConfig", "SchedulerRuntimeConfig"]


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class SchedulerPolicyConfig(Group):
    """How each step's token budget (``n_batch``) is split between prefill and decode.

    Queued requests are admitted in arrival order.
    """

    _PATH: ClassVar[str] = "scheduler.policy"

    mode: SchedulerMode = setting(
        "balanced",
        as_choice(get_args(SchedulerMode)),
        "While prompts prefill: latency_first runs every decode token, balanced also keeps "
        "at least one prefill token per step, throughput_first gives prefill up to 3/4 of "
        "the budget.",
    )
    decode_token_reserve: int = setting(
        1,
        as_int(0),
        "throughput_first only: the fewest decode tokens a step keeps while prompts prefill.",
    )
    enable_adaptive_prefill_chunking: bool = setting(
        False,
        as_bool,
        "Chunks follow decode pressure: with nothing decoding a prompt prefills with the "
        "whole budget; while requests decode one step's prefill is capped at "
        "prefill_chunk_size (max(16, n_batch // 8) when 0) in all, shared fairly.",
    )


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class SchedulerRuntimeConfig(Group):
    """Request scheduling: continuous batching, prefill chunks and the queue limits."""

    _PATH: ClassVar[str] = "scheduler"

    continuous_batching: bool = setting(
        True,
        as_bool,
        "Admit a waiting request as soon as a slot is free, beside the running ones; False "
        "admits only while nothing runs, so waiting requests start together.",
    )
    policy: SchedulerPolicyConfig = group(SchedulerPolicyConfig, "The step budget policy.")
    prefill_chunk_size: int = setting(
        0, as_int(0), "Prompt tokens per request per step; 0: no cap."
    )
    max_running_requests: int | None = auto(
        as_int(1, MAX_PARALLEL_SEQUENCES),
        "Requests holding a slot at once, at most context.n_parallel (unset: n_parallel).",
    )
    max_queued_requests: int = setting(
        DEFAULT_MAX_QUEUED_REQUESTS,
        as_int(1),
        "Bound of the waiting queue; a request beyond it fails with QueueFullError.",
    )
    deterministic: bool = setting(
        False,
        as_bool,
        "A request's tokens do not depend on what runs beside it: per-sequence KV streams, "
        "no weight repacking, no flash attention and the CPU backend's batch-invariant "
        "kernels (one kernel per matrix type whatever the number of tokens in a step).",
    )

    if TYPE_CHECKING:  # the generated __init__ also takes a dict for ``policy``

        def __init__(
            self,
            *,
            continuous_batching: bool | None = None,
            policy: SchedulerPolicyConfig | Mapping[str, Any] | None = None,
            prefill_chunk_size: int | None = None,
            max_running_requests: int | None = None,
            max_queued_requests: int | None = None,
            deterministic: bool | None = None,
        ) -> None: ...


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class CacheRuntimeConfig(Group):
    """KV reuse between requests (see :data:`CacheMode`) and context shift.

    Context shift: when a generation's next token would not fit the per-slot context, the
    first ``retained_prefix_tokens`` tokens stay, the older half of the rest is discarded
    and the tail is computed again at its new positions. Output, usage and stop strings are
    unaffected; ``local_stats["context_shifts"]`` counts shifts. Only a prompt that leaves
    no room to generate (or, with images, which never shift, prompt + ``max_tokens``) is
    refused.
    """

    _PATH: ClassVar[str] = "cache"

    mode: CacheMode = setting(
        "live_slot_prefix",
        as_choice(get_args(CacheMode)),
        "KV reuse between requests: disabled (alias off), context_key, live_slot_prefix, "
        "state_snapshot, live_slot_and_snapshot.",
    )
    retained_prefix_tokens: int = setting(
        100,
        as_int(0),
        "Tokens a context shift keeps at the start (live modes only; the other modes keep "
        "0, as the original runtime did).",
    )
    snapshot_interval_tokens: int = setting(
        128, as_int(1), "Snapshot modes: a prefix state is saved every this many tokens."
    )
    max_snapshot_entries: int = setting(32, as_int(1), "Snapshot modes: states kept at most.")
    max_snapshot_bytes: int = setting(
        256 * MIB, as_int(1, INT64_MAX), "Snapshot modes: host memory the states use at most."
    )
