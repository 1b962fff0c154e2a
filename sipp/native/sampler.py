"""``SamplerChain``: a ``llama_sampler`` chain built from stage specs, run in C."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sipp.errors import GrammarError
from sipp.native._gbnf import check_terminals
from sipp.native._lib import recent_log_errors
from sipp.native._owner import Owner
from sipp.native.context import LlamaContext
from sipp.native.model import LlamaModel

__all__ = ["STAGES", "SamplerChain"]

DEFAULT_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: a random seed


def _free_sampler(lib: Any, ptr: Any, _model: LlamaModel) -> None:
    lib.llama_sampler_free(ptr)


def _float(stage: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"sampler {stage}: {key} must be a finite number, got {value!r}")
    return float(value)


def _int(stage: str, key: str, value: Any, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        raise ValueError(f"sampler {stage}: {key} must be an int{bound}, got {value!r}")
    return value


def _seed(stage: str, value: Any) -> int:
    seed = _int(stage, "seed", value, 0)
    if seed > 0xFFFFFFFF:
        raise ValueError(f"sampler {stage}: seed must fit in an unsigned 32-bit integer")
    return seed


class _Builder:
    """Turns one stage spec into a ``llama_sampler *`` (owned by the chain once added)."""

    def __init__(self, chain: SamplerChain) -> None:
        self.chain = chain
        self.ffi = chain._ffi
        self.lib = chain._lib
        self.model = chain.model

    def build(self, name: str, args: Mapping[str, Any]) -> Any:
        spec = STAGES.get(name)
        if spec is None:
            raise ValueError(f"unknown sampler stage {name!r}; expected one of {', '.join(STAGES)}")
        required, optional, make = spec
        unknown = set(args) - set(required) - set(optional)
        if unknown:
            raise ValueError(f"sampler {name}: unknown option(s) {', '.join(sorted(unknown))}")
        missing = [k for k in required if k not in args]
        if missing:
            raise ValueError(f"sampler {name}: missing option(s) {', '.join(missing)}")
        full = {**optional, **args}
        return make(self, name, full)

    # --- stage constructors
    def greedy(self, name: str, a: dict[str, Any]) -> Any:
        return self.lib.llama_sampler_init_greedy()

    def dist(self, name: str, a: dict[str, Any]) -> Any:
        return self.lib.llama_sampler_init_dist(_seed(name, a["seed"]))

    def top_k(self, name: str, a: dict[str, Any]) -> Any:
        return self.lib.llama_sampler_init_top_k(_int(name, "k", a["k"]))

    def _p_keep(self, fn: Callable[..., Any], name: str, a: dict[str, Any]) -> Any:
        return fn(_float(name, "p", a["p"]), _int(name, "min_keep", a["min_keep"], 0))

    def top_p(self, name: str, a: dict[str, Any]) -> Any:
        return self._p_keep(self.lib.llama_sampler_init_top_p, name, a)

    def min_p(self, name: str, a: dict[str, Any]) -> Any:
        return self._p_keep(self.lib.llama_sampler_init_min_p, name, a)

    def typical(self, name: str, a: dict[str, Any]) -> Any:
        return self._p_keep(self.lib.llama_sampler_init_typical, name, a)

    def temp(self, name: str, a: dict[str, Any]) -> Any:
        return self.lib.llama_sampler_init_temp(_float(name, "t", a["t"]))

    def temp_ext(self, name: str, a: dict[str, Any]) -> Any:
        return self.lib.llama_sampler_init_temp_ext(
            _float(name, "t", a["t"]),
            _float(name, "delta", a["delta"]),
            _float(name, "exponent", a["exponent"]),
        )

    def xtc(self, name: str, a: dict[str, Any]) -> Any:
        return self.lib.llama_sampler_init_xtc(
            _float(name, "p", a["p"]),
            _float(name, "t", a["t"]),
            _int(name, "min_keep", a["min_keep"], 0),
            _seed(name, a["seed"]),
        )

    def top_n_sigma(self, name: str, a: dict[str, Any]) -> Any:
        return self.lib.llama_sampler_init_top_n_sigma(_float(name, "n", a["n"]))

    def mirostat(self, name: str, a: dict[str, Any]) -> Any:
        return self.lib.llama_sampler_init_mirostat(
            self.model.n_vocab,
            _seed(name, a["seed"]),
            _float(name, "tau", a["tau"]),
            _float(name, "eta", a["eta"]),
            _int(name, "m", a["m"], 1),
        )

    def mirostat_v2(self, name: str, a: dict[str, Any]) -> Any:
        return self.lib.llama_sampler_init_mirostat_v2(
            _seed(name, a["seed"]), _float(name, "tau", a["tau"]), _float(name, "eta", a["eta"])
        )

    def grammar(self, name: str, a: dict[str, Any]) -> Any:
        text, root = a["grammar"], a["root"]
        if not isinstance(text, str) or not isinstance(root, str) or not root:
            raise GrammarError("sampler grammar: grammar and root must be strings (root non-empty)")
        check_terminals(text)
        patterns = list(a.get("trigger_patterns") or ())
        tokens = list(a.get("trigger_tokens") or ())
        vocab = self.model.vocab_ptr
        recent_log_errors(clear=True)
        if patterns or tokens:
            keep = [self.ffi.new("char[]", p.encode()) for p in patterns]
            arr = self.ffi.new("const char *[]", keep) if keep else self.ffi.NULL
            toks = self.ffi.new("llama_token[]", tokens) if tokens else self.ffi.NULL
            ptr = self.lib.llama_sampler_init_grammar_lazy_patterns(
                vocab, text.encode(), root.encode(), arr, len(keep), toks, len(tokens)
            )
        else:
            ptr = self.lib.llama_sampler_init_grammar(vocab, text.encode(), root.encode())
        if ptr == self.ffi.NULL:
            detail = "; ".join(recent_log_errors(clear=True)[-3:]) or "llama.cpp rejected it"
            raise GrammarError(f"Invalid GBNF grammar (root {root!r}): {detail}")
        return ptr

    def penalties(self, name: str, a: dict[str, Any]) -> Any:
        return self.lib.llama_sampler_init_penalties(
            self.model.n_vocab,
            _int(name, "last_n", a["last_n"], -1),
            _float(name, "repeat", a["repeat"]),
            _float(name, "freq", a["freq"]),
            _float(name, "present", a["present"]),
        )

    def dry(self, name: str, a: dict[str, Any]) -> Any:
        breakers = a["seq_breakers"]
        if isinstance(breakers, str) or not all(isinstance(b, str) for b in breakers):
            raise ValueError("sampler dry: seq_breakers must be a list of strings")
        keep = [self.ffi.new("char[]", b.encode()) for b in breakers]
        arr = self.ffi.new("const char *[]", keep) if keep else self.ffi.NULL
        return self.lib.llama_sampler_init_dry(
            self.model.vocab_ptr,
            _float(name, "multiplier", a["multiplier"]),
            _float(name, "base", a["base"]),
            _int(name, "allowed_length", a["allowed_length"], 0),
            _int(name, "penalty_last_n", a["penalty_last_n"], -1),
            arr,
            len(keep),
        )

    def logit_bias(self, name: str, a: dict[str, Any]) -> Any:
        raw = a["bias"]
        items: Iterable[tuple[int, float]] = raw.items() if isinstance(raw, Mapping) else raw
        pairs = [(_int(name, "token", t, 0), _float(name, "bias", b)) for t, b in items]
        for t, _ in pairs:
            if t >= self.model.n_vocab:
                raise ValueError(f"sampler logit_bias: token {t} >= n_vocab {self.model.n_vocab}")
        arr = self.ffi.new("llama_logit_bias[]", pairs) if pairs else self.ffi.NULL
        return self.lib.llama_sampler_init_logit_bias(self.model.n_vocab, len(pairs), arr)

    def infill(self, name: str, a: dict[str, Any]) -> Any:
        return self.lib.llama_sampler_init_infill(self.model.vocab_ptr)

    def adaptive_p(self, name: str, a: dict[str, Any]) -> Any:
        return self.lib.llama_sampler_init_adaptive_p(
            _float(name, "target", a["target"]),
            _float(name, "decay", a["decay"]),
            _seed(name, a["seed"]),
        )


STAGES: dict[str, tuple[tuple[str, ...], dict[str, Any], Callable[..., Any]]] = {
    "greedy": ((), {}, _Builder.greedy),
    "dist": ((), {"seed": DEFAULT_SEED}, _Builder.dist),
    "top_k": (("k",), {}, _Builder.top_k),
    "top_p": (("p",), {"min_keep": 1}, _Builder.top_p),
    "min_p": (("p",), {"min_keep": 1}, _Builder.min_p),
    "typical": (("p",), {"min_keep": 1}, _Builder.typical),
    "temp": (("t",), {}, _Builder.temp),
    "temp_ext": (("t", "delta", "exponent"), {}, _Builder.temp_ext),
    "xtc": (("p", "t"), {"min_keep": 1, "seed": DEFAULT_SEED}, _Builder.xtc),
    "top_n_sigma": (("n",), {}, _Builder.top_n_sigma),
    "mirostat": (("tau", "eta"), {"m": 100, "seed": DEFAULT_SEED}, _Builder.mirostat),
    "mirostat_v2": (("tau", "eta"), {"seed": DEFAULT_SEED}, _Builder.mirostat_v2),
    "grammar": (
        ("grammar",),
        {"root": "root", "trigger_patterns": (), "trigger_tokens": ()},
        _Builder.grammar,
    ),
    "penalties": (
        (),
        {"last_n": 64, "repeat": 1.0, "freq": 0.0, "present": 0.0},
        _Builder.penalties,
    ),
    "dry": (
        ("multiplier",),
        {
            "base": 1.75,
            "allowed_length": 2,
            "penalty_last_n": -1,
            "seq_breakers": ("\n", ":", '"', "*"),
        },
        _Builder.dry,
    ),
    "logit_bias": (("bias",), {}, _Builder.logit_bias),
    "infill": ((), {}, _Builder.infill),
    "adaptive_p": (("target",), {"decay": 0.9, "seed": DEFAULT_SEED}, _Builder.adaptive_p),
}
"""Stage name -> (required options, optional options with defaults, constructor)."""


class SamplerChain(Owner):
    """A sampler chain for ``model`` built from ``[(stage, {options}), ...]``.

    Stages run in order; the chain should end with a selecting stage (``greedy``, ``dist``,
    ``mirostat``, ``mirostat_v2``, ``adaptive_p``). An invalid grammar raises
    ``GrammarError``. Example::

        SamplerChain(model, [("top_k", {"k": 40}), ("temp", {"t": 0.7}), ("dist", {"seed": 1})])
    """

    _kind = "SamplerChain"

    def __init__(
        self,
        model: LlamaModel,
        stages: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        no_perf: bool = True,
    ) -> None:
        if not isinstance(model, LlamaModel):
            raise TypeError(f"model must be a LlamaModel, got {type(model).__name__}")
        model._handle()
        if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence) or not stages:
            raise ValueError("stages must be a non-empty list of (name, options) pairs")
        self.model = model
        self._ffi, self._lib = model._ffi, model._lib
        params = self._lib.llama_sampler_chain_default_params()
        params.no_perf = bool(no_perf)
        chain = self._lib.llama_sampler_chain_init(params)
        self._own(chain, _free_sampler, self._lib, chain, model)
        self.stages: list[str] = []
        builder = _Builder(self)
        try:
            for item in stages:
                if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                    raise ValueError(f"each stage must be a (name, options) pair, got {item!r}")
                name, args = item
                if not isinstance(args, Mapping):
                    raise ValueError(f"sampler {name}: options must be a mapping, got {args!r}")
                smpl = builder.build(name, args)
                self._lib.llama_sampler_chain_add(chain, smpl)  # the chain owns it now
                self.stages.append(name)
        except BaseException:
            self.close()
            raise
        model._attach(self)

    def sample(self, ctx: LlamaContext, idx: int = -1) -> int:
        """Sample (and accept) a token from output ``idx`` of the last decode of ``ctx``."""
        ptr = self._ptr
        cptr = ctx._ptr
        if ptr is None:
            raise self._closed()
        if cptr is None:
            raise ctx._closed()
        return int(self._lib.llama_sampler_sample(ptr, cptr, idx))

    def accept(self, token: int) -> None:
        """Feed a token to stateful stages (penalties, grammar) without sampling."""
        self._lib.llama_sampler_accept(self._handle(), token)

    def reset(self) -> None:
        """Reset stateful stages (penalty history, grammar state)."""
        self._lib.llama_sampler_reset(self._handle())

    @property
    def seed(self) -> int:
        """The seed used by the selecting stage (``0xFFFFFFFF`` if none)."""
        return int(self._lib.llama_sampler_get_seed(self._handle()))

    def perf(self) -> dict[str, float]:
        """Sampling time and count (only with ``no_perf=False``)."""
        data = self._lib.llama_perf_sampler(self._handle())
        return {"t_sample_ms": data.t_sample_ms, "n_sample": data.n_sample}

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else " > ".join(self.stages)
        return f"<SamplerChain {state}>"
