"""Incremental reading of one JSON tool call (``{"name": ..., "arguments": {...}}``).

``read_call`` looks at a call that may still be arriving: while incomplete it returns what
is already certain (the name once its string closed, the raw argument text so far when the
arguments are an object written right after the name); when complete it validates the whole
object. Reading a longer prefix never takes back what a shorter one returned, which is what
lets streamed deltas equal the final parse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass

from sipp.errors import ToolCallError

__all__ = ["CallPart", "read_call", "scan_container", "skip_ws"]

_WS = " \t\r\n"
# name first, then the arguments: what every call grammar of this package generates
_NAME_FIRST = re.compile(
    r'\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(arguments|parameters)"\s*:\s*'
)


@dataclass(frozen=True)
class CallPart:
    """A call as far as it is known: ``arguments`` is JSON text (complete when
    ``complete``)."""

    name: str | None
    arguments: str
    complete: bool


def skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def scan_container(text: str, pos: int) -> int | None:
    """End (exclusive) of the JSON object/array starting at ``text[pos]``, None while open."""
    depth = 0
    in_string = False
    escaped = False
    for i in range(pos, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _name(raw: str) -> str:
    try:
        value = json.loads(f'"{raw}"')
    except json.JSONDecodeError as exc:
        raise ToolCallError(f"tool call name is not a valid JSON string: {raw!r}") from exc
    return str(value)


def _check_name(name: str, names: Collection[str]) -> str:
    if names and name not in names:
        raise ToolCallError(
            f"the model called {name!r}, which is not one of the declared tools "
            f"({', '.join(sorted(names))})"
        )
    return name


def read_call(
    text: str, pos: int, names: Collection[str], *, final: bool
) -> tuple[CallPart, int | None]:
    """Read the call object at ``text[pos]`` (a ``{``); returns the part and the end of the
    object (None while incomplete). Raises :class:`ToolCallError` on a malformed call, or on
    an incomplete one when ``final``."""
    head = _NAME_FIRST.match(text, pos)
    end = scan_container(text, pos)
    if end is None:
        if final:
            raise ToolCallError(
                "the output ended inside a tool call (its JSON is incomplete): "
                f"{text[pos:pos + 200]!r}"
            )
        if head is None:
            return CallPart(None, "", False), None
        name = _check_name(_name(head.group(1)), names)
        start = head.end()
        if text[start:start + 1] != "{":
            return CallPart(name, "", False), None
        args_end = scan_container(text, start)
        return CallPart(name, text[start:args_end or len(text)], False), None
    try:
        obj = json.loads(text[pos:end])
    except json.JSONDecodeError as exc:
        raise ToolCallError(f"tool call is not valid JSON ({exc.msg}): {text[pos:end]!r}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise ToolCallError(f"tool call has no string 'name': {text[pos:end]!r}")
    name = _check_name(obj["name"], names)
    key = "arguments" if "arguments" in obj else "parameters"
    args = obj.get(key, {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError as exc:
            raise ToolCallError(
                f"arguments of the call to {name!r} do not parse as JSON ({exc.msg}): "
                f"{args!r}"
            ) from exc
    if not isinstance(args, dict):
        raise ToolCallError(
            f"arguments of the call to {name!r} must be a JSON object, got {args!r}"
        )
    if head is not None and text[head.end():head.end() + 1] == "{":
        args_end = scan_container(text, head.end())
        assert args_end is not None
        raw = text[head.end():args_end]
    else:
        raw = json.dumps(args, ensure_ascii=False)
    return CallPart(name, raw, True), end
