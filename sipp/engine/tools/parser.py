"""Split model output into text and tool calls, whole or as it streams.

:func:`parse_output` is a pure function of the output so far: text segments and
:class:`CallPart` values in order. With ``final=False`` it returns only what further output
cannot change (text that could still become a call marker, and whitespace that could still
precede a call, is held back). :class:`ToolCallStream` feeds text in and emits the
difference as deltas, so the concatenated stream always equals the final parse.
"""

from __future__ import annotations

import itertools
import secrets
import string
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sipp.engine.tools._json import CallPart
from sipp.engine.tools.families import ToolFamily
from sipp.errors import ToolCallError

__all__ = ["ParsedOutput", "ToolCallStream", "parse_output"]

Segment = str | CallPart


def _held_back(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a marker."""
    best = 0
    for marker in markers:
        for n in range(min(len(marker) - 1, len(text)), best, -1):
            if text.endswith(marker[:n]):
                best = n
                break
    return best


def parse_output(
    family: ToolFamily, text: str, names: Collection[str], *, final: bool
) -> list[Segment]:
    """Text and calls of ``text`` in order (see the module docstring)."""
    segments: list[Segment] = []
    pos = 0
    only_calls = True  # nothing but whitespace and calls so far
    while True:
        found = -1
        for m in family.markers:
            at = text.find(m, pos)
            if at >= 0 and (found < 0 or at < found):
                found = at
        if family.starts_with_json and only_calls:
            lead = pos
            while lead < len(text) and text[lead].isspace():
                lead += 1
            if lead < len(text) and text[lead] == "{" and (found < 0 or lead < found):
                found = lead
        if found < 0:
            rest = text[pos:]
            if not final:
                rest = rest[:len(rest) - _held_back(rest, family.markers)]
            segments.append(rest)
            break
        segments.append(text[pos:found])
        if text[pos:found].strip():
            only_calls = False
        calls, end = family.read_region(text, found, names, final=final)
        segments.extend(calls)
        if end is None:
            break
        pos = end
    return _tidy(segments, final)


def _tidy(segments: list[Segment], final: bool) -> list[Segment]:
    """Drop whitespace next to calls; hold back trailing whitespace while not final."""
    out: list[Segment] = []
    for i, seg in enumerate(segments):
        if isinstance(seg, str):
            if i > 0 and isinstance(segments[i - 1], CallPart):
                seg = seg.lstrip()
            last = i == len(segments) - 1
            if (not last and isinstance(segments[i + 1], CallPart)) or (last and not final):
                seg = seg.rstrip()
            if not seg:
                continue
        out.append(seg)
    return out


def _call_id(family: ToolFamily) -> str:
    if family.name == "mistral":  # Mistral templates accept 9 alphanumerics only
        alphabet = string.ascii_letters + string.digits
        return "".join(secrets.choice(alphabet) for _ in range(9))
    return "call_" + secrets.token_hex(12)


@dataclass
class ParsedOutput:
    """The final split: ``content`` text and ``tool_calls`` in OpenAI's shape."""

    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


class ToolCallStream:
    """Feed output text; get text and OpenAI-shaped tool-call deltas in order.

    ``feed`` and ``finish`` return ``("text", str)`` and ``("tool_call", delta)`` items; a
    delta is ``{"index", "id", "type", "function": {"name", "arguments"}}`` when a call
    starts and ``{"index", "function": {"arguments": fragment}}`` after. ``finish`` raises
    :class:`~sipp.errors.ToolCallError` when the output holds a malformed or unfinished call.
    """

    def __init__(self, family: ToolFamily, names: Collection[str]) -> None:
        self.family = family
        self.names = frozenset(names)
        self._text = ""
        self._shown: list[Segment] = []
        self._ids: list[str] = []
        self._final: list[Segment] | None = None

    def feed(self, text: str) -> list[tuple[str, Any]]:
        self._text += text
        return self._diff(parse_output(self.family, self._text, self.names, final=False))

    def finish(self) -> list[tuple[str, Any]]:
        segments = parse_output(self.family, self._text, self.names, final=True)
        self._final = segments
        return self._diff(segments)

    def result(self) -> ParsedOutput:
        """The whole output split (after :meth:`finish`)."""
        segments = self._final
        if segments is None:
            self.finish()
            segments = self._final
        assert segments is not None
        content = "".join(s for s in segments if isinstance(s, str))
        calls = [s for s in segments if isinstance(s, CallPart)]
        return ParsedOutput(content, [
            {"id": self._ids[i], "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}}
            for i, c in enumerate(calls)
        ])

    def _diff(self, segments: list[Segment]) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        call_index = itertools.count()
        for i, seg in enumerate(segments):
            old = self._shown[i] if i < len(self._shown) else None
            if isinstance(seg, str):
                if old is not None and not isinstance(old, str):
                    raise ToolCallError("internal: tool-call parse went back on a call")
                before = old or ""
                if not seg.startswith(before):
                    raise ToolCallError("internal: tool-call parse went back on text")
                if len(seg) > len(before):
                    out.append(("text", seg[len(before):]))
                continue
            index = next(call_index)
            if old is not None and not isinstance(old, CallPart):
                raise ToolCallError("internal: tool-call parse went back on text")
            if seg.name is None:
                continue
            if old is None or old.name is None:
                if index >= len(self._ids):
                    self._ids.append(_call_id(self.family))
                out.append(("tool_call", {
                    "index": index, "id": self._ids[index], "type": "function",
                    "function": {"name": seg.name, "arguments": seg.arguments}}))
                continue
            if not seg.arguments.startswith(old.arguments):
                raise ToolCallError("internal: tool-call arguments went back")
            if len(seg.arguments) > len(old.arguments):
                out.append(("tool_call", {"index": index, "function": {
                    "arguments": seg.arguments[len(old.arguments):]}}))
        self._shown = segments
        return out
