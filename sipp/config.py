"""Native runtime configuration for local endpoints: ``NativeRuntimeConfig`` and its groups.

Every group is a frozen, keyword-only dataclass whose fields default to ``None``, meaning
"use the default". Values are checked when the object is built; a bad value raises
:class:`~sipp.errors.ConfigurationError` naming the full field path, e.g.
``"context.n_ctx must be a positive integer, got -5"``. Lists are stored as tuples, so
configs are immutable and hashable.

``NativeRuntimeConfig.resolve()`` applies the defaults and normalizations and returns a
:class:`ResolvedRuntimeConfig` with concrete values; a field left ``None`` there means
"the libllama / GGUF default" (e.g. ``n_ctx`` from the model's training context).

Plain dicts are accepted wherever a group is expected (``context={"n_ctx": 2048}``) and
:meth:`NativeRuntimeConfig.from_dict` reads the snake_case nested table used by the gateway
TOML ``runtime`` key; unknown keys are rejected with their path. :meth:`to_dict` writes the
same shape back (only the fields that were set).

Annotations describe the stored value. At run time a few convenient inputs are also
accepted and normalized: a dict for any group, ``{"count": n}`` for ``gpu_layers``, a
``{token_id: bias}`` dict for ``logit_bias``, a path object for ``projector_path``, and
lists wherever a tuple is stored.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, TypeVar, get_args

from sipp.errors import ConfigurationError

__all__ = [
    "DEFAULT_CONTEXT_KEY",
    "DEFAULT_MAX_QUEUED_REQUESTS",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_SAMPLERS",
    "CacheMode",
    "CacheRuntimeConfig",
    "ContextRuntimeConfig",
    "FlashAttention",
    "GpuLayers",
    "KvCacheType",
    "ModelPlacementConfig",
    "MultimodalRuntimeConfig",
    "NativeRuntimeConfig",
    "ObservabilityRuntimeConfig",
    "PoolingType",
    "ResidencyRuntimeConfig",
    "ResolvedCacheConfig",
    "ResolvedCacheMode",
    "ResolvedContextConfig",
    "ResolvedMultimodalConfig",
    "ResolvedObservabilityConfig",
    "ResolvedPlacementConfig",
    "ResolvedResidencyConfig",
    "ResolvedRuntimeConfig",
    "ResolvedSamplingConfig",
    "ResolvedSchedulerConfig",
    "ResolvedSchedulerPolicy",
    "RopeScaling",
    "SamplerStage",
    "SamplingRuntimeConfig",
    "SamplingRuntimeOverride",
    "SchedulerMode",
    "SchedulerOrder",
    "SchedulerPolicyConfig",
    "SchedulerRuntimeConfig",
    "SplitMode",
]

DEFAULT_CONTEXT_KEY: Final = "default"
"""The ``context_key`` of text requests that do not set one (so, in ``context_key`` cache
mode, requests without a key reuse each other's KV under this key)."""
DEFAULT_MAX_TOKENS: Final = 64
"""Generated-token limit of text requests that do not set ``max_tokens``."""
DEFAULT_MAX_QUEUED_REQUESTS: Final = 256
"""Queue bound per loaded model when ``scheduler.max_queued_requests`` is not set."""

_MIB: Final = 1024 * 1024
_INT32_MAX: Final = 2**31 - 1
_UINT32_MAX: Final = 2**32 - 1
_FLOAT32_MAX: Final = 3.4028234663852886e38
_MAX_PARALLEL_SEQUENCES: Final = 256  # libllama's llama_max_parallel_sequences()
_MAX_THREADS: Final = 512  # GGML_MAX_N_THREADS; 65536 threads segfault at the first decode

# --- enumerations -------------------------------------------------------------------------

GpuLayers = Literal["auto", "all"] | int
"""Layers offloaded to GPUs: ``"auto"``, ``"all"`` or a count (``{"count": n}`` accepted)."""
SplitMode = Literal["none", "layer", "row", "tensor"]
FlashAttention = Literal["auto", "enabled", "disabled"]
KvCacheType = Literal["f16", "f32", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
RopeScaling = Literal["none", "linear", "yarn"]
PoolingType = Literal["unspecified", "none", "mean", "cls", "last", "rank"]
SamplerStage = Literal[
    "dry",
    "top_k",
    "typical_p",
    "top_p",
    "top_n_sigma",
    "min_p",
    "xtc",
    "temperature",
    "infill",
    "penalties",
    "adaptive_p",
]
SchedulerMode = Literal["latency_first", "balanced", "throughput_first"]
SchedulerOrder = Literal["fifo", "priority"]
CacheMode = Literal[
    "disabled",
    "live_slot_prefix",
    "state_snapshot",
    "live_slot_and_snapshot",
    "off",
    "context_key",
]
"""KV reuse between requests (``off`` is an alias of ``disabled``).

- ``disabled`` / ``off``: no reuse; every request prefills its whole prompt.
- ``context_key``: a finished request's KV stays in its slot for its ``context_key``; the
  next request with the same key reuses the longest common prefix. No sharing across keys.
- ``live_slot_prefix`` (default): as ``context_key``, and a request may also copy the longest
  common prefix held by any live slot, whatever its key.
- ``state_snapshot``: no live reuse; prefix KV states are saved to host memory every
  ``snapshot_interval_tokens`` and restored for a matching prompt (bounded by
  ``max_snapshot_entries`` and ``max_snapshot_bytes``).
- ``live_slot_and_snapshot``: both live-slot reuse and snapshots.
"""
ResolvedCacheMode = Literal[
    "disabled", "live_slot_prefix", "state_snapshot", "live_slot_and_snapshot", "context_key"
]

DEFAULT_SAMPLERS: Final[tuple[SamplerStage, ...]] = ("top_k", "penalties", "top_p", "temperature")
"""Sampler stages applied, in order, when ``sampling.samplers`` is not set."""

# --- value checks -------------------------------------------------------------------------

_Rule = Callable[[object, str], object]
_RULE: Final = "sipp.rule"


def _show(value: object) -> str:
    """A short description of ``value`` for error messages."""
    if value is None or isinstance(value, bool | int | float | str):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


def _as_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def _int(lo: int, hi: int = _INT32_MAX, *, note: str = "", what: str = "") -> _Rule:
    """An integer in ``[lo, hi]``; ``note`` explains special values such as -1."""
    if not what:
        if lo == 1:
            what = "a positive integer"
        elif lo == 0:
            what = "a non-negative integer"
        else:
            what = f"an integer >= {lo}"
    what += note

    def check(value: object, path: str) -> int:
        number = _as_int(value)
        if number is None or number < lo:
            raise ConfigurationError(f"{path} must be {what}, got {_show(value)}")
        if number > hi:
            raise ConfigurationError(f"{path} must be at most {hi}, got {number}")
        return number

    return check


def _float(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    allow_neg_inf: bool = False,
) -> _Rule:
    """A finite number (32-bit float range) within the given bounds."""
    if lo is not None and hi is not None:
        what = f"a finite number in [{_num(lo)}, {_num(hi)}]"
    elif lo is not None:
        what = f"a finite number {'>' if lo_open else '>='} {_num(lo)}"
    else:
        what = "a finite number"
    if allow_neg_inf:
        what += " or -inf"

    def check(value: object, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigurationError(f"{path} must be {what}, got {_show(value)}")
        number = float(value)
        if allow_neg_inf and number == -math.inf:
            return number
        if (
            not math.isfinite(number)
            or abs(number) > _FLOAT32_MAX
            or (lo is not None and (number <= lo if lo_open else number < lo))
            or (hi is not None and number > hi)
        ):
            raise ConfigurationError(f"{path} must be {what}, got {_show(value)}")
        return number

    return check


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{path} must be a bool (true or false), got {_show(value)}")
    return value


def _text(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{path} must be a non-empty string, got {_show(value)}")
    return value


def _breaker(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{path} must be a non-empty string, got {_show(value)}")
    return value


def _path(value: object, path: str) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{path} must be a non-empty file path, got {_show(value)}")
    return value


def _choice(options: tuple[str, ...]) -> _Rule:
    def check(value: object, path: str) -> str:
        if not isinstance(value, str) or value not in options:
            raise ConfigurationError(
                f"{path} must be one of: {', '.join(options)}; got {_show(value)}"
            )
        return value

    return check


def _list(
    item: _Rule, what: str, *, unique: bool = False
) -> Callable[[object, str], tuple[object, ...]]:
    """A list (or tuple) of items, each checked by ``item``; stored as a tuple."""

    def check(value: object, path: str) -> tuple[object, ...]:
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, list | tuple):
            raise ConfigurationError(f"{path} must be a list of {what}, got {_show(value)}")
        items = tuple(item(entry, f"{path}[{index}]") for index, entry in enumerate(value))
        if unique:
            for index, entry in enumerate(items):
                if entry in items[:index]:
                    raise ConfigurationError(f"{path} lists {_show(entry)} more than once")
        return items

    return check


def _gpu_layers(value: object, path: str) -> str | int:
    expected = f'{path} must be "auto", "all", a layer count or {{"count": int}}'
    if isinstance(value, str):
        if value in ("auto", "all"):
            return value
        raise ConfigurationError(f"{expected}; got {_show(value)}")
    if isinstance(value, Mapping):
        if set(value) != {"count"}:
            keys = ", ".join(sorted(repr(key) for key in value))
            raise ConfigurationError(f"{expected}; got a dict with keys {keys}")
        value = value["count"]
    count = _as_int(value)
    if count is None:
        raise ConfigurationError(f"{expected}; got {_show(value)}")
    if count < 0:
        raise ConfigurationError(
            f'{path} count must be a non-negative integer (use "all" for every layer), got {count}'
        )
    return count


def _choice_int(options: tuple[int, ...]) -> _Rule:
    def check(value: object, path: str) -> int:
        number = _as_int(value)
        if number is None or number not in options:
            shown = ", ".join(str(option) for option in options)
            raise ConfigurationError(f"{path} must be one of: {shown}; got {_show(value)}")
        return number

    return check


def _logit_bias_entry(value: object, path: str) -> tuple[int, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigurationError(f"{path} must be a [token_id, bias] pair, got {_show(value)}")
    token = _int(0)(value[0], f"{path}[0]")
    bias = _float(allow_neg_inf=True)(value[1], f"{path}[1]")
    assert isinstance(token, int) and isinstance(bias, float)
    return token, bias


def _logit_bias(value: object, path: str) -> tuple[object, ...]:
    if isinstance(value, Mapping):
        value = list(value.items())
    return _list(_logit_bias_entry, "[token_id, bias] pairs")(value, path)


_G = TypeVar("_G", bound="_Group")


def _group(cls: type[_Group]) -> _Rule:
    """A nested group: an instance of ``cls`` or a dict converted with ``cls.from_dict``."""

    def check(value: object, path: str) -> object:
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        raise ConfigurationError(f"{path} must be a {cls.__name__} or a dict, got {_show(value)}")

    return check


def _rule(rule: _Rule) -> dict[str, _Rule]:
    """Field metadata holding the check applied to the field's value when it is set."""
    return {_RULE: rule}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _differs(value: object, spec: Field[Any]) -> bool:
    """Whether a stored field value differs from the field's default (set by the user)."""
    if isinstance(value, _Group):
        return value != type(value)()
    return value is not None and value != spec.default


def _plain(value: object) -> object:
    """A JSON/TOML-compatible copy of a stored value (tuples become lists)."""
    if isinstance(value, _Group):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


# --- groups -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False)
class _Group:
    """Shared behaviour of config groups: checks in ``__post_init__``, dict conversion."""

    _PATH: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None:  # "use the default": groups and flags have a concrete one
                factory = spec.default_factory
                if callable(factory):
                    object.__setattr__(self, spec.name, factory())
                elif spec.default is not MISSING and spec.default is not None:
                    object.__setattr__(self, spec.name, spec.default)
                continue
            rule: _Rule = spec.metadata[_RULE]
            object.__setattr__(self, spec.name, rule(value, _join(self._PATH, spec.name)))
        self._check_together()

    def _check_together(self) -> None:
        """Checks that involve more than one field; run after each field was checked."""

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{spec.name}={getattr(self, spec.name)!r}"
            for spec in fields(self)
            if _differs(getattr(self, spec.name), spec)
        )
        return f"{type(self).__name__}({shown})"

    @classmethod
    def from_dict(cls: type[_G], data: Mapping[str, Any]) -> _G:
        """Build from a snake_case dict (nested dicts for groups); unknown keys are errors."""
        where = cls._PATH or "runtime config"
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{where} must be a dict, got {_show(data)}")
        names = [spec.name for spec in fields(cls)]
        for key in data:
            if not isinstance(key, str):
                raise ConfigurationError(f"{where} keys must be strings, got {_show(key)}")
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"expected one of: {', '.join(names)}"
                )
                raise ConfigurationError(f"unknown key {key!r} in {where} ({hint})")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """The fields that differ from their defaults, as a JSON/TOML-compatible dict."""
        out: dict[str, Any] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if not _differs(value, spec):
                continue
            if isinstance(value, _Group):
                out[spec.name] = value.to_dict()
            elif spec.name == "gpu_layers" and isinstance(value, int):
                out[spec.name] = {"count": value}
            else:
                out[spec.name] = _plain(value)
        return out


@dataclass(frozen=True, kw_only=True, repr=False)
class ModelPlacementConfig(_Group):
    """Where the model's weights live: devices, GPU offload, splitting, mmap and mlock.

    Every field maps to libllama's ``llama_model_params``; "offload devices" below are the
    GPUs the model uses (``devices``, or by default every discrete GPU the backend sees).

    - ``devices``: offload devices by ggml name (``sipp.backend_info()["devices"]``, e.g.
      ``"CUDA0"``); ``["none"]`` offloads nothing. An unknown name, or the CPU (it holds
      whatever is not offloaded), is a ``ConfigurationError`` at load.
    - ``gpu_layers``: ``"auto"`` (default), ``"all"``, a layer count, or ``{"count": n}``.
    - ``split_mode`` (default ``layer``): ``none`` (the whole model on ``main_gpu``),
      ``layer``, ``row``, ``tensor`` (every tensor across the offload devices; refused at
      load when there is no GPU). With no offload device there is nothing to split: the
      other modes then behave alike.
    - ``main_gpu``: index into the offload devices of the one that holds the model with
      ``split_mode="none"`` (libllama's default 0); out of range is refused at load. With
      other split modes, and with no offload device (the CPU backend), it has no effect.
    - ``tensor_split``: each offload device's share of the model (e.g. ``[3, 1]``); more
      entries than offload devices (any entry on the CPU backend) is refused at load.
    - ``use_mmap`` / ``use_mlock``: map the file (default) / lock the weights in RAM.
    - ``fit_params``, ``fit_params_min_ctx``, ``fit_params_target_bytes``: refused (a
      ``ConfigurationError`` when set): shrinking settings to fit device memory needs
      ``llama_params_fit``, which the pinned llama.cpp library does not provide; set
      ``gpu_layers`` and ``context.n_ctx`` yourself.
    - ``check_tensors``: validate tensor data while loading.
    - ``no_extra_bufts``: no weight-repacking buffer types (default: repack, except on AMX
      CPUs where the pinned ggml crashes).
    - ``no_host``: keep CPU-resident weights out of the GPU's pinned host buffer (so extra
      buffer types can be used). Without an offload device there is no such buffer and it
      has no effect.
    """

    _PATH: ClassVar[str] = "placement"

    devices: Sequence[str] | None = field(
        default=None, metadata=_rule(_list(_text, "device names", unique=True))
    )
    gpu_layers: GpuLayers | None = field(default=None, metadata=_rule(_gpu_layers))
    split_mode: SplitMode | None = field(default=None, metadata=_rule(_choice(get_args(SplitMode))))
    main_gpu: int | None = field(default=None, metadata=_rule(_int(0)))
    tensor_split: Sequence[float] | None = field(
        default=None, metadata=_rule(_list(_float(0.0), "non-negative numbers"))
    )
    use_mmap: bool | None = field(default=None, metadata=_rule(_bool))
    use_mlock: bool | None = field(default=None, metadata=_rule(_bool))
    fit_params: bool | None = field(default=None, metadata=_rule(_bool))
    fit_params_min_ctx: int | None = field(default=None, metadata=_rule(_int(1, _UINT32_MAX)))
    fit_params_target_bytes: Sequence[int] | None = field(
        default=None, metadata=_rule(_list(_int(0, 2**63 - 1), "non-negative byte counts"))
    )
    check_tensors: bool | None = field(default=None, metadata=_rule(_bool))
    no_extra_bufts: bool | None = field(default=None, metadata=_rule(_bool))
    no_host: bool | None = field(default=None, metadata=_rule(_bool))

    def _check_together(self) -> None:
        unavailable = (
            "fitting settings to device memory needs llama_params_fit, which the pinned "
            "llama.cpp library does not provide; set gpu_layers and context.n_ctx instead"
        )
        if self.fit_params:
            raise ConfigurationError(f"placement.fit_params is not supported: {unavailable}")
        for name in ("fit_params_min_ctx", "fit_params_target_bytes"):
            value = getattr(self, name)
            if value is not None and value != ():
                raise ConfigurationError(
                    f"placement.{name} is not supported (it only tunes fit_params): "
                    f"{unavailable}"
                )

    def resolve(self) -> ResolvedPlacementConfig:
        """Apply the defaults (``gpu_layers="auto"``, ``split_mode="layer"``, mmap on)."""
        return ResolvedPlacementConfig(
            devices=tuple(self.devices or ()),
            gpu_layers=_pick(self.gpu_layers, "auto"),
            split_mode=_pick(self.split_mode, "layer"),
            main_gpu=self.main_gpu,
            tensor_split=tuple(self.tensor_split or ()),
            use_mmap=_pick(self.use_mmap, True),
            use_mlock=_pick(self.use_mlock, False),
            fit_params=_pick(self.fit_params, False),
            fit_params_min_ctx=self.fit_params_min_ctx,
            fit_params_target_bytes=tuple(self.fit_params_target_bytes or ()),
            check_tensors=_pick(self.check_tensors, False),
            no_extra_bufts=_pick(self.no_extra_bufts, False),
            no_host=_pick(self.no_host, False),
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class ContextRuntimeConfig(_Group):
    """The llama context: window, batch sizes, parallel slots, threads, attention and KV.

    ``n_parallel`` is the number of slots (sequences) served at once (default 1).
    ``n_ctx`` is the whole KV window shared by the slots; unset, it is
    ``min(training context, 4096) * n_parallel``. ``n_batch`` defaults to 2048 and
    ``n_ubatch`` to ``min(512, n_batch)`` (embedding and encoder models use one ubatch of
    ``n_batch``); threads default to libllama's. ``embeddings`` is forced on for
    encoder-only models; ``pooling`` defaults to the GGUF's pooling type.

    ``warmup`` (default True) runs BOS/EOS through the model once at load (then clears the
    KV memory and the perf counters), so the first request does not pay for paging in the
    weights and allocating compute buffers; False loads faster.

    RoPE (all map to ``llama_context_params``; unset = the GGUF's values):
    ``rope_scaling`` (``none`` also forces a frequency scale of 1), ``rope_freq_base``,
    ``rope_freq_scale`` (e.g. 0.25 stretches positions 4x), ``yarn_orig_ctx`` (the original
    training context YaRN scales from), ``yarn_ext_factor`` (extrapolation mix; unset =
    1 with ``yarn`` scaling, else 0), ``yarn_attn_factor`` (libllama recomputes it from the
    frequency scale whenever ``yarn_ext_factor`` is not 0), ``yarn_beta_fast``,
    ``yarn_beta_slow``.
    """

    _PATH: ClassVar[str] = "context"

    n_ctx: int | None = field(default=None, metadata=_rule(_int(1, _UINT32_MAX)))
    n_batch: int | None = field(default=None, metadata=_rule(_int(1, _UINT32_MAX)))
    n_ubatch: int | None = field(default=None, metadata=_rule(_int(1, _UINT32_MAX)))
    n_parallel: int | None = field(default=None, metadata=_rule(_int(1, _MAX_PARALLEL_SEQUENCES)))
    n_threads: int | None = field(default=None, metadata=_rule(_int(1, _MAX_THREADS)))
    n_threads_batch: int | None = field(default=None, metadata=_rule(_int(1, _MAX_THREADS)))
    flash_attention: FlashAttention | None = field(
        default=None, metadata=_rule(_choice(get_args(FlashAttention)))
    )
    kv_unified: bool | None = field(default=None, metadata=_rule(_bool))
    cache_type_k: KvCacheType | None = field(
        default=None, metadata=_rule(_choice(get_args(KvCacheType)))
    )
    cache_type_v: KvCacheType | None = field(
        default=None, metadata=_rule(_choice(get_args(KvCacheType)))
    )
    offload_kqv: bool | None = field(default=None, metadata=_rule(_bool))
    op_offload: bool | None = field(default=None, metadata=_rule(_bool))
    swa_full: bool | None = field(default=None, metadata=_rule(_bool))
    warmup: bool | None = field(default=None, metadata=_rule(_bool))
    rope_scaling: RopeScaling | None = field(
        default=None, metadata=_rule(_choice(get_args(RopeScaling)))
    )
    rope_freq_base: float | None = field(default=None, metadata=_rule(_float(0.0, lo_open=True)))
    rope_freq_scale: float | None = field(default=None, metadata=_rule(_float(0.0, lo_open=True)))
    yarn_orig_ctx: int | None = field(default=None, metadata=_rule(_int(1, _UINT32_MAX)))
    yarn_ext_factor: float | None = field(default=None, metadata=_rule(_float(0.0)))
    yarn_attn_factor: float | None = field(default=None, metadata=_rule(_float(0.0, lo_open=True)))
    yarn_beta_fast: float | None = field(default=None, metadata=_rule(_float(0.0)))
    yarn_beta_slow: float | None = field(default=None, metadata=_rule(_float(0.0)))
    embeddings: bool | None = field(default=None, metadata=_rule(_bool))
    pooling: PoolingType | None = field(
        default=None, metadata=_rule(_choice(get_args(PoolingType)))
    )

    def _check_together(self) -> None:
        if self.n_batch is not None and self.n_ubatch is not None and self.n_ubatch > self.n_batch:
            raise ConfigurationError(
                f"context.n_ubatch ({self.n_ubatch}) must not exceed context.n_batch "
                f"({self.n_batch})"
            )

    def resolve(self) -> ResolvedContextConfig:
        """Apply the defaults (``n_parallel=1``, flash attention ``auto``, f16 KV, ...)."""
        return ResolvedContextConfig(
            n_ctx=self.n_ctx,
            n_batch=self.n_batch,
            n_ubatch=self.n_ubatch,
            n_parallel=_pick(self.n_parallel, 1),
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads_batch,
            flash_attention=_pick(self.flash_attention, "auto"),
            kv_unified=self.kv_unified,
            cache_type_k=_pick(self.cache_type_k, "f16"),
            cache_type_v=_pick(self.cache_type_v, "f16"),
            offload_kqv=_pick(self.offload_kqv, True),
            op_offload=_pick(self.op_offload, True),
            swa_full=_pick(self.swa_full, False),
            warmup=_pick(self.warmup, True),
            rope_scaling=self.rope_scaling,
            rope_freq_base=self.rope_freq_base,
            rope_freq_scale=self.rope_freq_scale,
            yarn_orig_ctx=self.yarn_orig_ctx,
            yarn_ext_factor=self.yarn_ext_factor,
            yarn_attn_factor=self.yarn_attn_factor,
            yarn_beta_fast=self.yarn_beta_fast,
            yarn_beta_slow=self.yarn_beta_slow,
            embeddings=self.embeddings,
            pooling=_pick(self.pooling, "unspecified"),
        )


def _order(value: object, path: str) -> object:
    order = _choice(get_args(SchedulerOrder))(value, path)
    if order == "priority":
        raise ConfigurationError(
            f"{path}='priority' is not supported: no request option sets a priority "
            "(LocalTextOptions has no priority field), so every request would tie; use 'fifo'"
        )
    return order


def _samplers(value: object, path: str) -> tuple[object, ...]:
    stages = _list(_choice(get_args(SamplerStage)), "sampler stage names", unique=True)(value, path)
    if "adaptive_p" in stages and stages[-1] != "adaptive_p":
        raise ConfigurationError(
            f"{path}: 'adaptive_p' picks the token itself and must be the last stage"
        )
    return stages


@dataclass(frozen=True, kw_only=True, repr=False)
class SamplingRuntimeConfig(_Group):
    """Default sampling of a local model; also a per-request override (same class).

    As an override (``LocalTextOptions(sampling=...)``) only the fields it sets replace the
    runtime's values. Sipp's defaults: ``samplers`` top_k → penalties → top_p → temperature,
    ``top_k=40``, ``top_p=0.8``, ``temperature=0.7``, ``repeat_last_n=64``,
    ``repeat_penalty=1.05``. ``seed`` 4294967295 (or unset) means a random seed.
    ``repeat_last_n`` / ``dry_penalty_last_n`` of -1 mean the whole context.
    ``logit_bias`` takes ``[token_id, bias]`` pairs (or a ``{token_id: bias}`` dict);
    a bias of ``-inf`` bans the token. ``temperature=0`` is greedy: the argmax after
    grammar and logit bias, and after the ``penalties`` / ``dry`` stages only when they
    differ from Sipp's defaults (the default repeat_penalty 1.05 applies when sampling).

    ``n_probs`` > 0 adds ``logprobs`` to text responses: per generated token, its id, text
    and log-probability and the ``n_probs`` most likely tokens with theirs, under the
    model's own distribution (softmax of the raw logits, before sampler stages).
    ``grammar_lazy`` makes a request's grammar (``grammar`` / ``json_schema``) lazy: output
    is free until one of ``preserved_tokens`` (the trigger token ids) is generated, and the
    grammar constrains from that token on. A lazy grammar needs ``preserved_tokens``, and
    ``preserved_tokens`` need ``grammar_lazy`` (either alone is an error when a request has
    a grammar); requests without a grammar ignore both.
    ``backend_sampling`` (default True): sampler chains always run in libllama's C samplers
    on the host, right after each decode. For a model on the CPU that is the backend; for a
    model offloaded to a GPU an explicit ``True`` (in-graph GPU sampling, experimental in
    the pinned llama.cpp and not implemented here) is refused at load and per request.
    """

    _PATH: ClassVar[str] = "sampling"

    samplers: Sequence[SamplerStage] | None = field(default=None, metadata=_rule(_samplers))
    seed: int | None = field(
        default=None,
        metadata=_rule(
            _int(0, _UINT32_MAX, what=f"an unsigned 32-bit integer in [0, {_UINT32_MAX}]")
        ),
    )
    top_k: int | None = field(default=None, metadata=_rule(_int(0)))
    top_p: float | None = field(default=None, metadata=_rule(_float(0.0, 1.0)))
    min_p: float | None = field(default=None, metadata=_rule(_float(0.0, 1.0)))
    typical_p: float | None = field(default=None, metadata=_rule(_float(0.0, 1.0)))
    xtc_probability: float | None = field(default=None, metadata=_rule(_float(0.0, 1.0)))
    xtc_threshold: float | None = field(default=None, metadata=_rule(_float(0.0, 1.0)))
    top_n_sigma: float | None = field(default=None, metadata=_rule(_float(0.0)))
    temperature: float | None = field(default=None, metadata=_rule(_float(0.0)))
    dynatemp_range: float | None = field(default=None, metadata=_rule(_float(0.0)))
    dynatemp_exponent: float | None = field(default=None, metadata=_rule(_float(0.0)))
    adaptive_target: float | None = field(default=None, metadata=_rule(_float(0.0, 1.0)))
    adaptive_decay: float | None = field(default=None, metadata=_rule(_float(0.0, 0.99)))
    repeat_last_n: int | None = field(
        default=None, metadata=_rule(_int(-1, note=" (-1 means the whole context)"))
    )
    repeat_penalty: float | None = field(default=None, metadata=_rule(_float(0.0, lo_open=True)))
    frequency_penalty: float | None = field(default=None, metadata=_rule(_float()))
    presence_penalty: float | None = field(default=None, metadata=_rule(_float()))
    dry_multiplier: float | None = field(default=None, metadata=_rule(_float(0.0)))
    dry_base: float | None = field(default=None, metadata=_rule(_float(0.0, lo_open=True)))
    dry_allowed_length: int | None = field(default=None, metadata=_rule(_int(0)))
    dry_penalty_last_n: int | None = field(
        default=None, metadata=_rule(_int(-1, note=" (-1 means the whole context)"))
    )
    dry_sequence_breakers: Sequence[str] | None = field(
        default=None, metadata=_rule(_list(_breaker, "non-empty strings"))
    )
    mirostat: Literal[0, 1, 2] | None = field(default=None, metadata=_rule(_choice_int((0, 1, 2))))
    mirostat_tau: float | None = field(default=None, metadata=_rule(_float(0.0)))
    mirostat_eta: float | None = field(default=None, metadata=_rule(_float(0.0)))
    min_keep: int | None = field(default=None, metadata=_rule(_int(0)))
    n_probs: int | None = field(default=None, metadata=_rule(_int(0)))
    logit_bias: Sequence[tuple[int, float]] | None = field(
        default=None, metadata=_rule(_logit_bias)
    )
    ignore_eos: bool | None = field(default=None, metadata=_rule(_bool))
    grammar_lazy: bool | None = field(default=None, metadata=_rule(_bool))
    preserved_tokens: Sequence[int] | None = field(
        default=None, metadata=_rule(_list(_int(0), "token ids", unique=True))
    )
    backend_sampling: bool | None = field(default=None, metadata=_rule(_bool))

    def is_empty(self) -> bool:
        """True when no field is set (an override that changes nothing)."""
        return all(getattr(self, spec.name) is None for spec in fields(self))

    def resolve(self) -> ResolvedSamplingConfig:
        """Apply Sipp's defaults, then libllama's for the stages Sipp leaves alone."""
        return _DEFAULT_SAMPLING.with_override(self)


SamplingRuntimeOverride = SamplingRuntimeConfig
"""A per-request sampling override: the same class as :class:`SamplingRuntimeConfig`."""


@dataclass(frozen=True, kw_only=True, repr=False)
class SchedulerPolicyConfig(_Group):
    """How each step's token budget (``n_batch``) is split between prefill and decode.

    ``mode`` (while prompts are prefilling): ``latency_first`` runs every decode token,
    ``balanced`` (default) runs every decode token but keeps at least one prefill token
    per step, ``throughput_first`` gives prefill up to three quarters of the budget.
    ``decode_token_reserve`` (default 1) is a floor, used by ``throughput_first`` only:
    the fewest decode tokens a step keeps while prompts prefill (the other modes already
    run every decode). ``enable_adaptive_prefill_chunking`` (default False) makes chunks
    follow decode pressure: while nothing is decoding a prompt prefills with the whole
    budget (``prefill_chunk_size`` is not applied); while requests are decoding, one step's
    prefill is capped at ``prefill_chunk_size`` tokens (``max(16, n_batch // 8)`` when that
    is 0) in all, shared fairly. ``order``: ``fifo`` (the default and only value accepted)
    admits queued requests in arrival order; ``priority`` is refused because no request
    option carries a priority.
    """

    _PATH: ClassVar[str] = "scheduler.policy"

    mode: SchedulerMode | None = field(
        default=None, metadata=_rule(_choice(get_args(SchedulerMode)))
    )
    decode_token_reserve: int | None = field(default=None, metadata=_rule(_int(0)))
    enable_adaptive_prefill_chunking: bool | None = field(default=None, metadata=_rule(_bool))
    order: SchedulerOrder | None = field(default=None, metadata=_rule(_order))

    def resolve(self) -> ResolvedSchedulerPolicy:
        """Apply the defaults (balanced, reserve 1, no adaptive chunking, FIFO)."""
        return ResolvedSchedulerPolicy(
            mode=_pick(self.mode, "balanced"),
            decode_token_reserve=_pick(self.decode_token_reserve, 1),
            enable_adaptive_prefill_chunking=_pick(self.enable_adaptive_prefill_chunking, False),
            order=_pick(self.order, "fifo"),
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class SchedulerRuntimeConfig(_Group):
    """Request scheduling: continuous batching, prefill chunks and the queue limits.

    ``continuous_batching`` (default True) admits a waiting request as soon as a slot is
    free, to run beside the others; False admits only while nothing is running: the
    requests waiting then start together and the next ones wait until all have finished.
    ``prefill_chunk_size`` caps prompt tokens per request per step (0 = no cap).
    ``max_running_requests`` (default ``context.n_parallel``) must not exceed
    ``context.n_parallel``. ``max_queued_requests`` (default 256) bounds the waiting queue;
    a request beyond it fails with a queue-full error.
    """

    _PATH: ClassVar[str] = "scheduler"

    continuous_batching: bool | None = field(default=None, metadata=_rule(_bool))
    policy: SchedulerPolicyConfig = field(
        default_factory=lambda: SchedulerPolicyConfig(),
        metadata={_RULE: _group(SchedulerPolicyConfig)},
    )
    prefill_chunk_size: int | None = field(default=None, metadata=_rule(_int(0)))
    max_running_requests: int | None = field(
        default=None, metadata=_rule(_int(1, _MAX_PARALLEL_SEQUENCES))
    )
    max_queued_requests: int | None = field(default=None, metadata=_rule(_int(1)))

    if TYPE_CHECKING:  # the generated __init__ also takes a dict for ``policy``

        def __init__(
            self,
            *,
            continuous_batching: bool | None = None,
            policy: SchedulerPolicyConfig | Mapping[str, Any] | None = None,
            prefill_chunk_size: int | None = None,
            max_running_requests: int | None = None,
            max_queued_requests: int | None = None,
        ) -> None: ...

    def resolve(self, *, n_parallel: int = 1) -> ResolvedSchedulerConfig:
        """Apply the defaults; ``n_parallel`` is the context's slot count."""
        return ResolvedSchedulerConfig(
            continuous_batching=_pick(self.continuous_batching, True),
            policy=self.policy.resolve(),
            prefill_chunk_size=_pick(self.prefill_chunk_size, 0),
            max_running_requests=_pick(self.max_running_requests, n_parallel),
            max_queued_requests=_pick(self.max_queued_requests, DEFAULT_MAX_QUEUED_REQUESTS),
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class CacheRuntimeConfig(_Group):
    """KV reuse between requests; see :data:`CacheMode` for what each ``mode`` does.

    Context shift: when a generation's next token would not fit the per-slot context, the
    first ``retained_prefix_tokens`` tokens (default 100; live modes only, the other modes
    keep 0 as the original runtime did) stay, the older half of the rest is discarded and
    the tail is computed again at its new positions (nothing discardable clears the
    sequence down to its last token). Output, usage and stop strings are unaffected;
    ``local_stats["context_shifts"]`` counts shifts. Only a prompt that leaves no room to
    generate (or, with images, which never shift, prompt + ``max_tokens``) is refused.
    Snapshots: one every ``snapshot_interval_tokens`` (128), at most ``max_snapshot_entries``
    (32) and ``max_snapshot_bytes`` (256 MiB) in all.
    """

    _PATH: ClassVar[str] = "cache"

    mode: CacheMode | None = field(default=None, metadata=_rule(_choice(get_args(CacheMode))))
    retained_prefix_tokens: int | None = field(default=None, metadata=_rule(_int(0)))
    snapshot_interval_tokens: int | None = field(default=None, metadata=_rule(_int(1)))
    max_snapshot_entries: int | None = field(default=None, metadata=_rule(_int(1)))
    max_snapshot_bytes: int | None = field(default=None, metadata=_rule(_int(1, 2**63 - 1)))

    def resolve(self) -> ResolvedCacheConfig:
        """Apply the defaults; ``off`` becomes ``disabled``."""
        mode: ResolvedCacheMode
        if self.mode is None:
            mode = "live_slot_prefix"
        elif self.mode == "off":
            mode = "disabled"
        else:
            mode = self.mode
        live = mode in ("live_slot_prefix", "live_slot_and_snapshot", "context_key")
        return ResolvedCacheConfig(
            mode=mode,
            retained_prefix_tokens=_pick(self.retained_prefix_tokens, 100) if live else 0,
            snapshot_interval_tokens=_pick(self.snapshot_interval_tokens, 128),
            max_snapshot_entries=_pick(self.max_snapshot_entries, 32),
            max_snapshot_bytes=_pick(self.max_snapshot_bytes, 256 * _MIB),
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class MultimodalRuntimeConfig(_Group):
    """Vision: the mmproj file (``projector_path``), whether it runs on the GPU (default
    True) and the per-image token bounds."""

    _PATH: ClassVar[str] = "multimodal"

    projector_path: str | None = field(default=None, metadata=_rule(_path))
    use_gpu: bool | None = field(default=None, metadata=_rule(_bool))
    image_min_tokens: int | None = field(default=None, metadata=_rule(_int(0)))
    image_max_tokens: int | None = field(default=None, metadata=_rule(_int(0)))

    def _check_together(self) -> None:
        low, high = self.image_min_tokens, self.image_max_tokens
        if low is not None and high is not None and low > high:
            raise ConfigurationError(
                f"multimodal.image_min_tokens ({low}) must not exceed "
                f"multimodal.image_max_tokens ({high})"
            )

    def resolve(self) -> ResolvedMultimodalConfig:
        """Apply the defaults (``use_gpu=True``)."""
        return ResolvedMultimodalConfig(
            projector_path=self.projector_path,
            use_gpu=_pick(self.use_gpu, True),
            image_min_tokens=self.image_min_tokens,
            image_max_tokens=self.image_max_tokens,
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class ResidencyRuntimeConfig(_Group):
    """GPU residency within this process: models per device, leases, free-memory margin.

    A model that offloads to GPUs takes a lease on each device it uses before its weights
    load and returns it when it closes. ``max_gpu_models_per_device`` (default 1) caps the
    leases per device when ``require_gpu_lease`` (default True) is on; without it no lease
    is taken and there is no cap. ``gpu_memory_safety_margin_bytes`` (default 512 MiB; 0 =
    no check): the most free memory among the model's devices must be at least this.
    ``allow_cpu_models_while_gpu_loaded`` (default True): False refuses a CPU-only model
    while a GPU model holds a lease. A refusal is a ``ModelLoadError`` naming the field.
    A model kept on the CPU (the CPU backend, ``gpu_layers=0``, ``devices=["none"]``)
    takes no lease and is only ever refused by ``allow_cpu_models_while_gpu_loaded``; on
    the CPU backend, where no model offloads, the group therefore has no effect.
    """

    _PATH: ClassVar[str] = "residency"

    max_gpu_models_per_device: int | None = field(default=None, metadata=_rule(_int(1)))
    allow_cpu_models_while_gpu_loaded: bool | None = field(default=None, metadata=_rule(_bool))
    require_gpu_lease: bool | None = field(default=None, metadata=_rule(_bool))
    gpu_memory_safety_margin_bytes: int | None = field(
        default=None, metadata=_rule(_int(0, 2**63 - 1))
    )

    def resolve(self) -> ResolvedResidencyConfig:
        """Apply the defaults."""
        return ResolvedResidencyConfig(
            max_gpu_models_per_device=_pick(self.max_gpu_models_per_device, 1),
            allow_cpu_models_while_gpu_loaded=_pick(self.allow_cpu_models_while_gpu_loaded, True),
            require_gpu_lease=_pick(self.require_gpu_lease, True),
            gpu_memory_safety_margin_bytes=_pick(self.gpu_memory_safety_margin_bytes, 512 * _MIB),
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class ObservabilityRuntimeConfig(_Group):
    """Engine-level metrics (``runtime_metrics``) and backend profiling; both off by default.

    Per-request ``local_stats`` are always filled.
    """

    _PATH: ClassVar[str] = "observability"

    runtime_metrics: bool = field(default=False, metadata={_RULE: _bool})
    backend_profiling: bool = field(default=False, metadata={_RULE: _bool})

    def resolve(self) -> ResolvedObservabilityConfig:
        """The same two flags (they already have concrete defaults)."""
        return ResolvedObservabilityConfig(
            runtime_metrics=self.runtime_metrics, backend_profiling=self.backend_profiling
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class NativeRuntimeConfig(_Group):
    """Load-time settings of a local model, grouped by responsibility.

    Each group may be given as its class or as a dict (``context={"n_ctx": 2048}``); an
    unset group uses every default. ``resolve()`` gives the concrete values the engine uses.
    """

    _PATH: ClassVar[str] = ""

    placement: ModelPlacementConfig = field(
        default_factory=lambda: ModelPlacementConfig(),
        metadata={_RULE: _group(ModelPlacementConfig)},
    )
    context: ContextRuntimeConfig = field(
        default_factory=lambda: ContextRuntimeConfig(),
        metadata={_RULE: _group(ContextRuntimeConfig)},
    )
    sampling: SamplingRuntimeConfig = field(
        default_factory=lambda: SamplingRuntimeConfig(),
        metadata={_RULE: _group(SamplingRuntimeConfig)},
    )
    scheduler: SchedulerRuntimeConfig = field(
        default_factory=lambda: SchedulerRuntimeConfig(),
        metadata={_RULE: _group(SchedulerRuntimeConfig)},
    )
    cache: CacheRuntimeConfig = field(
        default_factory=lambda: CacheRuntimeConfig(),
        metadata={_RULE: _group(CacheRuntimeConfig)},
    )
    multimodal: MultimodalRuntimeConfig = field(
        default_factory=lambda: MultimodalRuntimeConfig(),
        metadata={_RULE: _group(MultimodalRuntimeConfig)},
    )
    residency: ResidencyRuntimeConfig = field(
        default_factory=lambda: ResidencyRuntimeConfig(),
        metadata={_RULE: _group(ResidencyRuntimeConfig)},
    )
    observability: ObservabilityRuntimeConfig = field(
        default_factory=lambda: ObservabilityRuntimeConfig(),
        metadata={_RULE: _group(ObservabilityRuntimeConfig)},
    )

    if TYPE_CHECKING:  # the generated __init__ also takes a dict for each group

        def __init__(
            self,
            *,
            placement: ModelPlacementConfig | Mapping[str, Any] | None = None,
            context: ContextRuntimeConfig | Mapping[str, Any] | None = None,
            sampling: SamplingRuntimeConfig | Mapping[str, Any] | None = None,
            scheduler: SchedulerRuntimeConfig | Mapping[str, Any] | None = None,
            cache: CacheRuntimeConfig | Mapping[str, Any] | None = None,
            multimodal: MultimodalRuntimeConfig | Mapping[str, Any] | None = None,
            residency: ResidencyRuntimeConfig | Mapping[str, Any] | None = None,
            observability: ObservabilityRuntimeConfig | Mapping[str, Any] | None = None,
        ) -> None: ...

    def _check_together(self) -> None:
        running = self.scheduler.max_running_requests
        slots = self.context.n_parallel
        if running is not None and running > (slots or 1):
            shown = f"{slots}" if slots is not None else "1, the default"
            raise ConfigurationError(
                f"scheduler.max_running_requests ({running}) must not exceed "
                f"context.n_parallel ({shown}); raise context.n_parallel to run more "
                "requests at once"
            )

    def resolve(self) -> ResolvedRuntimeConfig:
        """Every group with its defaults and normalizations applied."""
        context = self.context.resolve()
        return ResolvedRuntimeConfig(
            placement=self.placement.resolve(),
            context=context,
            sampling=self.sampling.resolve(),
            scheduler=self.scheduler.resolve(n_parallel=context.n_parallel),
            cache=self.cache.resolve(),
            multimodal=self.multimodal.resolve(),
            residency=self.residency.resolve(),
            observability=self.observability.resolve(),
        )


# --- resolved values ----------------------------------------------------------------------

_T = TypeVar("_T")


def _pick(value: _T | None, default: _T) -> _T:
    return default if value is None else value


@dataclass(frozen=True, kw_only=True)
class ResolvedPlacementConfig:
    """Placement with defaults applied; ``main_gpu`` / ``fit_params_min_ctx`` None = libllama's."""

    devices: tuple[str, ...]
    gpu_layers: GpuLayers
    split_mode: SplitMode
    main_gpu: int | None
    tensor_split: tuple[float, ...]
    use_mmap: bool
    use_mlock: bool
    fit_params: bool
    fit_params_min_ctx: int | None
    fit_params_target_bytes: tuple[int, ...]
    check_tensors: bool
    no_extra_bufts: bool
    no_host: bool


@dataclass(frozen=True, kw_only=True)
class ResolvedContextConfig:
    """Context settings with defaults applied; a None value means libllama / GGUF default."""

    n_ctx: int | None
    n_batch: int | None
    n_ubatch: int | None
    n_parallel: int
    n_threads: int | None
    n_threads_batch: int | None
    flash_attention: FlashAttention
    kv_unified: bool | None
    cache_type_k: KvCacheType
    cache_type_v: KvCacheType
    offload_kqv: bool
    op_offload: bool
    swa_full: bool
    warmup: bool
    rope_scaling: RopeScaling | None
    rope_freq_base: float | None
    rope_freq_scale: float | None
    yarn_orig_ctx: int | None
    yarn_ext_factor: float | None
    yarn_attn_factor: float | None
    yarn_beta_fast: float | None
    yarn_beta_slow: float | None
    embeddings: bool | None
    pooling: PoolingType


@dataclass(frozen=True, kw_only=True)
class ResolvedSamplingConfig:
    """Concrete sampling values for building a sampler chain.

    ``seed`` None = random; ``top_n_sigma`` / ``adaptive_target`` None = stage inactive.
    """

    samplers: tuple[SamplerStage, ...]
    seed: int | None
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    xtc_probability: float
    xtc_threshold: float
    top_n_sigma: float | None
    temperature: float
    dynatemp_range: float
    dynatemp_exponent: float
    adaptive_target: float | None
    adaptive_decay: float
    repeat_last_n: int
    repeat_penalty: float
    frequency_penalty: float
    presence_penalty: float
    dry_multiplier: float
    dry_base: float
    dry_allowed_length: int
    dry_penalty_last_n: int
    dry_sequence_breakers: tuple[str, ...]
    mirostat: Literal[0, 1, 2]
    mirostat_tau: float
    mirostat_eta: float
    min_keep: int
    n_probs: int
    logit_bias: tuple[tuple[int, float], ...]
    ignore_eos: bool
    grammar_lazy: bool
    preserved_tokens: tuple[int, ...]
    backend_sampling: bool

    def with_override(self, override: SamplingRuntimeConfig | None) -> ResolvedSamplingConfig:
        """These values with every field that ``override`` sets replaced."""
        if override is None:
            return self
        changes = {
            spec.name: getattr(override, spec.name)
            for spec in fields(override)
            if getattr(override, spec.name) is not None
        }
        return replace(self, **changes) if changes else self


_DEFAULT_SAMPLING: Final = ResolvedSamplingConfig(
    samplers=DEFAULT_SAMPLERS,
    seed=None,
    top_k=40,
    top_p=0.8,
    min_p=0.05,
    typical_p=1.0,
    xtc_probability=0.0,
    xtc_threshold=0.1,
    top_n_sigma=None,
    temperature=0.7,
    dynatemp_range=0.0,
    dynatemp_exponent=1.0,
    adaptive_target=None,
    adaptive_decay=0.9,
    repeat_last_n=64,
    repeat_penalty=1.05,
    frequency_penalty=0.0,
    presence_penalty=0.0,
    dry_multiplier=0.0,
    dry_base=1.75,
    dry_allowed_length=2,
    dry_penalty_last_n=64,
    dry_sequence_breakers=("\n", ":", '"', "*"),
    mirostat=0,
    mirostat_tau=5.0,
    mirostat_eta=0.1,
    min_keep=0,
    n_probs=0,
    logit_bias=(),
    ignore_eos=False,
    grammar_lazy=False,
    preserved_tokens=(),
    backend_sampling=True,
)


@dataclass(frozen=True, kw_only=True)
class ResolvedSchedulerPolicy:
    """Scheduler policy with defaults applied."""

    mode: SchedulerMode
    decode_token_reserve: int
    enable_adaptive_prefill_chunking: bool
    order: SchedulerOrder


@dataclass(frozen=True, kw_only=True)
class ResolvedSchedulerConfig:
    """Scheduler settings with defaults applied; the queue is always bounded."""

    continuous_batching: bool
    policy: ResolvedSchedulerPolicy
    prefill_chunk_size: int
    max_running_requests: int
    max_queued_requests: int


@dataclass(frozen=True, kw_only=True)
class ResolvedCacheConfig:
    """Cache settings with defaults applied (``off`` already mapped to ``disabled``)."""

    mode: ResolvedCacheMode
    retained_prefix_tokens: int
    snapshot_interval_tokens: int
    max_snapshot_entries: int
    max_snapshot_bytes: int

    @property
    def keeps_live_kv(self) -> bool:
        """Whether a finished request's KV stays in its slot for its context_key."""
        return self.mode in ("context_key", "live_slot_prefix", "live_slot_and_snapshot")

    @property
    def shares_across_keys(self) -> bool:
        """Whether a request may reuse a prefix held by a slot of another context_key."""
        return self.mode in ("live_slot_prefix", "live_slot_and_snapshot")

    @property
    def uses_snapshots(self) -> bool:
        """Whether prefix states are saved to and restored from host memory."""
        return self.mode in ("state_snapshot", "live_slot_and_snapshot")


@dataclass(frozen=True, kw_only=True)
class ResolvedMultimodalConfig:
    """Multimodal settings with defaults applied."""

    projector_path: str | None
    use_gpu: bool
    image_min_tokens: int | None
    image_max_tokens: int | None


@dataclass(frozen=True, kw_only=True)
class ResolvedResidencyConfig:
    """Residency settings with defaults applied."""

    max_gpu_models_per_device: int
    allow_cpu_models_while_gpu_loaded: bool
    require_gpu_lease: bool
    gpu_memory_safety_margin_bytes: int


@dataclass(frozen=True, kw_only=True)
class ResolvedObservabilityConfig:
    """Observability flags; ``metrics_enabled`` is true when either is set."""

    runtime_metrics: bool
    backend_profiling: bool

    @property
    def metrics_enabled(self) -> bool:
        """Whether engine-level aggregate metrics are collected."""
        return self.runtime_metrics or self.backend_profiling


@dataclass(frozen=True, kw_only=True)
class ResolvedRuntimeConfig:
    """A :class:`NativeRuntimeConfig` with every default and normalization applied."""

    placement: ResolvedPlacementConfig
    context: ResolvedContextConfig
    sampling: ResolvedSamplingConfig
    scheduler: ResolvedSchedulerConfig
    cache: ResolvedCacheConfig
    multimodal: ResolvedMultimodalConfig
    residency: ResolvedResidencyConfig
    observability: ResolvedObservabilityConfig
