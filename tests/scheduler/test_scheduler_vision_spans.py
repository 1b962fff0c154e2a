"""Image spans (``Request.media_spans``): no chunk and no reused prefix ever splits one."""

from __future__ import annotations

import pytest

from sipp.scheduler import Request, Scheduler, SchedulerConfig
from sipp.scheduler._spans import cut_end, fit_end
from tests.scheduler.sched_sim import FakeEngine, expected_output

IMAGE = 1 << 30  # placeholder id of one image (the engine uses ids above any vocabulary)


def image_prompt(before: int, image: int, after: int, base: int = 1) -> list[int]:
    return [base + i for i in range(before)] + [IMAGE] * image + [base + 100 + i
                                                                  for i in range(after)]


def assert_no_split(eng: FakeEngine, request: Request) -> None:
    for out in eng.batches:
        for chunk in out.chunks:
            if chunk.request is not request:
                continue
            end = chunk.start_pos + chunk.n_tokens
            for start, stop in request.media_spans:
                assert not start < chunk.start_pos < stop, (chunk.start_pos, start, stop)
                assert not start < end < stop, (end, start, stop)


def test_span_helpers() -> None:
    spans = [(4, 10), (12, 20)]
    assert cut_end(spans, 7) == 4
    assert cut_end(spans, 10) == 10
    assert cut_end(spans, 11) == 11
    assert fit_end(spans, 0, 7) == 4  # text before the image first
    assert fit_end(spans, 4, 7) == 10  # a chunk starting at the image takes all of it
    assert fit_end(spans, 10, 15) == 12


def test_request_rejects_spans_outside_the_prompt() -> None:
    with pytest.raises(ValueError, match="media_spans"):
        Request(1, [1, 2, 3], media_spans=((2, 5),))
    with pytest.raises(ValueError, match="media_spans"):
        Request(1, [1, 2, 3, 4], media_spans=((2, 3), (1, 2)))


def test_small_prefill_chunks_never_split_an_image() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=1, prefill_chunk_size=5, token_budget=64))
    eng = FakeEngine(sched)
    prompt = image_prompt(3, 16, 7)
    request = Request(1, prompt, max_tokens=3, media_spans=((3, 19),))
    sched.add(request)
    assert eng.run() == [request]
    assert request.output_tokens == expected_output(prompt, 3)
    assert_no_split(eng, request)
    sizes = [c.n_tokens for out in eng.batches for c in out.chunks if c.request is request]
    assert sizes[:3] == [3, 16, 5]  # text up to the image, the whole image, then text


def test_two_image_requests_sharing_a_small_budget_both_finish() -> None:
    # Each image needs 20 tokens; an even split of 30 gives 15 each, which fits neither.
    sched = Scheduler(SchedulerConfig(n_slots=2, token_budget=30))
    eng = FakeEngine(sched)
    requests = [
        Request(i, image_prompt(0, 20, 4, base=i * 10), max_tokens=4, media_spans=((0, 20),))
        for i in (1, 2)
    ]
    for r in requests:
        sched.add(r)
    done = eng.run(max_steps=200)
    assert sorted(r.request_id for r in done) == [1, 2]
    for r in requests:
        assert_no_split(eng, r)
        assert r.output_tokens == expected_output(r.all_tokens.tolist()[:24], 4)


def test_reused_prefix_never_ends_inside_an_image() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=1, cache_mode="live_slot_prefix"))
    eng = FakeEngine(sched)
    first_prompt = image_prompt(4, 8, 3)
    first = Request(1, first_prompt, max_tokens=2, media_spans=((4, 12),))
    sched.add(first)
    eng.run()
    # The common prefix (12 tokens) ends inside the second request's image span (4, 14):
    # the reuse must stop at the image start rather than resume inside the image.
    second_prompt = image_prompt(4, 8, 0) + [IMAGE + 1] * 2 + [5, 6]
    second = Request(2, second_prompt, max_tokens=2, media_spans=((4, 14),))
    sched.add(second)
    eng.run()
    assert second.num_cached_tokens == 4
    assert second.output_tokens == expected_output(second_prompt, 2)


def test_same_image_prefix_is_reused_whole() -> None:
    sched = Scheduler(SchedulerConfig(n_slots=1, cache_mode="live_slot_prefix"))
    eng = FakeEngine(sched)
    first = Request(1, image_prompt(4, 8, 3), max_tokens=2, media_spans=((4, 12),))
    sched.add(first)
    eng.run()
    second_prompt = [*image_prompt(4, 8, 3)[:12], 40, 41]
    second = Request(2, second_prompt, max_tokens=2, media_spans=((4, 12),))
    sched.add(second)
    eng.run()
    assert second.num_cached_tokens == 12
    assert second.output_tokens == expected_output(second_prompt, 2)


def test_snapshots_are_never_taken_inside_an_image() -> None:
    cfg = SchedulerConfig(n_slots=1, cache_mode="state_snapshot", snapshot_interval_tokens=8)
    sched = Scheduler(cfg)
    eng = FakeEngine(sched)
    request = Request(1, image_prompt(6, 12, 10), max_tokens=2, media_spans=((6, 18),))
    sched.add(request)
    eng.run()
    saved = [op.n_tokens for op in eng.saved]
    assert saved and all(not 6 < n < 18 for n in saved), saved
    assert_no_split(eng, request)
