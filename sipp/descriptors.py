"""Endpoint descriptors: what ``SippClient.add`` registers.

``LocalModelDescriptor`` loads a GGUF in-process; ``GatewayDescriptor`` calls a Sipp
gateway over HTTP; ``ProviderDescriptor`` calls OpenAI, Anthropic or an
OpenAI-compatible API directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from sipp._validate import (
    check_base_url,
    check_header_name,
    check_header_value,
    check_json_object,
    check_positive_seconds,
)
from sipp.config import NativeRuntimeConfig
from sipp.errors import ConfigurationError
from sipp.models.resolve import ResolveOptions
from sipp.models.source import parse_source

__all__ = ["GatewayDescriptor", "LocalModelDescriptor", "ProviderDescriptor", "TimeoutPolicy"]


@dataclass(frozen=True)
class LocalModelDescriptor:
    """A local GGUF model: ``model_path``, optional ``NativeRuntimeConfig`` and an optional
    Jinja ``chat_template`` that overrides the GGUF's ``tokenizer.chat_template``.

    ``model_path`` is any model source (see :mod:`sipp.models`): a GGUF path, a packaged
    name (``"gemma"``), ``"hf://org/repo/file.gguf"`` (globs, ``@revision``) or an
    ``https://`` URL; remote ones are downloaded into the model cache when the endpoint is
    added. ``multimodal.projector_path`` takes the same, or ``"auto"``. ``resolve`` sets the
    cache directory, offline mode, hub endpoint or token (default: the environment).
    ``progress(fraction)`` is called while the model loads; returning ``False`` cancels.
    """

    model_path: str | os.PathLike[str]
    config: NativeRuntimeConfig | None = None
    chat_template: str | None = None
    progress: Callable[[float], object] | None = field(default=None, compare=False, repr=False)
    resolve: ResolveOptions | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.model_path, str | os.PathLike) or not str(self.model_path):
            raise ConfigurationError("model_path must be a non-empty path string")
        source = parse_source(self.model_path, field="model_path")  # no I/O beyond exists()
        shown = source.path if source.kind == "path" else source.text
        object.__setattr__(self, "model_path", str(shown))
        if self.progress is not None and not callable(self.progress):
            raise ConfigurationError("progress must be a callable taking a fraction in [0, 1]")
        if self.resolve is not None and not isinstance(self.resolve, ResolveOptions):
            raise ConfigurationError(
                f"resolve must be a sipp.models.ResolveOptions, got {type(self.resolve).__name__}"
            )
        if self.config is not None and not isinstance(self.config, NativeRuntimeConfig):
            raise ConfigurationError(
                f"config must be a NativeRuntimeConfig, got {type(self.config).__name__}"
            )
        if self.chat_template is not None and (
            not isinstance(self.chat_template, str) or not self.chat_template.strip()
        ):
            raise ConfigurationError("chat_template must be a non-empty Jinja template string")


@dataclass(frozen=True)
class TimeoutPolicy:
    """Deadlines in seconds for remote endpoints: ``connect`` (TCP/TLS setup), ``request``
    (a whole finite call) and ``stream_read`` (longest silence between stream chunks)."""

    connect: float = 10.0
    request: float = 60.0
    stream_read: float = 60.0

    def __post_init__(self) -> None:
        for name in ("connect", "request", "stream_read"):
            value = check_positive_seconds(f"timeout.{name}", getattr(self, name))
            object.__setattr__(self, name, value)

    @staticmethod
    def from_ms(timeout_ms: Any, name: str = "timeout_ms") -> TimeoutPolicy:
        """One value (milliseconds) for all three deadlines."""
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
            raise ConfigurationError(f"{name} must be a positive integer, got {timeout_ms!r}")
        seconds = timeout_ms / 1000
        return TimeoutPolicy(connect=seconds, request=seconds, stream_read=seconds)


def _is_trimmed_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and value == value.strip()


def _resolve_timeout(timeout_ms: Any, timeout: Any) -> TimeoutPolicy:
    if timeout_ms is not None and timeout is not None:
        raise ConfigurationError("pass either timeout_ms or timeout, not both")
    if timeout_ms is not None:
        return TimeoutPolicy.from_ms(timeout_ms)
    if timeout is None:
        return TimeoutPolicy()
    if not isinstance(timeout, TimeoutPolicy):
        raise ConfigurationError(f"timeout must be a TimeoutPolicy, got {type(timeout).__name__}")
    return timeout


def _header_pairs(
    name: str, headers: Any, reserved: frozenset[str]
) -> tuple[tuple[str, str], ...]:
    if isinstance(headers, Mapping):
        items = list(headers.items())
    elif isinstance(headers, list | tuple):
        items = []
        for index, pair in enumerate(headers):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ConfigurationError(f"{name}[{index}] must be a (name, value) pair")
            items.append((pair[0], pair[1]))
    else:
        raise ConfigurationError(f"{name} must be a mapping or a list of (name, value) pairs")
    result: list[tuple[str, str]] = []
    for key, value in items:
        check_header_name(f"{name} header name", key)
        if key.lower() in reserved:
            raise ConfigurationError(f"{name} cannot set the {key} header")
        check_header_value(f"{name} value of {key}", value, secret=True)
        result.append((key, value))
    return tuple(result)


_ROUTE_NAMES = ("query_route", "chat_route", "embed_route")
_AUTH_KINDS = ("none", "bearer", "header")
_RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "accept",
                               "transfer-encoding", "connection"})


@dataclass(frozen=True)
class GatewayDescriptor:
    """A Sipp gateway reached over HTTP; ``target`` is sent as the profile ``model`` field.

    ``authentication_kind`` is ``"none"``, ``"bearer"`` (``Authorization: Bearer <value>``)
    or ``"header"`` (``<authentication_header>: <value>``); ``authentication_value`` is a
    string or a zero-argument callable returning one, called for every request (short-lived
    tokens). Deadlines come from ``timeout_ms`` (all three) or ``timeout``; the default is
    connect 10 s, request 60 s, stream read 60 s. ``protocol_options`` are merged into every
    request body.
    """

    target: str
    base_url: str
    _: KW_ONLY
    authentication_kind: str = "none"
    authentication_value: str | Callable[[], str] | None = field(default=None, repr=False)
    authentication_header: str | None = None
    static_headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = field(
        default=None, repr=False
    )
    timeout_ms: int | None = None
    timeout: TimeoutPolicy | None = None
    query_route: str = "/v1/query"
    chat_route: str = "/v1/chat"
    embed_route: str = "/v1/embed"
    protocol_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not _is_trimmed_text(self.target):
            raise ConfigurationError("gateway target must be a non-empty trimmed value")
        object.__setattr__(self, "base_url", check_base_url("base_url", self.base_url))
        if self.authentication_kind not in _AUTH_KINDS:
            raise ConfigurationError("authentication kind must be none, bearer, or header")
        value = self.authentication_value
        if self.authentication_kind == "none":
            if value is not None or self.authentication_header is not None:
                raise ConfigurationError(
                    'authentication_value/authentication_header need authentication_kind '
                    '"bearer" or "header"'
                )
        else:
            if value is None or (isinstance(value, str) and not value.strip()):
                raise ConfigurationError("authentication value is required")
            if isinstance(value, str):
                check_header_value("authentication_value", value, secret=True)
            elif not callable(value):
                raise ConfigurationError(
                    "authentication_value must be a string or a zero-argument callable"
                )
        if self.authentication_kind == "header":
            if self.authentication_header is None:
                raise ConfigurationError("authentication headerName is required")
            check_header_name("authentication_header", self.authentication_header)
        elif self.authentication_kind == "bearer" and self.authentication_header is not None:
            raise ConfigurationError('authentication_header needs authentication_kind "header"')
        headers = (
            _header_pairs("static_headers", self.static_headers, _RESERVED_HEADERS)
            if self.static_headers is not None
            else ()
        )
        object.__setattr__(self, "static_headers", headers)
        object.__setattr__(self, "timeout", _resolve_timeout(self.timeout_ms, self.timeout))
        for name in _ROUTE_NAMES:
            route = getattr(self, name)
            if (
                not isinstance(route, str)
                or not route.startswith("/")
                or "?" in route
                or "#" in route
                or any(ch.isspace() for ch in route)
            ):
                raise ConfigurationError(f"{name} must be an absolute path, got {route!r}")
        if self.protocol_options is not None:
            options = check_json_object("protocol_options", self.protocol_options)
            object.__setattr__(self, "protocol_options", options)

    @property
    def timeouts(self) -> TimeoutPolicy:
        """The resolved deadlines."""
        assert self.timeout is not None
        return self.timeout


_PROVIDERS = {"openai": "openai", "anthropic": "anthropic",
              "openai_compatible": "openai_compatible", "openai-compatible": "openai_compatible"}


@dataclass(frozen=True)
class ProviderDescriptor:
    """A provider API called directly: ``provider`` is ``"openai"``, ``"anthropic"`` or
    ``"openai_compatible"``.

    OpenAI and Anthropic need ``api_key``; ``base_url`` overrides their default URL.
    OpenAI-compatible needs ``base_url`` and either ``api_key`` (bearer) or
    ``auth_header_name`` + ``auth_header_value``, and may add ``static_headers``.
    Anthropic takes ``version`` (``anthropic-version`` header, default ``2023-06-01``).
    ``base_url`` must be https unless the host is loopback. Deadlines come from
    ``timeout_ms`` (all three) or ``timeout`` (default connect 10 s, request 60 s, stream
    read 60 s).
    """

    provider: str
    model: str
    _: KW_ONLY
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    timeout_ms: int | None = None
    version: str | None = None
    auth_header_name: str | None = None
    auth_header_value: str | None = field(default=None, repr=False)
    static_headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = field(
        default=None, repr=False
    )
    timeout: TimeoutPolicy | None = None

    def __post_init__(self) -> None:
        provider = _PROVIDERS.get(self.provider) if isinstance(self.provider, str) else None
        if provider is None:
            raise ConfigurationError(
                "provider must be one of: openai, anthropic, openai_compatible"
            )
        object.__setattr__(self, "provider", provider)
        if not _is_trimmed_text(self.model):
            raise ConfigurationError("provider model must be a non-empty trimmed string")
        label = {"openai": "OpenAI", "anthropic": "Anthropic",
                 "openai_compatible": "OpenAI-compatible"}[provider]
        rejected: list[str] = []
        if provider in ("openai", "anthropic"):
            rejected += ["auth_header_name", "auth_header_value", "static_headers"]
        if provider in ("openai", "openai_compatible"):
            rejected.append("version")
        for name in rejected:
            if getattr(self, name) is not None:
                raise ConfigurationError(
                    f"{name} is not valid for {label} provider endpoint descriptors"
                )
        if self.api_key is not None:
            if not isinstance(self.api_key, str) or not self.api_key.strip():
                raise ConfigurationError("api_key must be a non-empty string")
            if any(ch.isspace() for ch in self.api_key):
                raise ConfigurationError("api_key must not contain whitespace")
        if provider in ("openai", "anthropic") and self.api_key is None:
            raise ConfigurationError(f"api_key is required for the {label} provider")
        if provider == "openai_compatible":
            has_header = self.auth_header_name is not None or self.auth_header_value is not None
            if (self.api_key is None) == (not has_header) or (
                has_header and (self.auth_header_name is None or self.auth_header_value is None)
            ):
                raise ConfigurationError(
                    "OpenAI-compatible provider requires either api_key or "
                    "auth_header_name/auth_header_value"
                )
            if self.base_url is None:
                raise ConfigurationError("base_url is required for the OpenAI-compatible provider")
            if has_header:
                check_header_name("auth_header_name", self.auth_header_name)
                check_header_value("auth_header_value", self.auth_header_value, secret=True)
                if not str(self.auth_header_value).strip():
                    raise ConfigurationError("auth_header_value must not be blank")
        if self.base_url is not None:
            url = check_base_url("base_url", self.base_url, https_unless_loopback=True)
            object.__setattr__(self, "base_url", url)
        if self.version is not None and (
            not isinstance(self.version, str) or not self.version.strip()
        ):
            raise ConfigurationError("version must be a non-empty string")
        headers = (
            _header_pairs("static_headers", self.static_headers, _RESERVED_HEADERS)
            if self.static_headers is not None
            else ()
        )
        object.__setattr__(self, "static_headers", headers)
        object.__setattr__(self, "timeout", _resolve_timeout(self.timeout_ms, self.timeout))

    @property
    def timeouts(self) -> TimeoutPolicy:
        """The resolved deadlines."""
        assert self.timeout is not None
        return self.timeout
