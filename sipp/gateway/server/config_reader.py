"""Reading typed values out of nested TOML tables while collecting every problem with its
field path, so ``sipp-gateway check`` reports all of them at once."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sipp._validate import check_base_url
from sipp.errors import ConfigurationError

__all__ = ["ENV_NAME", "ConfigIssue", "GatewayConfigError", "Reader", "join", "kind", "show"]

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ConfigIssue:
    """One validation problem: ``path`` (``targets[1].model``) and what was expected."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class GatewayConfigError(ConfigurationError):
    """The gateway TOML is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue], source: str = "gateway config") -> None:
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"{source} is invalid ({len(issues)} problem(s)):\n{lines}")
        self.issues = issues


class Reader:
    """Collects issues while reading typed values out of nested TOML tables."""

    def __init__(self) -> None:
        self.issues: list[ConfigIssue] = []

    def fail(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(path, message))

    def table(
        self, data: Any, path: str, known: tuple[str, ...], *, required: bool = True
    ) -> dict[str, Any] | None:
        if data is None:
            if required:
                self.fail(path, "is required (a table)")
            return None
        if not isinstance(data, dict):
            self.fail(path, f"must be a table, got {kind(data)}")
            return None
        for key in data:
            if key not in known:
                self.fail(join(path, key), f"unknown field (expected one of: {', '.join(known)})")
        return data

    def text(self, data: Mapping[str, Any], path: str, key: str, *, required: bool = True,
             default: str | None = None) -> str | None:
        value = data.get(key)
        where = join(path, key)
        if value is None:
            if required:
                self.fail(where, "is required (a non-empty string)")
            return default
        if not isinstance(value, str) or not value.strip() or value != value.strip():
            self.fail(where, f"must be a non-empty trimmed string, got {show(value)}")
            return default
        return value

    def env_name(self, data: Mapping[str, Any], path: str, key: str) -> str:
        value = self.text(data, path, key)
        if value is not None and not ENV_NAME.match(value):
            self.fail(join(path, key), f"must be an environment variable name "
                                        f"([A-Za-z_][A-Za-z0-9_]*), got {value!r}")
        return value or ""

    def choice(self, data: Mapping[str, Any], path: str, key: str, options: tuple[str, ...],
               default: str | None) -> str:
        value = data.get(key, default)
        if value is None:
            self.fail(join(path, key), f"is required (one of: {', '.join(options)})")
            return options[0]
        if value not in options:
            self.fail(join(path, key), f"must be one of: {', '.join(options)}; got {show(value)}")
            return options[0]
        return str(value)

    def integer(self, data: Mapping[str, Any], path: str, key: str, *, default: int | None,
                minimum: int = 1) -> int | None:
        value = data.get(key, default)
        if value is None:
            if default is None and key in data:
                self.fail(join(path, key), "must be an integer")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(join(path, key), f"must be an integer, got {show(value)}")
            return default
        if value < minimum:
            self.fail(join(path, key), f"must be greater than zero, got {value}")
            return default
        return value

    def boolean(self, data: Mapping[str, Any], path: str, key: str) -> bool:
        value = data.get(key)
        if not isinstance(value, bool):
            self.fail(join(path, key), f"is required (true or false), got {show(value)}")
            return False
        return value

    def seconds(self, data: Mapping[str, Any], path: str) -> float | None:
        value = data.get("timeout_seconds")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value) or not value > 0:
            self.fail(join(path, "timeout_seconds"),
                      f"must be a finite number greater than zero, got {show(value)}")
            return None
        return float(value)

    def strings(self, data: Mapping[str, Any], path: str, key: str, *,
                required: bool) -> tuple[str, ...]:
        value = data.get(key)
        where = join(path, key)
        if value is None:
            if required:
                self.fail(where, "is required (an array of strings, may be empty)")
            return ()
        if not isinstance(value, list):
            self.fail(where, f"must be an array of strings, got {show(value)}")
            return ()
        out: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip() or item != item.strip():
                self.fail(f"{where}[{index}]", f"must be a non-empty trimmed string, got "
                                                f"{show(item)}")
            else:
                out.append(item)
        return tuple(out)

    def url(self, data: Mapping[str, Any], path: str, key: str, *, required: bool) -> str | None:
        """A provider base URL, checked exactly as ``serve`` checks it: absolute http(s),
        no credentials, query or fragment, and https unless the host is loopback."""
        value = self.text(data, path, key, required=required)
        if value is None:
            return None
        try:
            return check_base_url(key, value, https_unless_loopback=True)
        except ConfigurationError as exc:
            self.fail(join(path, key), exc.message.removeprefix(f"{key} "))
            return None


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def show(value: Any) -> str:
    if isinstance(value, str | bool | int | float):
        return repr(value)
    return kind(value)
