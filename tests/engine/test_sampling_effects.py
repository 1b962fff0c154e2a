"""Sampling options change what a user gets: seeds, logit bias, penalties, top-k."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sipp.config import SamplingRuntimeConfig
from sipp.engine.core import Engine
from sipp.requests import TextRequest
from sipp.runs import RunSink, SippTextRun
from sipp.types import LocalTextOptions, SippTextOptions
from tests.engine.engine_helpers import REF

PROMPT = "Once upon a time"


def _generate(engine: Engine, *, temperature: float | None = None, max_tokens: int = 12,
              **sampling: Any) -> dict[str, Any]:
    sink = RunSink(REF, wants_tokens=False)
    local = LocalTextOptions(sampling=SamplingRuntimeConfig(**sampling) if sampling else None)
    options = SippTextOptions(max_tokens=max_tokens, temperature=temperature)
    engine.submit_text(TextRequest("query", PROMPT, None, options, local, None, None, False),
                       sink)
    return dict(SippTextRun(sink).result(30))


def _token_ids(engine: Engine, text: str) -> list[int]:
    return engine.model.tokenize(text, add_special=False)


def test_different_seeds_give_different_samples(engine_factory: Any,
                                                tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    texts = {_generate(engine, temperature=1.5, seed=seed, ignore_eos=True)["text"]
             for seed in range(6)}
    assert len(texts) >= 4, texts
    again = _generate(engine, temperature=1.5, seed=3, ignore_eos=True)["text"]
    assert again in texts


def test_a_large_positive_logit_bias_forces_the_token(engine_factory: Any,
                                                      tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    forced = _token_ids(engine, " banana")[-1]
    piece = engine.model.token_to_piece(forced).decode()
    result = _generate(engine, temperature=0.0, max_tokens=5, logit_bias={forced: 100.0})
    assert result["text"] == piece * 5


def test_banning_the_greedy_token_changes_the_first_token(engine_factory: Any,
                                                          tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    greedy = _generate(engine, temperature=0.0, max_tokens=1, ignore_eos=True)["text"]
    first = _token_ids(engine, PROMPT + greedy)[len(_token_ids(engine, PROMPT))]
    banned = _generate(engine, temperature=0.0, max_tokens=1, ignore_eos=True,
                       logit_bias={first: float("-inf")})["text"]
    assert banned and banned != greedy


def test_penalties_stop_a_biased_token_from_repeating(engine_factory: Any,
                                                     tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    token = _token_ids(engine, " banana")[-1]
    piece = engine.model.token_to_piece(token).decode()
    bias = {token: 50.0}
    plain = _generate(engine, temperature=0.0, max_tokens=6, logit_bias=bias)["text"]
    assert plain == piece * 6
    for penalty in ({"frequency_penalty": 100.0}, {"presence_penalty": 100.0},
                    {"repeat_penalty": 1e6}):
        text = _generate(engine, temperature=0.0, max_tokens=6, logit_bias=bias,
                         repeat_last_n=64, **penalty)["text"]
        assert text.startswith(piece) and text.count(piece) == 1, (penalty, text)


def test_top_k_one_samples_the_greedy_token(engine_factory: Any, tiny_llama_path: Path) -> None:
    engine = engine_factory(tiny_llama_path)
    greedy = _generate(engine, temperature=0.0, ignore_eos=True)["text"]
    for seed in (1, 2):
        sampled = _generate(engine, temperature=1.5, top_k=1, seed=seed, ignore_eos=True)
        assert sampled["text"] == greedy
