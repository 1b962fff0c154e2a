"""The gateway TOML schema: parse, validate, report every problem with its field path.

:func:`load_config` / :func:`parse_config` never read secrets, load models or bind ports
(that is what ``sipp-gateway check`` runs). Unknown keys are errors everywhere.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sipp.gateway.server.cache_config import CacheExtensions, read_extensions
from sipp.gateway.server.config_reader import (
    ConfigIssue,
    GatewayConfigError,
    Reader,
    join,
    show,
)
from sipp.gateway.server.config_targets import (
    STRATEGIES,
    AnthropicTarget,
    Deployment,
    GatewayTarget,
    LocalTarget,
    OpenAICompatibleTarget,
    OpenAITarget,
    RoutedTarget,
    SingleTarget,
    Strategy,
    Target,
    leaf_targets,
    read_targets,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "STRATEGIES",
    "AnthropicTarget",
    "ClientIpConfig",
    "ConfigIssue",
    "Deployment",
    "GatewayConfig",
    "GatewayConfigError",
    "GatewayTarget",
    "LocalTarget",
    "OpenAICompatibleTarget",
    "OpenAITarget",
    "RateLimitConfig",
    "RoutedTarget",
    "RoutesConfig",
    "SingleTarget",
    "Strategy",
    "Target",
    "TokenConfig",
    "TokenLimitConfig",
    "leaf_targets",
    "load_config",
    "parse_config",
]

ClientIpSource = Literal["peer", "x_forwarded_for", "x_real_ip"]
Backend = Literal["auto", "cpu", "cuda", "metal", "vulkan"]
Stats = Literal["off", "basic", "profile"]

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PUBLIC_ROUTES = ("query", "chat", "embed", "openai")
_MANAGEMENT_ROUTES = ("index", "health", "readiness", "metrics", "admin")
_ROUTE_DEFAULTS = {
    "query": "/v1/query",
    "chat": "/v1/chat",
    "embed": "/v1/embed",
    "openai": "/v1",
    "index": "/",
    "health": "/healthz",
    "readiness": "/readyz",
    "metrics": "/metrics",
    "admin": "/admin",
}
# Optional routes may be turned off with ``false``; the three profile routes may not.
_OPTIONAL_ROUTES = frozenset({"openai", *_MANAGEMENT_ROUTES})


@dataclass(frozen=True)
class ClientIpConfig:
    source: ClientIpSource
    trusted_proxy_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


@dataclass(frozen=True)
class RateLimitConfig:
    enabled: bool
    requests_per_minute: int
    burst: int


@dataclass(frozen=True)
class TokenLimitConfig:
    """Tokens per minute (input + output) allowed per caller label and per target name."""

    callers: Mapping[str, int] = field(default_factory=dict)
    targets: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RoutesConfig:
    """Route paths; optional ones are ``None`` when disabled with ``false``."""

    query: str
    chat: str
    embed: str
    openai: str | None
    index: str | None
    health: str | None
    readiness: str | None
    metrics: str | None
    admin: str | None


@dataclass(frozen=True)
class TokenConfig:
    env: str
    caller: str
    targets: tuple[str, ...]  # empty: every target

    def allows(self, target: str) -> bool:
        return not self.targets or target in self.targets


@dataclass(frozen=True)
class StateConfig:
    """``[state]``: where limits, sessions and controls live. ``memory`` (default): in this
    process. ``redis``: shared by every replica that names the same Redis (``url_env`` holds
    its URL, e.g. ``redis://127.0.0.1:6379/0``; keys start with ``key_prefix``).
    ``on_unavailable`` applies to rate limits and token budgets while Redis is unreachable
    (admin sessions always fail closed)."""

    backend: Literal["memory", "redis"] = "memory"
    url_env: str | None = None
    key_prefix: str = "sipp:"
    on_unavailable: Literal["fail_open", "fail_closed"] = "fail_closed"
    replica_id: str | None = None


@dataclass(frozen=True)
class GatewayConfig:
    """A validated gateway configuration (no secret values: only env var names)."""

    public_bind: tuple[str, int]
    management_bind: tuple[str, int]
    max_request_bytes: int
    max_concurrent_requests: int | None
    allowed_origins: tuple[str, ...]
    admin_password_env: str
    client_ip: ClientIpConfig
    rate_limit: RateLimitConfig
    routes: RoutesConfig
    tokens: tuple[TokenConfig, ...]
    targets: tuple[Target, ...]
    token_limit: TokenLimitConfig = field(default_factory=TokenLimitConfig)
    # [[caches]], [[collections]] and the targets' cache / rag fields
    extensions: CacheExtensions = field(default_factory=CacheExtensions)
    state: StateConfig = field(default_factory=StateConfig)


# --------------------------------------------------------------------------- sections
_TOP_KEYS = ("public_bind", "management_bind", "max_request_bytes", "max_concurrent_requests",
             "allowed_origins", "admin_password_env", "security", "routes", "tokens", "targets",
             "caches", "collections", "state")


def _bind(r: Reader, data: Mapping[str, Any], key: str, default: str) -> tuple[str, int]:
    value = data.get(key, default)
    if not isinstance(value, str):
        r.fail(key, f"must be a socket address string like '127.0.0.1:8080', got {show(value)}")
        return ("", -1)
    match = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+)):(\d{1,5})$", value)
    host = (match.group(1) or match.group(2)) if match else None
    port = int(match.group(3)) if match else -1
    if not match or port > 65535 or host is None:
        r.fail(key, f"must be 'host:port' (IPv6 as '[::1]:port', port 0-65535), got {value!r}")
        return ("", -1)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            r.fail(key, f"host must be an IP address or localhost, got {host!r}")
    return (host, port)


def _origins(r: Reader, data: Mapping[str, Any]) -> tuple[str, ...]:
    origins = r.strings(data, "", "allowed_origins", required=False)
    for index, origin in enumerate(origins):
        if not re.match(r"^https?://[^/?#\s@]+$", origin):
            r.fail(f"allowed_origins[{index}]",
                   f"must be an origin like 'https://app.example.com' (no path), got {origin!r}")
    return origins


def _security(r: Reader, data: Mapping[str, Any]) -> tuple[ClientIpConfig, RateLimitConfig]:
    security = r.table(data.get("security"), "security",
                       ("client_ip", "rate_limit", "token_limit")) or {}
    client = r.table(security.get("client_ip"), "security.client_ip",
                     ("source", "trusted_proxy_cidrs")) if security else None
    rate = r.table(security.get("rate_limit"), "security.rate_limit",
                   ("enabled", "requests_per_minute", "burst")) if security else None
    source = "peer"
    cidrs: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    if client is not None:
        source = r.choice(client, "security.client_ip", "source",
                          ("peer", "x_forwarded_for", "x_real_ip"), None)
        for index, text in enumerate(
            r.strings(client, "security.client_ip", "trusted_proxy_cidrs", required=True)
        ):
            where = f"security.client_ip.trusted_proxy_cidrs[{index}]"
            if "/" not in text:
                r.fail(where, f"trusted proxy CIDR must include a prefix: {text}")
                continue
            try:
                cidrs.append(ipaddress.ip_network(text, strict=False))
            except ValueError as exc:
                r.fail(where, f"invalid trusted proxy CIDR {text!r}: {exc}")
    limit = RateLimitConfig(False, 60, 60)
    if rate is not None:
        path = "security.rate_limit"
        limit = RateLimitConfig(
            enabled=r.boolean(rate, path, "enabled"),
            requests_per_minute=r.integer(rate, path, "requests_per_minute", default=None) or 60,
            burst=r.integer(rate, path, "burst", default=None) or 60,
        )
        for key in ("requests_per_minute", "burst"):
            if key not in rate:
                r.fail(join(path, key), "is required (an integer greater than zero)")
    return ClientIpConfig(source, tuple(cidrs)), limit  # type: ignore[arg-type]


def _state(r: Reader, data: Mapping[str, Any]) -> StateConfig:
    table = r.table(data.get("state"), "state",
                    ("backend", "url_env", "key_prefix", "on_unavailable", "replica_id"),
                    required=False)
    if table is None:
        return StateConfig()
    backend = r.choice(table, "state", "backend", ("memory", "redis"), "memory")
    url_env = r.env_name(table, "state", "url_env") if "url_env" in table else None
    if backend == "redis" and url_env is None:
        r.fail("state.url_env", "is required with backend = \"redis\" (the env var holding "
                                "the Redis URL, e.g. redis://127.0.0.1:6379/0)")
    prefix = r.text(table, "state", "key_prefix", required=False) or "sipp:"
    on_unavailable = r.choice(table, "state", "on_unavailable", ("fail_open", "fail_closed"),
                              "fail_closed")
    replica = r.text(table, "state", "replica_id", required=False)
    return StateConfig(backend, url_env, prefix, on_unavailable, replica)  # type: ignore[arg-type]


def _token_limit(r: Reader, data: Mapping[str, Any]) -> TokenLimitConfig:
    security = data.get("security")
    table = r.table(security.get("token_limit") if isinstance(security, dict) else None,
                    "security.token_limit", ("callers", "targets"), required=False)
    if table is None:
        return TokenLimitConfig()
    groups: dict[str, dict[str, int]] = {}
    for key, what in (("callers", "caller label"), ("targets", "target name")):
        where = f"security.token_limit.{key}"
        raw = table.get(key, {})
        groups[key] = {}
        if not isinstance(raw, dict):
            r.fail(where, f"must be a table of {what} = tokens per minute, got {show(raw)}")
            continue
        for name, value in raw.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                r.fail(f"{where}.{name}", f"must be an integer greater than zero (tokens per "
                                          f"minute), got {show(value)}")
            else:
                groups[key][name] = value
    return TokenLimitConfig(groups["callers"], groups["targets"])


def _routes(r: Reader, data: Mapping[str, Any]) -> RoutesConfig:
    table = r.table(data.get("routes", {}), "routes", tuple(_ROUTE_DEFAULTS)) or {}
    values: dict[str, str | None] = {}
    for name, default in _ROUTE_DEFAULTS.items():
        value = table.get(name, default)
        where = f"routes.{name}"
        if value is False and name in _OPTIONAL_ROUTES:
            values[name] = None
            continue
        if (
            not isinstance(value, str)
            or not value.startswith("/")
            or "?" in value
            or "#" in value
            or any(ch.isspace() for ch in value)
        ):
            hint = " or false to disable it" if name in _OPTIONAL_ROUTES else ""
            r.fail(where, f"{name} route must be an absolute path without query or fragment"
                          f"{hint}, got {show(value)}")
            values[name] = default
            continue
        values[name] = value.rstrip("/") or "/"
    for group in (_PUBLIC_ROUTES, _MANAGEMENT_ROUTES):
        seen: dict[str, str] = {}
        for name in group:
            route = values[name]
            if route is None:
                continue
            if route in seen:
                r.fail(f"routes.{name}", f"{name} route duplicates {seen[route]} route: {route}")
            seen[route] = name
    openai = values["openai"]
    if openai is not None:
        for name in ("query", "chat", "embed"):
            route = values[name]
            if route is not None and route.startswith(openai.rstrip("/") + "/") and route[
                len(openai.rstrip("/")):] in ("/chat/completions", "/completions",
                                              "/embeddings", "/models"):
                r.fail(f"routes.{name}", f"{name} route collides with the OpenAI-compatible "
                                         f"route {route}")
    return RoutesConfig(**values)  # type: ignore[arg-type]


def _tokens(r: Reader, data: Mapping[str, Any]) -> tuple[TokenConfig, ...]:
    raw = data.get("tokens")
    if raw is None or raw == []:
        r.fail("tokens", "at least one bearer token is required ([[tokens]])")
        return ()
    if not isinstance(raw, list):
        r.fail("tokens", f"must be an array of tables ([[tokens]]), got {show(raw)}")
        return ()
    tokens: list[TokenConfig] = []
    callers: set[str] = set()
    envs: set[str] = set()
    for index, item in enumerate(raw):
        path = f"tokens[{index}]"
        table = r.table(item, path, ("env", "caller", "targets"))
        if table is None:
            continue
        env = r.env_name(table, path, "env")
        caller = r.text(table, path, "caller") or ""
        if caller and caller in callers:
            r.fail(f"{path}.caller", f"duplicate token caller: {caller}")
        if env and env in envs:
            r.fail(f"{path}.env", f"duplicate token env: {env} (each token needs its own variable)")
        callers.add(caller)
        envs.add(env)
        tokens.append(TokenConfig(env, caller, r.strings(table, path, "targets", required=False)))
    return tuple(tokens)


def parse_config(data: Mapping[str, Any], source: str = "gateway config") -> GatewayConfig:
    """Validate a parsed TOML document; raises :class:`GatewayConfigError` listing every
    problem (``field.path: message``)."""
    r = Reader()
    top = r.table(dict(data), "", _TOP_KEYS) or {}
    public = _bind(r, top, "public_bind", "0.0.0.0:8080")
    management = _bind(r, top, "management_bind", "0.0.0.0:9090")
    if public == management and public[1] > 0:
        r.fail("management_bind", "public_bind and management_bind must be different")
    max_bytes = r.integer(top, "", "max_request_bytes", default=1048576) or 1048576
    concurrency = r.integer(top, "", "max_concurrent_requests", default=None)
    origins = _origins(r, top)
    if "admin_password_env" not in top:
        r.fail("admin_password_env", "is required (the env var holding the admin password)")
        admin = ""
    else:
        admin = r.env_name(top, "", "admin_password_env")
    client_ip, rate_limit = _security(r, top)
    routes = _routes(r, top)
    tokens = _tokens(r, top)
    targets = read_targets(r, top)
    names = {t.name for t in targets}
    for index, token in enumerate(tokens):
        for position, name in enumerate(token.targets):
            if name not in names:
                r.fail(f"tokens[{index}].targets[{position}]",
                       f"token references unknown target: {name}")
    token_limit = _token_limit(r, top)
    state = _state(r, top)
    callers = {t.caller for t in tokens}
    for name in token_limit.callers:
        if name not in callers:
            r.fail(f"security.token_limit.callers.{name}", f"unknown token caller: {name}")
    for name in token_limit.targets:
        if name not in names:
            r.fail(f"security.token_limit.targets.{name}", f"unknown target: {name}")
    raw_targets = top.get("targets")
    extensions = read_extensions(r, top, raw_targets if isinstance(raw_targets, list) else [])
    if r.issues:
        raise GatewayConfigError(r.issues, source)
    return GatewayConfig(public, management, max_bytes, concurrency, origins, admin, client_ip,
                         rate_limit, routes, tokens, targets, token_limit, extensions, state)


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a gateway TOML file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise GatewayConfigError([ConfigIssue("", f"cannot read {file}: {exc.strerror}")],
                                 str(file)) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GatewayConfigError([ConfigIssue("", f"invalid TOML: {exc}")], str(file)) from exc
    return parse_config(data, str(file))
