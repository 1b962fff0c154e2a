"""Pricing draft positions: measured step costs and which drafts pay."""

from __future__ import annotations

import pytest

from sipp.scheduler import Request, Scheduler, SchedulerConfig
from sipp.scheduler._step_cost import StepCost, best_draft_count
from sipp.scheduler._step_shapes import paying_shares
from tests.scheduler.test_scheduler_speculative import FixedDrafter, decoding


def measured(curve: dict[int, float]) -> StepCost:
    cost = StepCost()
    for n, seconds in curve.items():
        cost.observe(n, seconds)
    return cost


def test_costs_are_interpolated_between_measured_sizes_and_only_a_little_beyond() -> None:
    cost = measured({1: 0.030, 8: 0.058, 16: 0.100})
    assert cost.seconds(8) == pytest.approx(0.058)
    assert cost.seconds(4) == pytest.approx(0.030 + 3 * 0.004)
    assert cost.seconds(12) == pytest.approx(0.079)
    assert cost.seconds(20) == pytest.approx(0.100 + 4 * (0.042 / 8))  # the last slope
    assert cost.limit() == 20 and cost.seconds(21) is None  # unmeasured territory


def test_nothing_is_estimated_from_a_single_size_and_noise_is_averaged() -> None:
    cost = StepCost()
    for _ in range(20):
        cost.observe(8, 0.07)
    assert not cost.known and cost.seconds(8) is None
    cost.observe(0, 1.0)  # nothing decoded: ignored
    cost.observe(9, 0.5)  # one slow step (a busy neighbour)...
    for _ in range(20):
        cost.observe(9, 0.075)  # ...fades as the size is measured again
    assert cost.known and cost.seconds(9) == pytest.approx(0.075, rel=0.02)


def test_the_draft_count_maximizes_expected_tokens_per_second() -> None:
    # one sequence, memory-bound: eight positions cost little more than one
    single = measured({1: 0.030, 9: 0.040})
    assert best_draft_count([0.9 ** j for j in range(1, 9)], 1, 1.0, single) == 8
    assert best_draft_count([0.02] * 8, 1, 1.0, single) == 0  # drafts that fail do not pay
    # eight sequences on a CPU: a position costs nearly what a decode does
    busy = measured({8: 0.058, 16: 0.100, 24: 0.135, 32: 0.170})
    gains = sorted([0.9 ** j for j in range(1, 7)] * 8, reverse=True)
    assert 8 <= best_draft_count(gains, 8, 8.0, busy) <= 24
    assert best_draft_count([0.3] * 40, 8, 8.0, busy) == 0


def test_positions_go_to_the_likeliest_requests_first() -> None:
    busy = measured({8: 0.058, 16: 0.100, 24: 0.135, 32: 0.170})
    shares = paying_shares([0.95, 0.95, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], [8] * 8, 64, 8, 8.0,
                           busy)
    assert shares[2:] == [0] * 6 and shares[0] >= 1 and abs(shares[0] - shares[1]) <= 1
    assert sum(paying_shares([0.95] * 8, [8] * 8, 3, 8, 8.0, busy)) <= 3  # the spare budget
    assert paying_shares([0.0, 0.9], [8, 0], 64, 2, 2.0, busy) == [0, 0]


def test_a_full_batch_drafts_once_measured_steps_show_it_pays() -> None:
    scheduler: Scheduler[None] = Scheduler(SchedulerConfig(n_slots=3, token_budget=64))
    scheduler.drafter = FixedDrafter()
    requests = [Request(i, [1, 2], max_tokens=50, max_draft_tokens=4) for i in (1, 2, 3)]
    decoding(scheduler, *requests)
    out = scheduler.schedule()
    assert all(c.n_draft == 0 for c in out.chunks)  # every slot runs, nothing measured yet
    scheduler.update_from_output({r.request_id: 5 for r in requests}, {})
    # memory-bound steps: a token more costs almost nothing
    for n in (3, 6, 9, 12, 15):
        scheduler.step_cost.observe(n, 0.030 + 0.0001 * n)
    out = scheduler.schedule()
    assert [c.n_draft for c in out.chunks] == [4, 4, 4]
    scheduler.update_from_output({r.request_id: 6 for r in requests}, {},
                                 {r.request_id: 0 for r in requests})
    # compute-bound steps and drafts that were all rejected: none pays any more
    scheduler.step_cost = StepCost()
    for n in (3, 6, 9, 12, 15):
        scheduler.step_cost.observe(n, 0.001 + 0.008 * n)
    out = scheduler.schedule()
    assert all(c.n_draft == 0 for c in out.chunks)
