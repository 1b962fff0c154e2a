"""Value checks shared by descriptors, the client and the gateway config: URLs, header names
and values, timeouts, JSON objects. Each names the field it refuses."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sipp.errors import ConfigurationError, SippError

__all__ = [
    "RESERVED_CORRELATION_HEADERS",
    "check_base_url",
    "check_header_name",
    "check_header_value",
    "check_json_object",
    "check_positive_seconds",
    "is_loopback_host",
]

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

# Header names a request-correlation header may not take: transport and auth headers.
RESERVED_CORRELATION_HEADERS = frozenset({
    "accept", "accept-encoding", "anthropic-version", "authorization", "connection",
    "content-length", "content-type", "host", "transfer-encoding", "user-agent", "x-api-key",
})


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(name: str, url: Any, *, https_unless_loopback: bool = False) -> str:
    """An absolute http(s) URL with a host and no query or fragment; trailing ``/`` trimmed."""
    if not isinstance(url, str) or not url or url != url.strip():
        raise ConfigurationError(f"{name} must be an absolute HTTP(S) URL string, no spaces")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{name} must be an absolute HTTP(S) URL, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(f"{name} must not contain user credentials")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ConfigurationError(f"{name} must not contain a query or fragment")
    try:
        parts.port  # noqa: B018 - raises on an invalid port
    except ValueError as exc:
        raise ConfigurationError(f"{name} has an invalid port: {url!r}") from exc
    if https_unless_loopback and parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(f"{name} must use https unless the host is loopback, got {url!r}")
    return url.rstrip("/")


def check_header_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise ConfigurationError(f"{name} must be a valid HTTP header name, got {value!r}")
    return value


def check_header_value(name: str, value: Any, *, secret: bool = False) -> str:
    shown = "" if secret else f", got {value!r}"
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string{shown}")
    if any(ch in value for ch in "\r\n\0"):
        raise ConfigurationError(f"{name} must not contain line breaks or NUL{shown}")
    return value


def check_positive_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def check_json_object(
    name: str, value: Any, *, error: type[SippError] = ConfigurationError
) -> dict[str, Any]:
    """A deep copy of ``value`` after checking it is a JSON object with finite numbers;
    ``error`` is what a bad value raises (``InvalidRequestError`` for request options)."""
    if not isinstance(value, Mapping):
        raise error(f"{name} must be a JSON object (a dict with string keys)")

    def check(item: Any, path: str) -> None:
        if item is None or isinstance(item, bool | str | int):
            return
        if isinstance(item, float):
            if not math.isfinite(item):
                raise error(f"{path} must be a finite number, got {item}")
            return
        if isinstance(item, Mapping):
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise error(f"{path} keys must be strings, got {key!r}")
                check(sub, f"{path}.{key}")
            return
        if isinstance(item, list | tuple):
            for index, sub in enumerate(item):
                check(sub, f"{path}[{index}]")
            return
        raise error(f"{path} must contain only JSON values, got {type(item).__name__}")

    check(value, name)
    copied: dict[str, Any] = json.loads(json.dumps(value))
    return copied
