"""Pricing draft positions: the step cost fit and which drafts pay."""

from __future__ import annotations

import pytest

from sipp.scheduler import Request, Scheduler, SchedulerConfig
from sipp.scheduler._step_cost import StepCost, draft_gain_pays
from sipp.scheduler._step_shapes import paying_shares
from tests.scheduler.test_scheduler_speculative import FixedDrafter, decoding


def test_the_fit_recovers_fixed_and_per_token_seconds() -> None:
    cost = StepCost()
    for _ in range(3):
        for n in (1, 4, 8, 16):
            cost.observe(n, 0.030 + 0.004 * n)
    fit = cost.fit()
    assert fit is not None
    assert fit[0] == pytest.approx(0.030) and fit[1] == pytest.approx(0.004)


def test_no_fit_until_steps_of_different_sizes_were_seen() -> None:
    cost = StepCost()
    for _ in range(20):
        cost.observe(8, 0.07)
    assert cost.fit() is None  # fixed and per-token cost cannot be told apart
    cost.observe(0, 1.0)  # nothing decoded: ignored
    assert cost.fit() is None


def test_noise_never_makes_a_draft_free_nor_dearer_than_a_decode() -> None:
    falling = StepCost()
    for n in (1, 2, 4, 8) * 2:  # bigger steps measured faster (a busy neighbour at the start)
        falling.observe(n, 0.1 / n)
    fit = falling.fit()
    assert fit is not None and fit[1] > 0
    rising = StepCost()
    for n, seconds in ((1, 1e-9), (8, 1.0)) * 3:  # all the time in the big steps
        rising.observe(n, seconds)
    fit = rising.fit()
    assert fit is not None
    assert fit[0] >= 0 and fit[1] < 1 / 7  # held to the mean per token, under the slope


def test_a_draft_pays_when_its_acceptance_beats_its_share_of_the_step() -> None:
    memory_bound = (0.030, 0.001)  # one sequence: a position costs 3 % of the step
    assert draft_gain_pays(0.1, 1.0, 1, memory_bound)
    compute_bound = (0.010, 0.008)  # eight sequences on a CPU
    assert not draft_gain_pays(0.5, 8.0, 8, compute_bound)
    assert draft_gain_pays(0.95, 8.0, 8, compute_bound)


def test_positions_go_to_the_likeliest_and_stop_when_they_no_longer_pay() -> None:
    fit = (0.030, 0.004)
    # one sequence copying its prompt: most of eight drafts pay
    assert paying_shares([0.9], [8], 64, 1, 1.0, fit) == [8]
    # eight sequences: only the well-accepted ones draft, and not deep
    shares = paying_shares([0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], [8] * 8, 64, 8, 8.0, fit)
    assert shares[2:] == [0] * 6 and 1 <= shares[0] < 8 and shares[0] == shares[1]
    assert paying_shares([0.9] * 8, [8] * 8, 3, 8, 8.0, fit) == [1, 1, 1, 0, 0, 0, 0, 0]
    assert paying_shares([0.0, 0.9], [8, 0], 64, 2, 2.0, fit) == [0, 0]


def test_a_full_batch_drafts_once_step_costs_show_it_pays() -> None:
    scheduler: Scheduler[None] = Scheduler(SchedulerConfig(n_slots=3, token_budget=64))
    drafter = FixedDrafter()
    scheduler.drafter = drafter
    requests = [Request(i, [1, 2], max_tokens=50, max_draft_tokens=4) for i in (1, 2, 3)]
    decoding(scheduler, *requests)
    out = scheduler.schedule()
    assert all(c.n_draft == 0 for c in out.chunks)  # every slot runs, nothing measured yet
    scheduler.update_from_output({r.request_id: 5 for r in requests}, {})
    # memory-bound steps: a token more costs almost nothing
    for n in (3, 6, 9, 12) * 2:
        scheduler.step_cost.observe(n, 0.030 + 0.0001 * n)
    out = scheduler.schedule()
    assert [c.n_draft for c in out.chunks] == [4, 4, 4]
    scheduler.update_from_output({r.request_id: 6 for r in requests}, {},
                                 {r.request_id: 0 for r in requests})
    # compute-bound steps and drafts that were all rejected: none pays any more
    scheduler.step_cost = type(scheduler.step_cost)()
    for n in (3, 6, 9, 12) * 2:
        scheduler.step_cost.observe(n, 0.001 + 0.008 * n)
    out = scheduler.schedule()
    assert all(c.n_draft == 0 for c in out.chunks)
