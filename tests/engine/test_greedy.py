"""The greedy fast path of the engine's sampler chains: the same token as libllama's
``logit_bias`` + ``greedy`` stages, read straight from the logits row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sipp.engine.sampling import Sampler, Stage, _Greedy
from sipp.native import LlamaBatch, LlamaContext, LlamaModel

BAN = -3.0e38


def reference(row: np.ndarray, bias: list[tuple[int, float]]) -> int:
    """What the C stages do: add each bias in float32 in order, first maximum wins."""
    biased = row.copy()
    with np.errstate(over="ignore"):
        for token, value in bias:
            biased[token] = np.float32(biased[token] + np.float32(value))
    best = 0
    for i in range(1, biased.shape[0]):
        if biased[i] > biased[best]:
            best = i
    return best


def test_matches_the_native_stages_on_ties_bans_and_repeats() -> None:
    rng = np.random.default_rng(7)
    for _ in range(2000):
        n = int(rng.integers(2, 40))
        row = rng.integers(-3, 3, n).astype(np.float32)  # many ties
        bias = [
            (int(rng.integers(0, n)), float(rng.choice([BAN, -1.0, 0.5, 1.0, 2.0])))
            for _ in range(int(rng.integers(0, 5)))
        ]
        assert _Greedy(bias).select(row) == reference(row, bias), (row.tolist(), bias)


def test_a_banned_maximum_gives_the_runner_up() -> None:
    row = np.array([0.0, 5.0, 4.0, 4.0], dtype=np.float32)
    assert _Greedy([]).select(row) == 1
    assert _Greedy([(1, BAN)]).select(row) == 2
    assert _Greedy([(1, BAN), (2, BAN)]).select(row) == 3
    assert _Greedy([(0, 5.0)]).select(row) == 0  # a boost to a tie at a lower index wins
    assert _Greedy([(2, 1.0)]).select(row) == 1  # a tie at a higher index does not
    huge = np.array([-3.0e38, 3.0e37, 3.0e37], dtype=np.float32)  # beyond the ban shortcut
    for bias in ([(1, BAN)], [(0, BAN)], [(2, BAN), (1, BAN)]):
        assert _Greedy(bias).select(huge) == reference(huge, bias)


@pytest.fixture
def context(native_backend: None, tiny_llama_path: Path) -> Iterator[LlamaContext]:
    model = LlamaModel(str(tiny_llama_path))
    ctx = LlamaContext(model, n_ctx=128, n_batch=32, n_ubatch=32, n_seq_max=1)
    yield ctx
    ctx.close()
    model.close()


def test_fast_path_picks_what_the_native_chain_picks(context: LlamaContext) -> None:
    model = context.model
    tokens = np.asarray(model.tokenize("Hello there, how are", add_special=True,
                                       parse_special=False), dtype=np.int32)
    batch = LlamaBatch(32)
    n = tokens.shape[0]
    batch.set(tokens, np.arange(n, dtype=np.int32), 0)
    context.decode(batch)
    top = int(np.argmax(context.logits_ith(n - 1)))
    for stages in (
        [Stage("greedy")],
        [Stage("logit_bias", {"bias": ((top, -float("inf")),)}), Stage("greedy")],
        [Stage("logit_bias", {"bias": ((top, -1.0), (3, 0.25))}), Stage("greedy")],
    ):
        fast = Sampler(model, stages)
        assert fast.is_fast_greedy
        native = fast.native.sample(context, n - 1)
        assert fast.sample(context, n - 1) == native
        fast.close()
    chain = Sampler(model, [Stage("top_k", {"k": 1}), Stage("dist", {"seed": 1})])
    assert not chain.is_fast_greedy  # anything else runs the native chain
    assert chain.sample(context, n - 1) == top
    chain.close()
