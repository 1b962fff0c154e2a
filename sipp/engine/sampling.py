"""Sampler chains: resolve sampling settings, plan the chain, build it in C.

Resolution order: Sipp defaults (inventory §2.2) ← the model's ``sampling`` config ← the
request's ``LocalTextOptions.sampling`` override (only the fields it sets) ← the common
``SippTextOptions.temperature`` / ``top_p`` shortcuts (a different value in both places is an
``InvalidRequestError``).

:func:`plan_chain` turns a :class:`~sipp.config.SamplingRuntimeConfig` into an ordered
tuple of :class:`Stage` values (pure Python, testable without a model); :class:`Sampler`
creates the native ``llama_sampler`` chain from a plan and samples with it (a stateless
greedy chain reads the logits row directly instead). Every stage runs in C:

* ``temperature == 0`` → greedy argmax (after grammar and logit bias, and after the
  ``penalties`` / ``dry`` stages when they differ from Sipp's defaults);
* mirostat 1 / 2 → temperature then the mirostat sampler (it picks the token);
* otherwise the configured ``samplers`` in order, then ``dist(seed)``. On large vocabularies
  ``top_k`` moves ahead of ``penalties`` and ``dry`` so those run on k candidates instead of
  the full vocabulary.

A grammar (GBNF, or compiled from a JSON schema, which wins) goes first so every later stage
only sees tokens the grammar allows; with ``grammar_lazy`` it stays inactive until one of
``preserved_tokens`` is sampled (``llama_sampler_init_grammar_lazy_patterns``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sipp.config import SamplingRuntimeConfig
from sipp.errors import InvalidRequestError
from sipp.native import LlamaContext, LlamaModel, SamplerChain

__all__ = [
    "Sampler",
    "Stage",
    "TokenLogprob",
    "history_length",
    "is_greedy",
    "plan_chain",
    "resolve_grammar",
    "resolve_sampling",
    "top_logprobs",
]

_EXPENSIVE_ON_FULL_VOCAB = frozenset({"penalties", "dry"})
# Sipp's default repeat penalty: neutral for greedy chains (see _greedy_keeps)
_DEFAULT_REPEAT_PENALTY = SamplingRuntimeConfig.setting("repeat_penalty").default

LARGE_VOCAB = 32_768
DEFAULT_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: a random seed per chain


def resolve_sampling(
    base: SamplingRuntimeConfig,
    override: SamplingRuntimeConfig | None = None,
    *,
    temperature: float | None = None,
    top_p: float | None = None,
) -> SamplingRuntimeConfig:
    """The model's sampling with a request override and the common ``temperature`` /
    ``top_p`` options applied (both set to different values → ``InvalidRequestError``)."""
    common: dict[str, float] = {}
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if value is None:
            continue
        if override is not None and name in override.fields_set and not math.isclose(
            float(getattr(override, name)), float(value)
        ):
            raise InvalidRequestError(f"common {name} conflicts with local sampling.{name}")
        common[name] = float(value)
    merged = base.with_override(override)
    if not common:
        return merged
    return merged.with_override(SamplingRuntimeConfig.from_dict(common))


def is_greedy(params: SamplingRuntimeConfig) -> bool:
    """Temperature 0 without mirostat: a plain argmax."""
    return params.temperature <= 0.0 and params.mirostat == 0


def resolve_grammar(grammar: str | None, json_schema: Any) -> str | None:
    """The GBNF for a request: compiled from ``json_schema`` when given (it wins), else
    ``grammar``, else None."""
    if json_schema is not None and json_schema is not False:
        from sipp.engine.json_schema import json_schema_to_gbnf

        schema = json.loads(json_schema) if isinstance(json_schema, str) else json_schema
        return str(json_schema_to_gbnf(schema))
    return grammar


@dataclass(frozen=True)
class Stage:
    """One sampler of a chain: a :data:`sipp.native.STAGES` name and its options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def spec(self) -> tuple[str, Mapping[str, Any]]:
        """The ``(name, options)`` pair :class:`sipp.native.SamplerChain` takes."""
        return self.name, self.options


def history_length(params: SamplingRuntimeConfig) -> int:
    """How many prompt tokens to feed the chain before sampling (repeat/DRY windows)."""
    if params.mirostat:
        return 0
    if is_greedy(params) and not any(_greedy_keeps(s, params) for s in params.samplers):
        return 0
    n = 0
    if "penalties" in params.samplers and _penalties_active(params):
        n = max(n, params.repeat_last_n if params.repeat_last_n >= 0 else 1 << 30)
    if "dry" in params.samplers and params.dry_multiplier > 0:
        n = max(n, params.dry_penalty_last_n if params.dry_penalty_last_n >= 0 else 1 << 30)
    return n


def _greedy_keeps(stage: str, p: SamplingRuntimeConfig) -> bool:
    """Whether a temperature-0 chain keeps this repetition stage: only when the caller
    changed it from Sipp's defaults (repeat_penalty 1.05 shapes sampling at temperature
    > 0; greedy stays a plain argmax unless penalties or DRY were asked for)."""
    if stage == "penalties":
        return _penalties_active(p) and (
            p.repeat_penalty != _DEFAULT_REPEAT_PENALTY or p.frequency_penalty != 0.0
            or p.presence_penalty != 0.0
        )
    return stage == "dry" and p.dry_multiplier > 0


def _penalties_active(p: SamplingRuntimeConfig) -> bool:
    return p.repeat_last_n != 0 and (
        p.repeat_penalty != 1.0 or p.frequency_penalty != 0.0 or p.presence_penalty != 0.0
    )


def plan_chain(
    params: SamplingRuntimeConfig,
    *,
    n_vocab: int,
    n_ctx: int,
    grammar: str | None = None,
    eog_tokens: Sequence[int] = (),
    grammar_triggers: Sequence[str] = (),
) -> tuple[Stage, ...]:
    """The ordered stages of the sampler chain for ``params``; ``grammar_triggers`` (regex
    patterns, e.g. a tool-call marker) make the grammar lazy: it starts where one matches."""
    stages: list[Stage] = []
    bias = list(params.logit_bias)
    if params.ignore_eos:
        bias.extend((token, -math.inf) for token in eog_tokens)
    for token, _ in bias:
        if token >= n_vocab:
            raise InvalidRequestError(
                f"sampling.logit_bias token id {token} is outside the vocabulary (size {n_vocab})"
            )
    if grammar:
        options = _grammar_options(params, grammar, n_vocab)
        if grammar_triggers:
            options["trigger_patterns"] = tuple(grammar_triggers)
        stages.append(Stage("grammar", options))
    if bias:
        stages.append(Stage("logit_bias", {"bias": tuple(bias)}))
    seed = DEFAULT_SEED if params.seed is None else params.seed
    if is_greedy(params):
        # Repetition stages the caller asked for still apply at temperature 0: they
        # change which token is the maximum.
        for kept in params.samplers:
            if _greedy_keeps(kept, params):
                stage = _stage(kept, params, n_vocab, n_ctx)
                if stage is not None:
                    stages.append(stage)
        stages.append(Stage("greedy"))
        return tuple(stages)
    if params.mirostat == 1:
        stages.append(Stage("temp", {"t": params.temperature}))
        stages.append(Stage("mirostat", {"seed": seed, "tau": params.mirostat_tau,
                                         "eta": params.mirostat_eta, "m": 100}))
        return tuple(stages)
    if params.mirostat == 2:
        stages.append(Stage("temp", {"t": params.temperature}))
        stages.append(Stage("mirostat_v2", {"seed": seed, "tau": params.mirostat_tau,
                                            "eta": params.mirostat_eta}))
        return tuple(stages)
    for name in _ordered(tuple(params.samplers), n_vocab, params.top_k):
        stage = _stage(name, params, n_vocab, n_ctx)
        if stage is not None:
            stages.append(stage)
    if not stages or stages[-1].name != "adaptive_p":
        stages.append(Stage("dist", {"seed": seed}))
    return tuple(stages)


def _grammar_options(params: SamplingRuntimeConfig, grammar: str, n_vocab: int) -> dict[str, Any]:
    """The grammar stage: eager, or lazy (``grammar_lazy``) with ``preserved_tokens`` as the
    tokens that switch it on."""
    options: dict[str, Any] = {"grammar": grammar, "root": "root"}
    if not params.grammar_lazy and not params.preserved_tokens:
        return options
    if not params.grammar_lazy:
        raise InvalidRequestError(
            "sampling.preserved_tokens are the trigger tokens of a lazy grammar: set "
            "sampling.grammar_lazy=True, or drop preserved_tokens"
        )
    if not params.preserved_tokens:
        raise InvalidRequestError(
            "sampling.grammar_lazy=True needs sampling.preserved_tokens: the token ids that "
            "switch the grammar on (nothing could ever trigger it)"
        )
    for token in params.preserved_tokens:
        if token >= n_vocab:
            raise InvalidRequestError(
                f"sampling.preserved_tokens token id {token} is outside the vocabulary "
                f"(size {n_vocab})"
            )
    options["trigger_tokens"] = tuple(params.preserved_tokens)
    return options


def _ordered(samplers: tuple[str, ...], n_vocab: int, top_k: int) -> tuple[str, ...]:
    if n_vocab < LARGE_VOCAB or top_k <= 0 or "top_k" not in samplers:
        return samplers
    first_expensive = next(
        (i for i, s in enumerate(samplers) if s in _EXPENSIVE_ON_FULL_VOCAB), None
    )
    k_at = samplers.index("top_k")
    if first_expensive is None or k_at < first_expensive:
        return samplers
    rest = [s for i, s in enumerate(samplers) if i != k_at]
    rest.insert(first_expensive, "top_k")
    return tuple(rest)


def _stage(name: str, p: SamplingRuntimeConfig, n_vocab: int, n_ctx: int) -> Stage | None:
    min_keep = p.min_keep
    if name == "top_k":
        return Stage("top_k", {"k": p.top_k}) if p.top_k > 0 else None
    if name == "top_p":
        return Stage("top_p", {"p": p.top_p, "min_keep": min_keep}) if p.top_p < 1.0 else None
    if name == "min_p":
        return Stage("min_p", {"p": p.min_p, "min_keep": min_keep}) if p.min_p > 0.0 else None
    if name == "typical_p":
        if p.typical_p >= 1.0:
            return None
        return Stage("typical", {"p": p.typical_p, "min_keep": min_keep})
    if name == "xtc":
        if p.xtc_probability <= 0.0:
            return None
        seed = DEFAULT_SEED if p.seed is None else p.seed
        return Stage("xtc", {"p": p.xtc_probability, "t": p.xtc_threshold, "min_keep": min_keep,
                            "seed": seed})
    if name == "top_n_sigma":
        if p.top_n_sigma is None or p.top_n_sigma <= 0:
            return None
        return Stage("top_n_sigma", {"n": p.top_n_sigma})
    if name == "temperature":
        if p.dynatemp_range > 0:
            return Stage("temp_ext", {"t": p.temperature, "delta": p.dynatemp_range,
                                     "exponent": p.dynatemp_exponent})
        return Stage("temp", {"t": p.temperature})
    if name == "penalties":
        if not _penalties_active(p):
            return None
        last_n = n_ctx if p.repeat_last_n == -1 else p.repeat_last_n
        return Stage("penalties", {"last_n": last_n, "repeat": p.repeat_penalty,
                                   "freq": p.frequency_penalty, "present": p.presence_penalty})
    if name == "dry":
        if p.dry_multiplier <= 0:
            return None
        last_n = n_ctx if p.dry_penalty_last_n == -1 else p.dry_penalty_last_n
        return Stage("dry", {"multiplier": p.dry_multiplier, "base": p.dry_base,
                             "allowed_length": p.dry_allowed_length, "penalty_last_n": last_n,
                             "seq_breakers": p.dry_sequence_breakers})
    if name == "infill":
        return Stage("infill")
    if name == "adaptive_p":
        if p.adaptive_target is None or p.adaptive_target < 0:
            return None
        seed = DEFAULT_SEED if p.seed is None else p.seed
        return Stage("adaptive_p", {"target": p.adaptive_target, "decay": p.adaptive_decay,
                                   "seed": seed})
    raise InvalidRequestError(f"sampling.samplers: unknown sampler stage {name!r}")


# ----------------------------------------------------------------------------- running a chain
_BAN = -3.0e38  # the native logit_bias stage takes finite biases; this bans a token
_BAN_LIMIT = -1.0e37  # a bias at most this large in magnitude bans its token ...
_FINITE_LIMIT = 1.0e36  # ... against any maximum logit smaller than this in magnitude


def _native_spec(stage: Stage) -> tuple[str, Mapping[str, Any]]:
    if stage.name == "logit_bias":
        bias = tuple((t, _BAN if b == -math.inf else b) for t, b in stage.options["bias"])
        return "logit_bias", {"bias": bias}
    return stage.spec()


class _Greedy:
    """Greedy selection (after an optional logit bias) straight from the logits row.

    ``llama_sampler_sample`` first copies the whole vocabulary into a candidate array
    (262,144 entries for Gemma: most of a millisecond per token); a stateless greedy
    chain needs only the row's argmax, compared with the few biased entries. Same result
    as the native stages: biases added in float32, first index of the maximum wins.
    """

    __slots__ = ("bans", "bias", "ids", "only_bans", "unique")

    def __init__(self, bias: Sequence[tuple[int, float]]) -> None:
        self.ids = np.array([t for t, _ in bias], dtype=np.intp)
        self.bias = np.array([b for _, b in bias], dtype=np.float32)
        self.unique = len(set(self.ids.tolist())) == self.ids.shape[0]
        # bans (huge negative biases, e.g. every EOG token under ignore_eos) can only lose
        # against a finite maximum elsewhere: a set lookup settles them
        self.bans = frozenset(t for t, b in bias if b <= _BAN_LIMIT)
        self.only_bans = self.unique and len(self.bans) == self.ids.shape[0]

    def select(self, logits: npt.NDArray[np.float32]) -> int:
        ids = self.ids
        best = int(np.argmax(logits))
        if not ids.shape[0]:
            return best
        if self.only_bans and best not in self.bans and abs(logits[best]) < _FINITE_LIMIT:
            return best
        if not self.unique or best in ids:  # rare: the raw maximum is a biased token
            row = logits.copy()
            with np.errstate(over="ignore"):  # a ban on a ban is -inf, as in C
                np.add.at(row, ids, self.bias)
            return int(np.argmax(row))
        # ``best`` is the first maximum of every unbiased entry; only a biased entry
        # whose new value beats it (or ties at a lower index) can win instead.
        with np.errstate(over="ignore"):
            biased = logits[ids] + self.bias
        top = biased.max()
        if top < logits[best]:
            return best
        first = int(ids[biased == top].min())
        return first if top > logits[best] or first < best else best


def _greedy_plan(specs: Sequence[tuple[str, Mapping[str, Any]]]) -> _Greedy | None:
    """A :class:`_Greedy` when the chain is ``[logit_bias] greedy`` (no state), else None."""
    names = [name for name, _ in specs]
    if names == ["greedy"]:
        return _Greedy(())
    if names == ["logit_bias", "greedy"]:
        return _Greedy(specs[0][1]["bias"])
    return None


class Sampler:
    """One request's sampler: the native chain built from planned stages (plain greedy
    reads the logits row directly: see :class:`_Greedy`). Engine thread only after
    creation; :meth:`close` frees the chain."""

    __slots__ = ("_greedy", "native")

    def __init__(self, model: LlamaModel, stages: Sequence[Stage]) -> None:
        specs = [_native_spec(s) for s in stages]
        self.native = SamplerChain(model, specs)
        self._greedy = _greedy_plan(specs)

    @property
    def is_fast_greedy(self) -> bool:
        """Whether :meth:`sample` skips the native chain (a stateless greedy plan)."""
        return self._greedy is not None

    def sample(self, ctx: LlamaContext, index: int) -> int:
        """The token for batch entry ``index`` of the last decode."""
        if self._greedy is not None:
            return self._greedy.select(ctx.logits_ith(index))
        return int(self.native.sample(ctx, index))

    def accept(self, token: int) -> None:
        self.native.accept(token)

    def close(self) -> None:
        self.native.close()


@dataclass(frozen=True)
class TokenLogprob:
    """One sampled token's log-probability and the most likely alternatives."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...]


def top_logprobs(logits: npt.NDArray[np.float32], n: int, token: int) -> TokenLogprob:
    """Log-probabilities under the model's own distribution (softmax of the raw logits,
    before any sampler stage): the sampled ``token``'s and the ``n`` most likely tokens',
    most likely first."""
    row = logits.astype(np.float64)
    peak = row.max()
    logz = peak + math.log(float(np.exp(row - peak).sum()))
    n = min(n, row.shape[0])
    ids = np.argpartition(-row, n - 1)[:n]
    ids = ids[np.argsort(-row[ids], kind="stable")]
    return TokenLogprob(token, float(row[token] - logz),
                        tuple((int(i), float(row[i] - logz)) for i in ids.tolist()))
