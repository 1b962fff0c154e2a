"""Sampler chain resolution and planning (no model needed)."""

from __future__ import annotations

import math

import pytest

from sipp.config import NativeRuntimeConfig, SamplingRuntimeConfig
from sipp.engine.sampling import history_length, plan_chain, resolve_sampling
from sipp.errors import InvalidRequestError

BASE = NativeRuntimeConfig().sampling
SMALL, LARGE = 1000, 262_144


def names(stages: tuple[object, ...]) -> list[str]:
    return [s.name for s in stages]  # type: ignore[attr-defined]


def test_default_chain_follows_sipp_defaults() -> None:
    stages = plan_chain(resolve_sampling(BASE), n_vocab=SMALL, n_ctx=512)
    assert names(stages) == ["top_k", "penalties", "top_p", "temp", "dist"]
    by_name = {s.name: dict(s.options) for s in stages}
    assert by_name["top_k"] == {"k": 40}
    assert by_name["top_p"] == {"p": 0.8, "min_keep": 0}
    assert by_name["temp"] == {"t": 0.7}
    assert by_name["penalties"] == {"last_n": 64, "repeat": 1.05, "freq": 0.0, "present": 0.0}


def test_temperature_zero_is_greedy() -> None:
    params = resolve_sampling(BASE, temperature=0.0)
    assert names(plan_chain(params, n_vocab=SMALL, n_ctx=512)) == ["greedy"]
    assert history_length(params) == 0


def test_common_and_local_conflict_is_rejected() -> None:
    override = SamplingRuntimeConfig(temperature=0.2)
    with pytest.raises(InvalidRequestError, match=r"common temperature conflicts with local "
                       r"sampling\.temperature"):
        resolve_sampling(BASE, override, temperature=0.9)
    # The same value in both places is not a conflict.
    assert resolve_sampling(BASE, override, temperature=0.2).temperature == 0.2


def test_override_replaces_only_the_fields_it_sets() -> None:
    params = resolve_sampling(BASE, SamplingRuntimeConfig(top_k=5), top_p=0.5)
    assert (params.top_k, params.top_p, params.temperature) == (5, 0.5, 0.7)


def test_top_k_moves_ahead_of_penalties_on_large_vocabularies() -> None:
    override = SamplingRuntimeConfig(samplers=["penalties", "top_p", "top_k", "temperature"])
    params = resolve_sampling(BASE, override)
    assert names(plan_chain(params, n_vocab=SMALL, n_ctx=512))[:3] == [
        "penalties", "top_p", "top_k"
    ]
    assert names(plan_chain(params, n_vocab=LARGE, n_ctx=512))[:3] == [
        "top_k", "penalties", "top_p"
    ]


def test_mirostat_v2_picks_the_token_itself() -> None:
    params = resolve_sampling(BASE, SamplingRuntimeConfig(mirostat=2, seed=7))
    stages = plan_chain(params, n_vocab=SMALL, n_ctx=512)
    assert names(stages) == ["temp", "mirostat_v2"]
    assert stages[-1].options == {"seed": 7, "tau": 5.0, "eta": 0.1}


def test_mirostat_v1_uses_the_paper_window() -> None:
    params = resolve_sampling(BASE, SamplingRuntimeConfig(mirostat=1, seed=3))
    assert plan_chain(params, n_vocab=SMALL, n_ctx=512)[-1].options == {
        "seed": 3, "tau": 5.0, "eta": 0.1, "m": 100}


def test_grammar_goes_first_and_logit_bias_next() -> None:
    params = resolve_sampling(BASE, SamplingRuntimeConfig(logit_bias={5: -math.inf}))
    stages = plan_chain(params, n_vocab=SMALL, n_ctx=512, grammar='root ::= "a"')
    assert names(stages)[:2] == ["grammar", "logit_bias"]
    assert stages[1].options == {"bias": ((5, -math.inf),)}


def test_ignore_eos_bans_end_of_generation_tokens() -> None:
    params = resolve_sampling(BASE, SamplingRuntimeConfig(ignore_eos=True), temperature=0.0)
    stages = plan_chain(params, n_vocab=SMALL, n_ctx=512, eog_tokens=(2, 3))
    assert names(stages) == ["logit_bias", "greedy"]
    assert stages[0].options == {"bias": ((2, -math.inf), (3, -math.inf))}


def test_logit_bias_outside_vocabulary_is_rejected() -> None:
    params = resolve_sampling(BASE, SamplingRuntimeConfig(logit_bias={SMALL: 1.0}))
    with pytest.raises(InvalidRequestError, match="logit_bias token id 1000 is outside"):
        plan_chain(params, n_vocab=SMALL, n_ctx=512)


def test_optional_stages_and_seed() -> None:
    override = SamplingRuntimeConfig(
        samplers=["dry", "min_p", "xtc", "top_n_sigma", "typical_p", "temperature"],
        dry_multiplier=0.8, min_p=0.1, xtc_probability=0.5, top_n_sigma=1.5,
        typical_p=0.9, dynatemp_range=0.2, seed=11,
    )
    stages = plan_chain(resolve_sampling(BASE, override), n_vocab=SMALL, n_ctx=512)
    assert names(stages) == [
        "dry", "min_p", "xtc", "top_n_sigma", "typical", "temp_ext", "dist"
    ]
    assert stages[-1].options == {"seed": 11}
    assert stages[0].options["penalty_last_n"] == 64


def test_history_covers_repeat_window() -> None:
    assert history_length(resolve_sampling(BASE)) == 64
    no_penalty = resolve_sampling(BASE, SamplingRuntimeConfig(repeat_penalty=1.0))
    assert history_length(no_penalty) == 0


def test_greedy_keeps_repetition_stages_only_when_asked() -> None:
    default = resolve_sampling(BASE, temperature=0.0)
    assert names(plan_chain(default, n_vocab=SMALL, n_ctx=512)) == ["greedy"]
    for override in (SamplingRuntimeConfig(repeat_penalty=1.3),
                     SamplingRuntimeConfig(presence_penalty=0.5)):
        params = resolve_sampling(BASE, override, temperature=0.0)
        assert names(plan_chain(params, n_vocab=SMALL, n_ctx=512)) == ["penalties", "greedy"]
        assert history_length(params) == 64
    dry = resolve_sampling(BASE, SamplingRuntimeConfig(dry_multiplier=0.8,
                                                       samplers=["dry", "temperature"]),
                           temperature=0.0)
    assert names(plan_chain(dry, n_vocab=SMALL, n_ctx=512)) == ["dry", "greedy"]
