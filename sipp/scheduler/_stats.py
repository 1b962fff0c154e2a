"""Scheduler counters (read by the engine's stats snapshot and metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SchedulerStats"]


@dataclass
class SchedulerStats:
    """Counters since creation (``last_*`` describe the latest planned step)."""

    steps: int = 0
    scheduled_tokens: int = 0
    decode_tokens: int = 0
    prefill_tokens: int = 0
    last_batch_tokens: int = 0
    last_batch_requests: int = 0
    admitted: int = 0
    finished: int = 0
    cancelled: int = 0
    failed: int = 0
    preemptions: int = 0
    context_shifts: int = 0
    discarded_tokens: int = 0
    kv_full_events: int = 0
    idle_evictions: int = 0
    cache_hits: int = 0
    reused_tokens: int = 0
    snapshot_hits: int = 0
    snapshot_saves: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """A plain copy for reporting."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in vars(self).items()}
