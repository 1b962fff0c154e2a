"""Step planning: chunked prefill, the token budget, decodes every step, fairness."""

from __future__ import annotations

from sipp.scheduler import Request, Scheduler, SchedulerConfig, fair_shares, split_budget
from tests.scheduler.sched_sim import FakeEngine


def prompt(n: int, base: int = 1) -> list[int]:
    return [base + i % 97 for i in range(n)]


def sizes(sched: Scheduler, out_chunks: list[object]) -> dict[int, int]:
    return {c.request.request_id: c.n_tokens for c in out_chunks}  # type: ignore[attr-defined]


def test_chunked_prefill_respects_chunk_size_and_samples_only_at_the_end() -> None:
    sched = Scheduler(SchedulerConfig(token_budget=64, prefill_chunk_size=16))
    sched.add(Request(1, prompt(40), max_tokens=2))
    eng = FakeEngine(sched)
    eng.run()
    chunks = [c for b in eng.batches for c in b.chunks]
    assert [c.n_tokens for c in chunks] == [16, 16, 8, 1]
    assert [c.start_pos for c in chunks] == [0, 16, 32, 40]
    assert [c.sample for c in chunks] == [False, False, True, True]


def test_whole_prompt_in_one_step_when_chunk_size_is_zero() -> None:
    sched = Scheduler(SchedulerConfig(token_budget=512, prefill_chunk_size=0))
    sched.add(Request(1, prompt(300), max_tokens=1))
    out = sched.schedule()
    assert [c.n_tokens for c in out.chunks] == [300] and out.chunks[0].sample


def test_batch_never_exceeds_the_budget() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=4, token_budget=50))
    for i in range(1, 7):
        sched.add(Request(i, prompt(30 + 7 * i, i), max_tokens=5))
    eng = FakeEngine(sched)
    eng.run()
    assert max(b.n_tokens for b in eng.batches) <= 50
    assert sum(b.n_tokens for b in eng.batches) == sum(30 + 7 * i + 4 for i in range(1, 7))


def test_every_running_decode_advances_every_step_while_prefill_runs() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=4, token_budget=32, mode="balanced"))
    for i in (1, 2):
        sched.add(Request(i, prompt(4, i), max_tokens=50))
    eng = FakeEngine(sched)
    eng.step()  # both prompts prefilled
    sched.add(Request(3, prompt(200, 3), max_tokens=2))  # long prefill arrives
    for _ in range(5):
        eng.step()
        got = sizes(sched, eng.batches[-1].chunks)
        assert got[1] == 1 and got[2] == 1, got  # both decodes advanced
        assert got[3] == 30  # the rest of the budget went to prefill


def test_throughput_mode_gives_prefill_three_quarters_but_keeps_decode_reserve() -> None:
    assert split_budget(64, 40, True, "throughput_first", 1) == 16
    assert split_budget(64, 40, True, "throughput_first", 20) == 20
    assert split_budget(64, 40, False, "throughput_first", 1) == 40
    assert split_budget(8, 3, True, "balanced", 1) == 3
    assert split_budget(4, 9, True, "balanced", 1) == 3  # keeps one prefill token
    assert split_budget(4, 9, True, "latency_first", 1) == 4


def test_decodes_rotate_when_the_budget_is_smaller_than_the_running_set() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=6, token_budget=4, mode="latency_first"))
    for i in range(1, 7):
        sched.add(Request(i, [i], max_tokens=30))
    eng = FakeEngine(sched)
    eng.step()
    eng.step()
    served: dict[int, int] = {}
    for _ in range(6):
        eng.step()
        for rid in sizes(sched, eng.batches[-1].chunks):
            served[rid] = served.get(rid, 0) + 1
    assert sorted(served) == [1, 2, 3, 4, 5, 6]
    assert max(served.values()) - min(served.values()) <= 1


def test_two_long_prompts_share_the_prefill_budget_fairly() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=2, token_budget=64))
    sched.add(Request(1, prompt(1000, 1), max_tokens=1))
    sched.add(Request(2, prompt(1000, 2), max_tokens=1))
    eng = FakeEngine(sched)
    for _ in range(10):
        eng.step()
        assert sizes(sched, eng.batches[-1].chunks) == {1: 32, 2: 32}


def test_fair_shares_water_fills() -> None:
    assert fair_shares(10, [2, 100, 100]) == [2, 4, 4]
    assert fair_shares(7, [100, 100]) == [4, 3]
    assert fair_shares(5, [1, 1]) == [1, 1]
    assert fair_shares(0, [3]) == [0]


def test_concurrent_embeds_share_one_decode_and_finish_after_it() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=4, token_budget=64, cache_mode="disabled"))
    for i in range(1, 5):
        sched.add(Request(i, prompt(10 + i, i), kind="embed"))
    eng = FakeEngine(sched)
    done = eng.step()
    assert len(eng.batches) == 1 and len(eng.batches[0].chunks) == 4
    assert all(c.sample and c.start_pos == 0 for c in eng.batches[0].chunks)
    assert sorted(r.request_id for r in done) == [1, 2, 3, 4]
    assert all(r.finish_reason == "stop" for r in done)
    eng.run()
    assert all(state == "free" for state, _, _ in sched.slot_states())


def test_embed_is_never_split_and_is_not_starved_by_decodes() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=8, token_budget=10, mode="latency_first"))
    for i in range(1, 8):
        sched.add(Request(i, [i], max_tokens=40))
    eng = FakeEngine(sched)
    eng.step()
    sched.add(Request(99, prompt(8), kind="embed"))
    for _ in range(5):
        done = eng.step()
        embed = [c for c in eng.batches[-1].chunks if c.request.request_id == 99]
        assert not embed or embed[0].n_tokens == 8
        if any(r.request_id == 99 for r in done):
            break
    else:
        raise AssertionError("the embed request never ran")
