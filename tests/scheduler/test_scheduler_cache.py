"""KV prefix reuse in every cache mode, idle-slot LRU eviction and the snapshot store."""

from __future__ import annotations

import pytest

from sipp.scheduler import (
    KvClear,
    KvCopy,
    KvRemove,
    Request,
    Scheduler,
    SchedulerConfig,
    SnapshotRestore,
    SnapshotStore,
)
from tests.scheduler.sched_sim import FakeEngine, expected_output


def prompt(n: int, base: int = 1) -> list[int]:
    return [base + i % 97 for i in range(n)]


def run_one(eng: FakeEngine, r: Request) -> Request:
    eng.sched.add(r)
    done = eng.run()
    assert done == [r]
    assert r.output_tokens == expected_output(
        r.all_tokens.tolist()[: r.num_prompt_tokens], r.max_tokens
    )
    return r


def test_context_key_second_request_prefills_only_the_new_tokens() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=2, cache_mode="context_key"))
    eng = FakeEngine(sched)
    first = run_one(eng, Request(1, prompt(50), max_tokens=5, context_key="chat"))
    follow = [*first.all_tokens.tolist()[:-1], 3, 4, 5]  # prompt + 4 answers + new turn
    second = Request(2, follow, max_tokens=3, context_key="chat")
    sched.add(second)
    out = sched.schedule()
    assert second.num_cached_tokens == 54 and second.cache_source == "live"
    assert [c.n_tokens for c in out.chunks] == [3]
    assert out.chunks[0].start_pos == 54
    eng.execute(out)
    eng.run()
    assert second.output_tokens == expected_output(follow, 3)
    assert sched.stats.cache_hits == 1 and sched.stats.reused_tokens == 54


def test_context_key_does_not_share_across_keys() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=2, cache_mode="context_key"))
    eng = FakeEngine(sched)
    run_one(eng, Request(1, prompt(50), max_tokens=2, context_key="a"))
    other = run_one(eng, Request(2, prompt(50), max_tokens=2, context_key="b"))
    assert other.num_cached_tokens == 0


def test_live_prefix_copies_from_a_busy_slot() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=2, cache_mode="live_slot_prefix"))
    eng = FakeEngine(sched)
    sched.add(Request(1, prompt(40), max_tokens=20, context_key="a"))
    eng.step()
    eng.step()
    second = Request(2, [*prompt(30), 90, 91], max_tokens=4, context_key="b")
    sched.add(second)
    out = sched.schedule()
    assert KvCopy(src_slot=0, dst_slot=1, p0=0, p1=30) in out.kv_ops
    assert second.num_cached_tokens == 30
    chunk = next(c for c in out.chunks if c.request is second)
    assert (chunk.start_pos, chunk.n_tokens) == (30, 2)
    eng.execute(out)
    eng.run()
    assert second.output_tokens == expected_output([*prompt(30), 90, 91], 4)


def test_separate_kv_streams_never_copy_from_a_busy_slot() -> None:
    # kv_unified=False: libllama aborts on a partial seq_cp between streams.
    sched = Scheduler(SchedulerConfig(n_slots=3, cache_mode="live_slot_prefix",
                                      cross_slot_copy=False))
    eng = FakeEngine(sched)
    run_one(eng, Request(1, prompt(40), max_tokens=3))  # leaves an idle slot to take over
    sched.add(Request(2, prompt(40, base=7), max_tokens=20))
    eng.step()
    eng.step()
    copier = Request(3, [*prompt(40, base=7)[:30], 90, 91], max_tokens=4)
    sched.add(copier)
    out = sched.schedule()
    assert not [op for op in out.kv_ops if isinstance(op, KvCopy)]
    assert copier.num_cached_tokens == 0  # cold, instead of a copy from the busy slot
    eng.execute(out)
    eng.run()
    assert copier.output_tokens == expected_output([*prompt(40, base=7)[:30], 90, 91], 4)
    taker = Request(4, [*prompt(40), 5], max_tokens=2)
    run_one(eng, taker)
    assert taker.num_cached_tokens >= 39 and taker.cache_source == "live"  # idle takeover


def test_live_prefix_takes_over_an_idle_slot_and_trims_it() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=2, cache_mode="live_slot_prefix"))
    eng = FakeEngine(sched)
    run_one(eng, Request(1, prompt(40), max_tokens=3))
    second = Request(2, [*prompt(25), 95], max_tokens=3)
    sched.add(second)
    out = sched.schedule()
    assert out.kv_ops == [KvRemove(0, 25, -1)]
    assert second.slot == 0 and second.num_cached_tokens == 25
    eng.execute(out)
    eng.run()
    assert second.output_tokens == expected_output([*prompt(25), 95], 3)


def test_full_prompt_hit_leaves_one_token_to_decode() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=1, cache_mode="live_slot_prefix"))
    eng = FakeEngine(sched)
    run_one(eng, Request(1, prompt(20), max_tokens=4))
    again = Request(2, prompt(20), max_tokens=4)
    sched.add(again)
    eng.step()
    assert again.num_cached_tokens == 19
    chunk = eng.batches[-1].chunks[0]
    assert (chunk.start_pos, chunk.n_tokens, chunk.sample) == (19, 1, True)
    eng.run()
    assert again.output_tokens == expected_output(prompt(20), 4)


def test_disabled_mode_clears_slots_and_never_reuses() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=1, cache_mode="disabled"))
    eng = FakeEngine(sched)
    run_one(eng, Request(1, prompt(20), max_tokens=2))
    assert sched.slot_states() == [("free", 0, None)]
    again = run_one(eng, Request(2, prompt(20), max_tokens=2))
    assert again.num_cached_tokens == 0 and again.cache_source == "none"


def test_idle_slots_are_evicted_least_recently_used_first() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=2, cache_mode="context_key"))
    eng = FakeEngine(sched)
    run_one(eng, Request(1, prompt(10, 1), max_tokens=1, context_key="a"))
    run_one(eng, Request(2, prompt(10, 2), max_tokens=1, context_key="b"))
    assert [s for s, _, _ in sched.slot_states()] == ["idle", "idle"]
    run_one(eng, Request(3, [*prompt(10, 1), 5], max_tokens=1, context_key="a"))  # touch a
    sched.add(Request(4, prompt(10, 3), max_tokens=1, context_key="c"))
    out = sched.schedule()
    assert out.kv_ops == [KvClear(1)]  # "b" was least recently used
    assert sched.stats.idle_evictions == 1
    assert [k for _, _, k in sched.slot_states()] == ["a", "c"]


def test_snapshot_mode_saves_at_interval_boundaries_and_restores() -> None:
    cfg = SchedulerConfig(n_slots=1, cache_mode="state_snapshot", snapshot_interval_tokens=16)
    sched = Scheduler(cfg)
    eng = FakeEngine(sched)
    run_one(eng, Request(1, prompt(40), max_tokens=3))
    assert [s.n_tokens for s in eng.saved] == [16, 32, 40]
    assert sched.slot_states() == [("free", 0, None)]
    again = Request(2, [*prompt(35), 99, 98], max_tokens=3)
    sched.add(again)
    out = sched.schedule()
    restore = [op for op in out.kv_ops if isinstance(op, SnapshotRestore)]
    assert [op.n_tokens for op in restore] == [32]
    assert again.cache_source == "snapshot" and again.num_cached_tokens == 32
    eng.execute(out)
    eng.run()
    assert again.output_tokens == expected_output([*prompt(35), 99, 98], 3)
    assert sched.stats.snapshot_hits == 1


def test_snapshot_full_prompt_hit_is_trimmed_to_leave_one_token() -> None:
    cfg = SchedulerConfig(n_slots=1, cache_mode="state_snapshot", snapshot_interval_tokens=64)
    sched = Scheduler(cfg)
    eng = FakeEngine(sched)
    run_one(eng, Request(1, prompt(30), max_tokens=2))
    again = Request(2, prompt(30), max_tokens=2)
    sched.add(again)
    out = sched.schedule()
    assert out.kv_ops[-1] == KvRemove(0, 29, -1) and again.num_cached_tokens == 29
    eng.execute(out)
    eng.run()
    assert again.output_tokens == expected_output(prompt(30), 2)


def test_live_and_snapshot_prefers_the_longer_source() -> None:
    cfg = SchedulerConfig(
        n_slots=2, cache_mode="live_slot_and_snapshot", snapshot_interval_tokens=8
    )
    sched = Scheduler(cfg)
    eng = FakeEngine(sched)
    first = run_one(eng, Request(1, prompt(24), max_tokens=2))
    follow = prompt(24) + first.output_tokens[:1] + [50]
    r = run_one(eng, Request(2, follow, max_tokens=2))
    assert r.cache_source == "live" and r.num_cached_tokens == 25  # live: 24 + 1 answer
    third = run_one(eng, Request(3, [*prompt(20), 60], max_tokens=2))
    assert third.cache_source == "live" and third.num_cached_tokens == 20
    sched.add(Request(4, prompt(5), max_tokens=2, context_key="x"))
    sched.add(Request(5, prompt(5), max_tokens=2, context_key="y"))
    eng.run()  # both idle slots are overwritten by unrelated prompts
    fourth = run_one(eng, Request(6, [*prompt(24), 70], max_tokens=2))
    assert fourth.cache_source == "snapshot" and fourth.num_cached_tokens == 24


def test_snapshot_store_lru_by_entries() -> None:
    store = SnapshotStore(max_entries=2, max_bytes=1000)
    store.put(b"a", 1, b"x")
    store.put(b"b", 2, b"x")
    assert store.get(b"a") is not None  # a is now most recent
    store.put(b"c", 3, b"x")
    assert store.keys() == [b"a", b"c"] and store.evictions == 1


def test_snapshot_store_lru_by_bytes() -> None:
    store = SnapshotStore(max_entries=10, max_bytes=10)
    store.put(b"a", 1, b"1234")
    store.put(b"b", 2, b"1234")
    store.put(b"c", 3, b"1234")
    assert store.keys() == [b"b", b"c"] and store.total_bytes == 8
    assert not store.put(b"d", 4, b"12345678901")  # larger than the whole store
    assert b"d" not in store


def test_snapshot_store_finds_the_longest_stored_prefix() -> None:
    import numpy as np

    from sipp.scheduler._tokens import prefix_hashes

    tokens = np.arange(1, 101, dtype=np.int32)
    keys = prefix_hashes(tokens, [10, 50, 80])
    store = SnapshotStore(max_entries=8, max_bytes=100)
    for n in (10, 50):
        store.put(keys[n], n, b"s")
    other = np.arange(1, 101, dtype=np.int32)
    other[30] = 0  # diverges before 50
    entry = store.find_longest(other, 100)
    assert entry is not None and entry.n_tokens == 10
    entry = store.find_longest(tokens, 100)
    assert entry is not None and entry.n_tokens == 50
    assert store.find_longest(tokens, 9) is None


@pytest.mark.parametrize(
    "mode",
    ["disabled", "context_key", "live_slot_prefix", "state_snapshot", "live_slot_and_snapshot"],
)
def test_every_mode_produces_the_same_tokens(mode: str) -> None:
    cfg = SchedulerConfig(
        n_slots=3,
        token_budget=48,
        prefill_chunk_size=20,
        cache_mode=mode,
        snapshot_interval_tokens=16,
    )  # type: ignore[arg-type]
    sched = Scheduler(cfg)
    base = prompt(60)
    reqs = [
        Request(i, [*base[: 30 + 5 * i], i], max_tokens=6, context_key=str(i % 2)) for i in range(8)
    ]
    for r in reqs:
        sched.add(r)
    FakeEngine(sched).run()
    for r in reqs:
        assert r.output_tokens == expected_output([*base[: 30 + 5 * r.request_id], r.request_id], 6)
    assert all(state != "busy" for state, _, _ in sched.slot_states())


@pytest.mark.parametrize("mode", ["context_key", "live_slot_prefix", "live_slot_and_snapshot"])
def test_without_partial_kv_edits_only_whole_cached_sequences_are_reused(mode: str) -> None:
    cfg = SchedulerConfig(n_slots=1, cache_mode=mode, partial_kv_edits=False)  # type: ignore[arg-type]
    sched = Scheduler(cfg)
    eng = FakeEngine(sched)  # asserts no partial KvRemove / KvCopy is emitted
    first = run_one(eng, Request(1, prompt(30), max_tokens=3, context_key="k"))
    extended = [*first.all_tokens.tolist()[:32], 5, 6]
    whole = run_one(eng, Request(2, extended, max_tokens=2, context_key="k"))
    assert whole.num_cached_tokens == 32 and whole.cache_source == "live"
    cut = run_one(eng, Request(3, [*prompt(20), 77], max_tokens=2, context_key="k"))
    assert cut.num_cached_tokens == 0  # would need trimming the cached 35 tokens to 20
