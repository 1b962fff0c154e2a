"""Scheduler configuration: the numbers the engine hands to the scheduler (defaults are the
runtime config's, read from its declaration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

from sipp.config import (
    CacheRuntimeConfig,
    ContextRuntimeConfig,
    NativeRuntimeConfig,
    SchedulerMode,
    SchedulerPolicyConfig,
    SchedulerRuntimeConfig,
)
from sipp.errors import ConfigurationError

__all__ = ["CACHE_MODES", "CacheMode", "SchedulerConfig", "SchedulerMode"]

CacheMode = Literal[
    "disabled", "context_key", "live_slot_prefix", "state_snapshot", "live_slot_and_snapshot"
]
CACHE_MODES: Final = get_args(CacheMode)
_LIVE_MODES: Final = frozenset({"context_key", "live_slot_prefix", "live_slot_and_snapshot"})
_SHARED_MODES: Final = frozenset({"live_slot_prefix", "live_slot_and_snapshot"})
_SNAPSHOT_MODES: Final = frozenset({"state_snapshot", "live_slot_and_snapshot"})
# The defaults below are the runtime config's, read from its one declaration.
_CONTEXT: Final = ContextRuntimeConfig()
_SCHEDULER: Final = SchedulerRuntimeConfig()
_POLICY: Final = SchedulerPolicyConfig()
_CACHE: Final = CacheRuntimeConfig()


@dataclass(frozen=True, kw_only=True)
class SchedulerConfig:
    """Limits and policies of one model's scheduler (built by the engine from the
    ``NativeRuntimeConfig``). Invalid values raise :class:`ConfigurationError` naming the
    field; ``cache_mode="off"`` is accepted as an alias of ``"disabled"``.

    - ``n_slots``: parallel sequences (llama ``n_seq_max``); slot ids are ``0..n_slots-1``.
    - ``n_ctx_per_slot``: KV cells one sequence may use. A prompt must leave at least one
      free cell; a generation that outgrows the window shifts its context (below). Requests
      with media spans cannot shift, so their ``prompt + max_tokens`` must fit.
    - ``token_budget``: tokens per ``llama_decode`` (``n_batch``).
    - ``prefill_chunk_size``: prompt tokens per request per step (0 = only the budget caps).
    - ``max_running_requests`` (None = ``n_slots``), ``max_queued_requests`` (bounded queue).
    - ``mode`` and ``decode_token_reserve``: see :func:`sipp.scheduler.split_budget`.
    - ``cache_mode``, ``retained_prefix_tokens`` and the snapshot limits.
      ``retained_prefix_tokens`` is ``n_keep`` of a context shift, applied in the live modes
      only (``shift_keep_tokens``; 0 otherwise, as in the original runtime): when the
      pending token would not fit, the first ``n_keep`` tokens stay, half of the rest
      (``(n_past - n_keep) // 2``, the oldest) is dropped and the tail is re-prefilled at
      its new positions. Nothing to drop (``n_keep >= n_past - 1``) clears the sequence
      down to the pending token.
    - ``continuous_batching``: True (default) admits waiting requests whenever a slot is
      free, joining the running ones; False admits only while nothing runs, so requests
      start together in one batch and run to completion before the next batch starts.
    - ``adaptive_prefill_chunking``: chunks follow decode pressure: while no request is
      decoding, prompts prefill with the whole budget (``prefill_chunk_size`` is not
      applied); while some are, one step's prefill tokens are capped at
      ``prefill_chunk_size`` (or, when that is 0, ``max(16, token_budget // 8)``) in all,
      shared fairly among the prefilling requests.
    - ``cross_slot_copy``: False when sequences live in separate KV streams
      (``kv_unified=False``): libllama copies only whole streams there (a partial
      ``seq_cp`` aborts the process), so live prefix reuse then only takes over idle
      slots and never copies a prefix out of a busy one.
    - ``partial_kv_edits``: False for memories that cannot remove or copy part of a
      sequence (recurrent / hybrid models): reuse then needs a cached sequence that is a
      whole prefix of the prompt, so no ``KvRemove`` trim or partial ``KvCopy`` is emitted.
    """

    n_slots: int = _CONTEXT.n_parallel
    n_ctx_per_slot: int = ContextRuntimeConfig.setting("n_ctx").fallback
    token_budget: int = ContextRuntimeConfig.setting("n_batch").fallback
    prefill_chunk_size: int = _SCHEDULER.prefill_chunk_size
    max_running_requests: int | None = _SCHEDULER.max_running_requests
    max_queued_requests: int = _SCHEDULER.max_queued_requests
    mode: SchedulerMode = _POLICY.mode
    decode_token_reserve: int = _POLICY.decode_token_reserve
    cache_mode: CacheMode = _CACHE.mode  # type: ignore[assignment]  # never "off" here
    retained_prefix_tokens: int = _CACHE.retained_prefix_tokens
    max_snapshot_entries: int = _CACHE.max_snapshot_entries
    max_snapshot_bytes: int = _CACHE.max_snapshot_bytes
    snapshot_interval_tokens: int = _CACHE.snapshot_interval_tokens
    partial_kv_edits: bool = True
    cross_slot_copy: bool = True
    continuous_batching: bool = _SCHEDULER.continuous_batching
    adaptive_prefill_chunking: bool = _POLICY.enable_adaptive_prefill_chunking

    def __post_init__(self) -> None:
        if self.cache_mode == "off":  # type: ignore[comparison-overlap]
            object.__setattr__(self, "cache_mode", "disabled")
        minimums = {
            "n_slots": 1,
            "n_ctx_per_slot": 1,
            "token_budget": 1,
            "prefill_chunk_size": 0,
            "max_queued_requests": 1,
            "decode_token_reserve": 0,
            "retained_prefix_tokens": 0,
            "max_snapshot_entries": 1,
            "max_snapshot_bytes": 1,
            "snapshot_interval_tokens": 1,
        }
        for name, low in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(
                    f"scheduler config {name} must be an integer >= {low}, got {value!r}"
                )
        running = self.max_running_requests
        if running is not None and (
            isinstance(running, bool) or not isinstance(running, int) or running < 1
        ):
            raise ConfigurationError(
                f"scheduler config max_running_requests must be an integer >= 1 or None, "
                f"got {running!r}"
            )
        choices: dict[str, tuple[str, ...]] = {
            "mode": get_args(SchedulerMode),
            "cache_mode": CACHE_MODES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigurationError(
                    f"scheduler config {name} must be one of: {', '.join(allowed)}; "
                    f"got {getattr(self, name)!r}"
                )

    @classmethod
    def from_runtime(
        cls,
        config: NativeRuntimeConfig,
        *,
        n_ctx_per_slot: int,
        token_budget: int,
        cache_mode: CacheMode | None = None,
        cross_slot_copy: bool = True,
        partial_kv_edits: bool = True,
    ) -> SchedulerConfig:
        """The scheduler of a model loaded with ``config``, given what the engine decided
        at load: the per-slot window, the step budget (``n_batch``), the cache mode in effect
        (``disabled`` for a model that cannot reuse KV; None: ``cache.mode``) and what its KV
        memory allows (see ``cross_slot_copy`` / ``partial_kv_edits``)."""
        sched, policy, cache = config.scheduler, config.scheduler.policy, config.cache
        return cls(
            n_slots=config.context.n_parallel,
            n_ctx_per_slot=n_ctx_per_slot,
            token_budget=token_budget,
            prefill_chunk_size=sched.prefill_chunk_size,
            max_running_requests=sched.max_running_requests,
            max_queued_requests=sched.max_queued_requests,
            mode=policy.mode,
            decode_token_reserve=policy.decode_token_reserve,
            continuous_batching=sched.continuous_batching,
            adaptive_prefill_chunking=policy.enable_adaptive_prefill_chunking,
            cache_mode=cache.mode if cache_mode is None else cache_mode,  # type: ignore[arg-type]
            retained_prefix_tokens=cache.retained_prefix_tokens,
            max_snapshot_entries=cache.max_snapshot_entries,
            max_snapshot_bytes=cache.max_snapshot_bytes,
            snapshot_interval_tokens=cache.snapshot_interval_tokens,
            cross_slot_copy=cross_slot_copy,
            partial_kv_edits=partial_kv_edits,
        )

    @property
    def running_limit(self) -> int:
        """How many requests may hold a slot at once."""
        limit = self.max_running_requests
        return self.n_slots if limit is None else min(limit, self.n_slots)

    @property
    def live_reuse(self) -> bool:
        """Whether finished requests leave their KV in their slot for reuse."""
        return self.cache_mode in _LIVE_MODES

    @property
    def shares_across_keys(self) -> bool:
        """Whether a request may reuse a prefix held by a slot of another context_key."""
        return self.cache_mode in _SHARED_MODES

    @property
    def shift_keep_tokens(self) -> int:
        """Tokens a context shift keeps at the start of a sequence (``n_keep``)."""
        return self.retained_prefix_tokens if self.live_reuse else 0

    @property
    def snapshots(self) -> bool:
        """Whether prefix states are saved to and restored from host memory."""
        return self.cache_mode in _SNAPSHOT_MODES
