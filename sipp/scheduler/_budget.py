"""How one step's token budget is shared between decode tokens and prefill chunks."""

from __future__ import annotations

from collections.abc import Sequence

from sipp.scheduler._config import SchedulerMode

__all__ = ["fair_shares", "split_budget"]


def split_budget(
    budget: int, n_decodes: int, prefill_pending: bool, mode: SchedulerMode, reserve: int
) -> int:
    """Decode tokens this step (the rest of ``budget`` goes to prefill).

    Without pending prefill every decode runs (up to the budget). With prefill pending:
    ``latency_first`` still runs every decode; ``balanced`` runs every decode but keeps at
    least one prefill token; ``throughput_first`` gives prefill up to 3/4 of the budget and
    decodes the rest, never fewer than ``reserve`` (nor than one).
    """
    if n_decodes == 0:
        return 0
    if not prefill_pending or mode == "latency_first":
        return min(n_decodes, budget)
    if mode == "balanced":
        return min(n_decodes, max(budget - 1, 1))
    floor = (3 * budget) // 4
    return min(n_decodes, budget, max(budget - floor, reserve, 1))


def fair_shares(budget: int, caps: Sequence[int]) -> list[int]:
    """Split ``budget`` as evenly as possible with ``shares[i] <= caps[i]`` (water-filling).

    Earlier entries receive the odd tokens, so callers rotate the order between steps.
    """
    shares = [0] * len(caps)
    remaining = budget
    open_idx = [i for i, cap in enumerate(caps) if cap > 0]
    while remaining > 0 and open_idx:
        share = max(1, remaining // len(open_idx))
        still_open: list[int] = []
        for i in open_idx:
            if remaining == 0:
                still_open.append(i)
                continue
            give = min(share, caps[i] - shares[i], remaining)
            shares[i] += give
            remaining -= give
            if shares[i] < caps[i]:
                still_open.append(i)
        open_idx = still_open
    return shares
