"""Sampling (``sampling``): a model's defaults and, as the same class, a request override."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

from sipp.config._enums import DEFAULT_SAMPLERS, SamplerStage
from sipp.config._group import Group, setting
from sipp.config._rules import (
    UINT32_MAX,
    as_bool,
    as_choice,
    as_choice_int,
    as_float,
    as_int,
    as_list,
    as_logit_bias,
    as_non_empty,
)
from sipp.errors import ConfigurationError

__all__ = ["SamplingRuntimeConfig", "SamplingRuntimeOverride"]

_UNIT = as_float(0.0, 1.0)
_NON_NEGATIVE = as_float(0.0)
_WINDOW = as_int(-1, note=" (-1 means the whole context)")


def _samplers(value: object, path: str) -> tuple[object, ...]:
    stages = as_list(as_choice(get_args(SamplerStage)), "sampler stage names", unique=True)(
        value, path
    )
    if "adaptive_p" in stages and stages[-1] != "adaptive_p":
        raise ConfigurationError(
            f"{path}: 'adaptive_p' picks the token itself and must be the last stage"
        )
    return stages


@dataclass(frozen=True, kw_only=True, repr=False, eq=False)
class SamplingRuntimeConfig(Group):
    """Default sampling of a local model; also a per-request override (same class).

    As an override (``LocalTextOptions(sampling=...)``) only the fields it sets replace the
    model's values (:meth:`with_override`). ``temperature=0`` is greedy: the argmax after
    grammar and logit bias, and after the ``penalties`` / ``dry`` stages only when they
    differ from Sipp's defaults. Sampler chains always run in libllama's C samplers on the
    host, right after each decode.
    """

    _PATH: ClassVar[str] = "sampling"

    samplers: Sequence[SamplerStage] = setting(
        DEFAULT_SAMPLERS,
        _samplers,
        "The stages in order (adaptive_p last). On vocabularies of 32768 or more tokens "
        "top_k moves ahead of penalties and dry.",
    )
    seed: int | None = setting(
        None,
        as_int(0, UINT32_MAX, what=f"an unsigned 32-bit integer in [0, {UINT32_MAX}]"),
        "The sampling seed; unset or 4294967295: a random seed per request.",
    )
    top_k: int = setting(40, as_int(0), "Keep the k most likely tokens; 0 turns it off.")
    top_p: float = setting(0.8, _UNIT, "Nucleus sampling; 1 turns it off.")
    min_p: float = setting(0.05, _UNIT, "Minimum probability relative to the top token.")
    typical_p: float = setting(1.0, _UNIT, "Locally typical sampling; 1 turns it off.")
    xtc_probability: float = setting(0.0, _UNIT, "XTC: chance to cut top tokens; 0 is off.")
    xtc_threshold: float = setting(0.1, _UNIT, "XTC: probability a cut token must exceed.")
    top_n_sigma: float | None = setting(
        None, _NON_NEGATIVE, "Keep tokens within n standard deviations of the top logit; "
        "unset or <= 0 is off."
    )
    temperature: float = setting(
        0.7, _NON_NEGATIVE, "Softmax temperature; 0 is greedy decoding."
    )
    dynatemp_range: float = setting(
        0.0, _NON_NEGATIVE, "Dynamic temperature range; > 0 turns it on."
    )
    dynatemp_exponent: float = setting(1.0, _NON_NEGATIVE, "Dynamic temperature exponent.")
    adaptive_target: float | None = setting(
        None, _UNIT, "Target probability of the adaptive_p stage; unset is off."
    )
    adaptive_decay: float = setting(
        0.9, as_float(0.0, 0.99), "Decay of the adaptive_p stage's running average."
    )
    repeat_last_n: int = setting(64, _WINDOW, "Tokens the penalties look back over.")
    repeat_penalty: float = setting(
        1.05, as_float(0.0, lo_open=True), "Repetition penalty; 1 is off."
    )
    frequency_penalty: float = setting(0.0, as_float(), "Penalty per earlier occurrence.")
    presence_penalty: float = setting(0.0, as_float(), "Penalty for any earlier occurrence.")
    dry_multiplier: float = setting(0.0, _NON_NEGATIVE, "DRY penalty strength; 0 is off.")
    dry_base: float = setting(1.75, as_float(0.0, lo_open=True), "DRY penalty base.")
    dry_allowed_length: int = setting(2, as_int(0), "Repeats DRY lets through unpenalized.")
    dry_penalty_last_n: int = setting(64, _WINDOW, "Tokens DRY looks back over.")
    dry_sequence_breakers: Sequence[str] = setting(
        ("\n", ":", '"', "*"),
        as_list(as_non_empty, "non-empty strings"),
        "Strings that end a DRY repeat match.",
    )
    mirostat: Literal[0, 1, 2] = setting(
        0,
        as_choice_int((0, 1, 2)),
        "1 or 2 replaces the stages with temperature then mirostat (v1 / v2).",
    )
    mirostat_tau: float = setting(5.0, _NON_NEGATIVE, "Mirostat target surprise.")
    mirostat_eta: float = setting(0.1, _NON_NEGATIVE, "Mirostat learning rate.")
    min_keep: int = setting(
        0, as_int(0), "Fewest candidates the top_p, min_p, typical and xtc stages keep."
    )
    n_probs: int = setting(
        0,
        as_int(0),
        "When > 0, text responses carry logprobs: per generated token its log-probability "
        "and the n_probs most likely tokens, under the model's raw distribution.",
    )
    logit_bias: Sequence[tuple[int, float]] = setting(
        (),
        as_logit_bias,
        "[token_id, bias] pairs (or a {token_id: bias} dict); -inf bans the token.",
    )
    ignore_eos: bool = setting(False, as_bool, "Ban every end-of-generation token.")
    grammar_lazy: bool = setting(
        False,
        as_bool,
        "A request's grammar / json_schema stays inactive until one of preserved_tokens is "
        "generated; needs preserved_tokens.",
    )
    preserved_tokens: Sequence[int] = setting(
        (),
        as_list(as_int(0), "token ids", unique=True),
        "The trigger tokens of a lazy grammar (they need grammar_lazy).",
    )
    backend_sampling: bool = setting(
        True,
        as_bool,
        "Samplers run in libllama's C samplers on the host after each decode (the backend "
        "for a CPU model); an explicit True for a GPU model (in-graph GPU sampling, not "
        "implemented) is refused at load and per request.",
    )

    def is_empty(self) -> bool:
        """True when no field is set (an override that changes nothing)."""
        return not self.fields_set

    def with_override(self, override: SamplingRuntimeConfig | None) -> SamplingRuntimeConfig:
        """These values with every field ``override`` sets replaced: the one place a
        request's sampling merges into the model's (``self`` when nothing changes)."""
        return self if override is None else self._updated(override)


SamplingRuntimeOverride = SamplingRuntimeConfig
"""A per-request sampling override: the same class as :class:`SamplingRuntimeConfig`."""
