"""Draft positions in the scheduler: who gets them, how many, and the KV bookkeeping of
accepted and rejected drafts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sipp.scheduler import KvRemove, Request, Scheduler, SchedulerConfig


class FixedDrafter:
    """Proposes ``100, 101, ...`` and records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int]] = []

    def __call__(self, requests: Sequence[Request[None]],
                 limits: Sequence[int]) -> list[npt.NDArray[np.int32]]:
        self.asked.extend((r.request_id, k) for r, k in zip(requests, limits, strict=True))
        return [np.arange(100, 100 + k, dtype=np.int32) for k in limits]


def decoding(scheduler: Scheduler[None], *requests: Request[None]) -> None:
    """Admit and prefill ``requests`` so that each has one pending token."""
    for request in requests:
        scheduler.add(request)
    out = scheduler.schedule()
    assert all(c.n_draft == 0 for c in out.chunks)
    scheduler.update_from_output({c.request.request_id: 7 for c in out.chunks}, {})


def test_decodes_get_drafts_from_the_spare_budget_and_keep_accepted_ones() -> None:
    scheduler: Scheduler[None] = Scheduler(SchedulerConfig(n_slots=3, token_budget=64))
    drafter = FixedDrafter()
    scheduler.drafter = drafter
    fast = Request(1, [1, 2, 3], max_tokens=50, max_draft_tokens=4)
    plain = Request(2, [4, 5, 6], max_tokens=50)
    decoding(scheduler, fast, plain)
    out = scheduler.schedule()
    chunk = next(c for c in out.chunks if c.request is fast)
    assert chunk.n_draft == 4 and chunk.tokens.tolist() == [7, 100, 101, 102, 103]
    assert next(c for c in out.chunks if c.request is plain).n_draft == 0
    assert drafter.asked == [(1, 4)]
    # two drafts kept, then the model's own token: the other two positions leave the KV
    done = scheduler.update_from_output({1: 55, 2: 8}, {}, {1: 2})
    assert not done
    assert fast.output_tokens == [7, 100, 101, 55]
    assert fast.num_computed_tokens == 3 + 3 and fast.num_pending_tokens == 1
    out = scheduler.schedule()
    assert KvRemove(fast.slot or 0, 6, -1) in out.kv_ops
    assert scheduler.stats.draft_tokens == 4 + out.chunks[0].n_draft
    assert scheduler.stats.accepted_tokens == 2


def test_no_drafts_while_a_prompt_prefills_or_past_max_tokens() -> None:
    scheduler: Scheduler[None] = Scheduler(SchedulerConfig(n_slots=3, token_budget=64))
    scheduler.drafter = FixedDrafter()
    fast = Request(1, [1, 2, 3], max_tokens=4, max_draft_tokens=8)
    decoding(scheduler, fast)
    scheduler.add(Request(2, list(range(1, 30)), max_tokens=5))
    out = scheduler.schedule()
    assert [c.n_draft for c in out.chunks if c.request is fast] == [0]  # prefill shares
    scheduler.update_from_output({1: 9, 2: 9}, {})
    out = scheduler.schedule()
    # two tokens out of four generated: one draft at most, so max_tokens holds
    assert [c.n_draft for c in out.chunks if c.request is fast] == [1]
    done = scheduler.update_from_output({1: 11, 2: 9}, {}, {1: 1})
    assert fast in done and fast.output_tokens == [7, 9, 100, 11]


def test_a_busy_batch_gets_no_drafts_and_failing_drafts_shrink() -> None:
    for slots, budget in ((4, 3), (3, 64)):
        scheduler: Scheduler[None] = Scheduler(SchedulerConfig(n_slots=slots,
                                                               token_budget=budget))
        scheduler.drafter = FixedDrafter()
        requests = [Request(i, [1, 2], max_tokens=50, max_draft_tokens=8) for i in (1, 2, 3)]
        decoding(scheduler, *requests)
        out = scheduler.schedule()
        # the budget is full of decodes, or every slot runs: no drafts
        assert all(c.n_draft == 0 for c in out.chunks)
        scheduler.update_from_output({r.request_id: 5 for r in requests}, {})
    wide: Scheduler[None] = Scheduler(SchedulerConfig(n_slots=1, token_budget=64))
    wide.drafter = FixedDrafter()
    one = Request(1, [1, 2], max_tokens=60, max_draft_tokens=8)
    decoding(wide, one)
    sizes = []
    for _ in range(4):
        out = wide.schedule()
        sizes.append(out.chunks[0].n_draft)
        wide.update_from_output({1: 3}, {}, {1: 0})  # every draft rejected
    assert sizes == [8, 4, 2, 1]
