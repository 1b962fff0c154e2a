"""Gateway TOML targets: the target tables (local, provider, gateway, routed) and their
parsing with every problem reported by field path. :mod:`.config` reads the rest of the file
and re-exports these names."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sipp._validate import RESERVED_CORRELATION_HEADERS, check_base_url
from sipp.config import NativeRuntimeConfig
from sipp.errors import ConfigurationError
from sipp.gateway.server.cache_config import TARGET_KEYS
from sipp.gateway.server.config_reader import Reader, join, show
from sipp.models.source import parse_source
from sipp.pii.policy import PiiPolicy

Backend = Literal["auto", "cpu", "cuda", "metal", "vulkan"]
Stats = Literal["off", "basic", "profile"]
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

@dataclass(frozen=True)
class LocalTarget:
    name: str
    model: str
    backend: Backend
    stats: Stats
    runtime: Mapping[str, Any] | None
    # inline Jinja, or a template file read when the target loads (sipp._template_source)
    chat_template: str | None = None
    type: Literal["local"] = "local"
    # masking / blocking of personal data before the request reaches this target
    pii: PiiPolicy | None = None

    def runtime_table(self) -> dict[str, Any]:
        """The ``NativeRuntimeConfig`` table the model loads with: the ``runtime`` table
        plus the metrics ``stats`` asks for and, for the cpu backend, no GPU at all."""
        data: dict[str, Any] = copy.deepcopy(dict(self.runtime or {}))
        observability = data.setdefault("observability", {})
        observability.setdefault("runtime_metrics", self.stats != "off")
        observability.setdefault("backend_profiling", self.stats == "profile")
        if self.backend == "cpu":
            _cpu_only(self.name, data)
        return data


# backend = "cpu" means no GPU at all, also in a process whose native backend has GPUs:
# no offload device (so no residency lease), no layers, no op offload (libllama would move
# big matmuls to a GPU even with 0 layers), no KV offload (nor flash attention on a GPU).
_CPU_ONLY: dict[str, dict[str, Any]] = {
    "placement": {"devices": ["none"], "gpu_layers": {"count": 0}},
    "context": {"op_offload": False, "offload_kqv": False},
}


def _cpu_only(name: str, data: dict[str, Any]) -> None:
    for group, fields in _CPU_ONLY.items():
        table = data.setdefault(group, {})
        if not isinstance(table, dict):
            continue  # NativeRuntimeConfig names the bad group
        for key, value in fields.items():
            given = table.get(key)
            if given is not None and given != value:
                raise ConfigurationError(
                    f"targets.{name}.runtime.{group}.{key}={given!r} asks for a GPU, but the "
                    f'target has backend = "cpu" (no GPU at all); remove it or pick a GPU backend'
                )
            table[key] = value


@dataclass(frozen=True)
class OpenAITarget:
    name: str
    model: str
    api_key_env: str
    base_url: str | None
    timeout_seconds: float | None
    type: Literal["openai"] = "openai"
    # masking / blocking of personal data before the request reaches this target
    pii: PiiPolicy | None = None


@dataclass(frozen=True)
class OpenAICompatibleTarget:
    name: str
    model: str
    base_url: str
    token_env: str
    correlation_header: str | None
    timeout_seconds: float | None
    type: Literal["openai_compatible"] = "openai_compatible"
    # masking / blocking of personal data before the request reaches this target
    pii: PiiPolicy | None = None


@dataclass(frozen=True)
class AnthropicTarget:
    name: str
    model: str
    api_key_env: str
    base_url: str | None
    version: str | None
    timeout_seconds: float | None
    type: Literal["anthropic"] = "anthropic"
    # masking / blocking of personal data before the request reaches this target
    pii: PiiPolicy | None = None


@dataclass(frozen=True)
class GatewayTarget:
    """A target of another Sipp gateway, reached over the Sipp profile (``base_url`` is its
    public listener, ``readiness_url`` its management ``/readyz``, the health check)."""

    name: str
    base_url: str
    remote_target: str
    token_env: str | None
    readiness_url: str | None
    timeout_seconds: float | None
    type: Literal["gateway"] = "gateway"
    pii: PiiPolicy | None = None

    @property
    def model(self) -> str:
        """What the dashboard shows as the model: the remote target's name."""
        return self.remote_target


SingleTarget = (LocalTarget | OpenAITarget | OpenAICompatibleTarget | AnthropicTarget
                | GatewayTarget)
Strategy = Literal["least_busy", "round_robin", "lowest_latency", "weighted"]
STRATEGIES: tuple[str, ...] = ("least_busy", "round_robin", "lowest_latency", "weighted")


@dataclass(frozen=True)
class Deployment:
    """One deployment of a routed target: ``target.name`` is ``"<router>/<name>"``."""

    name: str
    target: SingleTarget
    weight: float = 1.0


@dataclass(frozen=True)
class RoutedTarget:
    """A public target served by several deployments (see docs/gateway-routing.md).

    Failures before the first token (connection error, 5xx, 429, timeout, deployment not
    ready) are retried ``retries`` times on other deployments, then on ``fallbacks`` in
    order; ``cooldown_after_failures`` failures within ``cooldown_window_seconds`` take a
    deployment out for ``cooldown_seconds``, after which it is probed back."""

    name: str
    deployments: tuple[Deployment, ...]
    strategy: Strategy = "round_robin"
    fallbacks: tuple[str, ...] = ()
    retries: int = 0
    retry_backoff_seconds: float = 0.1
    cooldown_after_failures: int = 3
    cooldown_window_seconds: float = 60.0
    cooldown_seconds: float = 30.0
    type: Literal["router"] = "router"
    # masking / blocking of personal data before the request reaches any deployment
    pii: PiiPolicy | None = None

    @property
    def model(self) -> str:
        """What the dashboard shows as the model: the deployment names."""
        return ", ".join(d.name for d in self.deployments)


Target = SingleTarget | RoutedTarget


def leaf_targets(targets: tuple[Target, ...]) -> list[SingleTarget]:
    """Every single target: the plain ones and each routed target's deployments."""
    out: list[SingleTarget] = []
    for target in targets:
        if isinstance(target, RoutedTarget):
            out.extend(d.target for d in target.deployments)
        else:
            out.append(target)
    return out



_TARGET_KEYS = {
    "local": ("name", "type", "model", "backend", "stats", "runtime", "chat_template", "pii"),
    "openai": ("name", "type", "model", "api_key_env", "base_url", "timeout_seconds", "pii"),
    "openai_compatible": ("name", "type", "model", "base_url", "token_env", "correlation_header",
                          "timeout_seconds", "pii"),
    "anthropic": ("name", "type", "model", "api_key_env", "base_url", "version",
                  "timeout_seconds", "pii"),
    "gateway": ("name", "type", "base_url", "target", "token_env", "readiness_url",
                "allow_plain_http", "timeout_seconds", "pii"),
}
_TARGET_KEYS = {kind: (*keys, *TARGET_KEYS) for kind, keys in _TARGET_KEYS.items()}
_ROUTER_KEYS = ("name", "deployments", "strategy", "fallbacks", "retries",
                "retry_backoff_seconds", "cooldown_after_failures", "cooldown_window_seconds",
                "cooldown_seconds", "pii", *TARGET_KEYS)
_PII_KEYS = ("mode", "entities", "countries")


def _pii(r: Reader, table: Mapping[str, Any], path: str) -> PiiPolicy | None:
    """A target's ``pii`` table: ``mode`` (mask, block, off), ``entities``, ``countries``."""
    raw = table.get("pii")
    if raw is None:
        return None
    where = f"{path}.pii"
    data = r.table(raw, where, _PII_KEYS) or {}
    mode = r.choice(data, where, "mode", ("mask", "block", "off"), "mask")
    entities = r.strings(data, where, "entities", required=False) if "entities" in data else None
    countries = r.strings(data, where, "countries", required=False) if "countries" in data \
        else ("US",)
    try:
        # local=True: set on a local target, the table asks for masking there too
        return PiiPolicy(mode=mode, entities=entities, countries=countries,  # type: ignore[arg-type]
                         local=True)
    except ConfigurationError as exc:
        r.fail(where, exc.message.removeprefix("pii."))
        return None


def _runtime(r: Reader, table: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    runtime = table.get("runtime")
    if runtime is None:
        return None
    if not isinstance(runtime, dict):
        r.fail(f"{path}.runtime", f"must be a table, got {show(runtime)}")
        return None
    return runtime


def _check_runtime(r: Reader, target: LocalTarget, path: str) -> None:
    """The runtime ``serve`` loads the model with (the ``runtime`` table plus what
    ``stats`` and ``backend`` imply) must be valid, so ``check`` refuses what ``serve``
    would."""
    try:
        if target.runtime is not None:  # as written, so its own errors come first
            NativeRuntimeConfig.from_dict(target.runtime)
        NativeRuntimeConfig.from_dict(target.runtime_table())
    except ConfigurationError as exc:
        r.fail(f"{path}.runtime", exc.message)


def _chat_template(r: Reader, table: Mapping[str, Any], path: str) -> str | None:
    """Inline Jinja (whitespace is meaningful, so not trimmed) or a template file path."""
    value = table.get("chat_template")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        r.fail(f"{path}.chat_template", "must be inline Jinja text or the path of a template "
                                        f"file, got {show(value)}")
        return None
    return value


def _check_source(r: Reader, target: LocalTarget, path: str) -> None:
    """``model`` and ``multimodal.projector_path`` must be well-formed model sources (a
    path, a packaged name, hf://... or https://...; nothing is downloaded here)."""
    if not target.model:
        return
    try:
        parse_source(target.model, field="model")
    except ConfigurationError as exc:
        r.fail(f"{path}.model", exc.message.removeprefix("model: "))
    multimodal = (target.runtime or {}).get("multimodal")
    projector = multimodal.get("projector_path") if isinstance(multimodal, dict) else None
    if isinstance(projector, str) and projector != "auto":
        try:
            parse_source(projector, field="projector_path")
        except ConfigurationError as exc:
            r.fail(f"{path}.runtime.multimodal.projector_path",
                   exc.message.removeprefix("projector_path: "))


def _number(r: Reader, table: Mapping[str, Any], path: str, key: str, default: float, *,
            positive: bool) -> float:
    """A finite number ``>= 0`` (``> 0`` when ``positive``), ``default`` when absent."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "greater than zero" if positive else "zero or more"
        r.fail(join(path, key), f"must be a finite number {bound}, got {show(value)}")
        return default
    return float(value)


def _routed(r: Reader, item: dict[str, Any], path: str) -> RoutedTarget | None:
    """A target with ``deployments``: each an inline local, provider or gateway target
    definition (its own ``type``) plus an optional ``weight``."""
    table = r.table(item, path, _ROUTER_KEYS) or {}
    name = r.text(table, path, "name") or ""
    if "type" in item:
        r.fail(f"{path}.type", "a target with deployments takes no type (each deployment "
                               "names its own)")
    raw = table.get("deployments")
    deployments: list[Deployment] = []
    if not isinstance(raw, list) or not raw:
        r.fail(f"{path}.deployments", "must be a non-empty array of tables "
                                      f"([[targets.deployments]]), got {show(raw)}")
        raw = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        where = f"{path}.deployments[{index}]"
        if not isinstance(entry, dict):
            r.fail(where, f"must be a table, got {show(entry)}")
            continue
        if "deployments" in entry:
            r.fail(f"{where}.deployments", "deployments do not nest")
            continue
        for key in ("pii", *TARGET_KEYS):
            if key in entry:
                r.fail(f"{where}.{key}", f"set {key} on the routed target, not on a deployment")
        weight = _number(r, entry, where, "weight", 1.0, positive=True)
        short = entry.get("name")
        if isinstance(short, str) and "/" in short:
            r.fail(f"{where}.name", f"must not contain '/', got {short!r}")
        elif isinstance(short, str) and short in seen:
            r.fail(f"{where}.name", f"duplicate deployment: {short}")
        body = {k: v for k, v in entry.items() if k not in ("weight", "pii", *TARGET_KEYS)}
        if isinstance(short, str):
            body["name"] = f"{name}/{short}"
            seen.add(short)
        target = _target(r, body, where)
        if isinstance(target, RoutedTarget) or target is None:
            continue
        deployments.append(Deployment(target.name.rsplit("/", 1)[-1], target, weight))
    retries = table.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        r.fail(f"{path}.retries", f"must be an integer, zero or more, got {show(retries)}")
        retries = 0
    failures = r.integer(table, path, "cooldown_after_failures", default=3) or 3
    fallbacks = r.strings(table, path, "fallbacks", required=False)
    for position, other in enumerate(fallbacks):
        if other == name:
            r.fail(f"{path}.fallbacks[{position}]", "a target cannot fall back to itself")
    return RoutedTarget(
        name, tuple(deployments),
        strategy=r.choice(table, path, "strategy", STRATEGIES,
                          "round_robin"),  # type: ignore[arg-type]
        fallbacks=fallbacks, retries=retries,
        retry_backoff_seconds=_number(r, table, path, "retry_backoff_seconds", 0.1,
                                      positive=False),
        cooldown_after_failures=failures,
        cooldown_window_seconds=_number(r, table, path, "cooldown_window_seconds", 60.0,
                                        positive=True),
        cooldown_seconds=_number(r, table, path, "cooldown_seconds", 30.0, positive=True),
        pii=_pii(r, table, path),
    )


def _gateway_target(r: Reader, table: Mapping[str, Any], path: str, name: str
                    ) -> GatewayTarget:
    """``base_url`` is https unless loopback, or ``allow_plain_http = true`` for replicas on
    a private network (the bearer token then travels in clear); ``readiness_url`` carries
    no secret, so http is fine anywhere."""
    token_env = r.env_name(table, path, "token_env") if "token_env" in table else None
    plain = table.get("allow_plain_http", False)
    if not isinstance(plain, bool):
        r.fail(f"{path}.allow_plain_http", f"must be true or false, got {show(plain)}")
        plain = False
    urls: dict[str, str | None] = {}
    for key, required, strict in (("base_url", True, not plain),
                                  ("readiness_url", False, False)):
        value = r.text(table, path, key, required=required)
        urls[key] = None
        if value is not None:
            try:
                urls[key] = check_base_url(key, value, https_unless_loopback=strict)
            except ConfigurationError as exc:
                r.fail(f"{path}.{key}", exc.message.removeprefix(f"{key} "))
    return GatewayTarget(
        name, urls["base_url"] or "", r.text(table, path, "target") or "", token_env,
        urls["readiness_url"], r.seconds(table, path), pii=_pii(r, table, path))


def _target(r: Reader, item: Any, path: str) -> Target | None:
    if not isinstance(item, dict):
        r.fail(path, f"must be a table, got {show(item)}")
        return None
    if "deployments" in item:
        return _routed(r, item, path)
    kind = item.get("type")
    if kind not in _TARGET_KEYS:
        r.fail(f"{path}.type", "is required (one of: local, openai, openai_compatible, "
                               f"anthropic, gateway), got {show(kind)}")
        return None
    table = r.table(item, path, _TARGET_KEYS[kind]) or {}
    name = r.text(table, path, "name") or ""
    if kind == "gateway":
        return _gateway_target(r, table, path, name)
    model = r.text(table, path, "model") or ""
    if kind == "local":
        local = LocalTarget(
            name, model,
            backend=r.choice(table, path, "backend", ("auto", "cpu", "cuda", "metal", "vulkan"),
                             "auto"),  # type: ignore[arg-type]
            stats=r.choice(table, path, "stats", ("off", "basic", "profile"),
                           "basic"),  # type: ignore[arg-type]
            runtime=_runtime(r, table, path),
            chat_template=_chat_template(r, table, path),
            pii=_pii(r, table, path),
        )
        _check_runtime(r, local, path)
        _check_source(r, local, path)
        return local
    timeout = r.seconds(table, path)
    if kind == "openai":
        return OpenAITarget(name, model, r.env_name(table, path, "api_key_env"),
                            r.url(table, path, "base_url", required=False), timeout,
                            pii=_pii(r, table, path))
    if kind == "anthropic":
        return AnthropicTarget(name, model, r.env_name(table, path, "api_key_env"),
                               r.url(table, path, "base_url", required=False),
                               r.text(table, path, "version", required=False), timeout,
                               pii=_pii(r, table, path))
    header = r.text(table, path, "correlation_header", required=False)
    if header is not None and not _HEADER_NAME.match(header):
        r.fail(f"{path}.correlation_header", f"must be an HTTP header name, got {header!r}")
        header = None
    elif header is not None and header.lower() in RESERVED_CORRELATION_HEADERS:
        r.fail(f"{path}.correlation_header",
               f"must not replace the {header.lower()} header the gateway sends")
        header = None
    return OpenAICompatibleTarget(name, model, r.url(table, path, "base_url", required=True) or "",
                                  r.env_name(table, path, "token_env"), header, timeout,
                                  pii=_pii(r, table, path))


def read_targets(r: Reader, data: Mapping[str, Any]) -> tuple[Target, ...]:
    """Every ``[[targets]]`` table, validated (names unique, fallbacks resolvable)."""
    raw = data.get("targets")
    if raw is None or raw == []:
        r.fail("targets", "at least one target is required ([[targets]])")
        return ()
    if not isinstance(raw, list):
        r.fail("targets", f"must be an array of tables ([[targets]]), got {show(raw)}")
        return ()
    targets: list[Target] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        target = _target(r, item, f"targets[{index}]")
        if target is None:
            continue
        if target.name and target.name in names:
            r.fail(f"targets[{index}].name", f"duplicate target: {target.name}")
        names.add(target.name)
        targets.append(target)
    _check_fallbacks(r, targets)
    return tuple(targets)


def _check_fallbacks(r: Reader, targets: list[Target]) -> None:
    """Every fallback names a configured target, and no chain of fallbacks loops."""
    by_name = {t.name: t for t in targets}
    for index, target in enumerate(targets):
        if not isinstance(target, RoutedTarget):
            continue
        for position, other in enumerate(target.fallbacks):
            where = f"targets[{index}].fallbacks[{position}]"
            if other not in by_name:
                r.fail(where, f"unknown target: {other}")
            elif other != target.name and _reaches(by_name, other, target.name, set()):
                r.fail(where, f"fallback chain loops back to {target.name} through {other}")


def _reaches(by_name: Mapping[str, Target], start: str, goal: str, seen: set[str]) -> bool:
    if start == goal:
        return True
    if start in seen:
        return False
    seen.add(start)
    found = by_name.get(start)
    return isinstance(found, RoutedTarget) and any(
        _reaches(by_name, nxt, goal, seen) for nxt in found.fallbacks)
