"""Tool declarations and ``tool_choice`` (OpenAI's function-tool shapes), validated once.

``parse_tools`` checks ``[{"type": "function", "function": {"name", "description",
"parameters", "strict"}}]`` once at the boundary and returns :class:`ToolSpec` values;
``parse_tool_choice`` turns ``"none" | "auto" | "required" | {"type": "function",
"function": {"name": ...}}`` into a :class:`ToolChoice`. Every error names the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sipp.errors import InvalidRequestError

__all__ = [
    "ToolCallDeltas",
    "ToolChoice",
    "ToolMode",
    "ToolRequest",
    "ToolSpec",
    "parse_tool_choice",
    "parse_tools",
]

ToolMode = Literal["none", "auto", "required"]

_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# What OpenAI means by a function without ``parameters``: it takes no arguments.
_NO_PARAMETERS: Mapping[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class ToolSpec:
    """One declared function tool; ``parameters`` is its arguments' JSON schema."""

    name: str
    description: str | None
    parameters: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI function-tool shape (what chat templates receive as ``tools``)."""
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        function["parameters"] = json.loads(json.dumps(self.parameters))
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolChoice:
    """``mode`` none / auto / required; ``name`` set when one function is forced."""

    mode: ToolMode
    name: str | None = None

    @property
    def forced(self) -> bool:
        """Whether the output must be a call (``required`` or a named function)."""
        return self.mode == "required"


@dataclass(frozen=True)
class ToolRequest:
    """The tool part of one chat request: declared ``tools``, the ``choice`` and whether
    several calls may come in one answer (``parallel``)."""

    tools: tuple[ToolSpec, ...]
    choice: ToolChoice
    parallel: bool = True

    def to_openai(self) -> dict[str, Any]:
        """``tools`` / ``tool_choice`` / ``parallel_tool_calls`` as OpenAI's request fields."""
        out: dict[str, Any] = {"tools": [t.to_dict() for t in self.tools]}
        if self.choice.name is not None:
            out["tool_choice"] = {"type": "function", "function": {"name": self.choice.name}}
        else:
            out["tool_choice"] = self.choice.mode
        if not self.parallel:
            out["parallel_tool_calls"] = False
        return out


class ToolCallDeltas:
    """Rebuilds complete calls from streamed deltas (OpenAI's streaming shape: a delta with
    ``id`` and ``function.name`` starts call ``index``, later ones append to its
    ``function.arguments``)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def add(self, delta: Mapping[str, Any]) -> None:
        index = delta.get("index")
        function = delta.get("function") or {}
        if not isinstance(index, int) or not isinstance(function, Mapping):
            raise InvalidRequestError("tool call delta needs an integer index and a function")
        args = function.get("arguments") or ""
        if index == len(self.calls):
            self.calls.append({"id": delta.get("id") or f"call_{index}", "type": "function",
                               "function": {"name": function.get("name") or "",
                                            "arguments": args}})
        elif 0 <= index < len(self.calls):
            self.calls[index]["function"]["arguments"] += args
        else:
            raise InvalidRequestError(f"tool call delta for index {index} out of order")


def parse_tools(raw: Any, field: str = "tools") -> tuple[ToolSpec, ...]:
    """Validate OpenAI function tools; an empty or absent list gives ``()``."""
    if raw is None:
        return ()
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise InvalidRequestError(f"{field} must be a list of function tools")
    out: list[ToolSpec] = []
    for index, item in enumerate(raw):
        where = f"{field}[{index}]"
        if isinstance(item, ToolSpec):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise InvalidRequestError(f"{where} must be an object")
        kind = item.get("type", "function")
        if kind != "function":
            raise InvalidRequestError(
                f"{where}.type must be 'function' (the only tool type served), got {kind!r}"
            )
        function = item.get("function")
        if not isinstance(function, Mapping):
            raise InvalidRequestError(f"{where}.function must be an object")
        for key in function:
            if key not in ("name", "description", "parameters", "strict"):
                raise InvalidRequestError(f"{where}.function.{key} is not a known field")
        name = function.get("name")
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise InvalidRequestError(
                f"{where}.function.name must be 1-64 letters, digits, '_', '.' or '-', "
                f"got {name!r}"
            )
        if any(spec.name == name for spec in out):
            raise InvalidRequestError(f"{where}.function.name {name!r} is declared twice")
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidRequestError(f"{where}.function.description must be a string")
        parameters = function.get("parameters")
        if parameters is None:
            parameters = _NO_PARAMETERS
        elif not isinstance(parameters, Mapping):
            raise InvalidRequestError(
                f"{where}.function.parameters must be a JSON schema object"
            )
        elif parameters.get("type", "object") != "object":
            raise InvalidRequestError(
                f"{where}.function.parameters must describe an object (type 'object'), "
                f"got type {parameters.get('type')!r}"
            )
        strict = function.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise InvalidRequestError(f"{where}.function.strict must be a boolean")
        out.append(ToolSpec(name, description, dict(parameters)))
    return tuple(out)


def parse_tool_choice(
    raw: Any, tools: Sequence[ToolSpec], field: str = "tool_choice"
) -> ToolChoice:
    """Validate ``tool_choice`` against the declared tools (default: auto with tools, none
    without)."""
    if raw is None:
        return ToolChoice("auto" if tools else "none")
    if isinstance(raw, ToolChoice):
        choice = raw
    elif raw in ("none", "auto", "required"):
        choice = ToolChoice(raw)
    elif isinstance(raw, Mapping):
        if raw.get("type", "function") != "function":
            raise InvalidRequestError(f"{field}.type must be 'function', got {raw.get('type')!r}")
        function = raw.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str):
            raise InvalidRequestError(f"{field}.function.name must be a string")
        choice = ToolChoice("required", name)
    else:
        raise InvalidRequestError(
            f"{field} must be 'none', 'auto', 'required' or "
            f'{{"type": "function", "function": {{"name": ...}}}}, got {raw!r}'
        )
    if choice.mode != "none" and not tools:
        raise InvalidRequestError(f"{field} {choice.mode!r} needs at least one tool in tools")
    if choice.name is not None and all(t.name != choice.name for t in tools):
        raise InvalidRequestError(
            f"{field}.function.name {choice.name!r} is not one of the declared tools"
        )
    return choice
