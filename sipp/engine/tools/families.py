"""Tool-call formats per chat-template family, and picking one from the template text.

A family says how a model writes calls (the *region* that holds them), which marker starts
a region (the lazy grammar's trigger), the GBNF around one call, and how to show calls and
results to templates that do not render tools themselves:

* ``hermes`` (Hermes, Qwen 2.5/3): ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
  per call;
* ``llama3`` (Llama 3.1-3.3): ``{"name": ..., "parameters": {...}}`` as the whole answer,
  optionally after ``<|python_tag|>``;
* ``mistral``: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]``;
* ``code_block`` (Gemma): a fenced ```` ```tool_call ```` block holding the JSON call;
* ``generic``: the JSON call object as the whole answer (templates that show no format).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sipp.engine.tools._json import CallPart, read_call, skip_ws
from sipp.errors import ToolCallError

__all__ = ["FAMILIES", "ToolFamily", "detect_family"]


def _expect(text: str, pos: int, literal: str, final: bool, what: str) -> int | None:
    """Position after ``literal`` at ``pos``; None while it may still arrive."""
    if text.startswith(literal, pos):
        return pos + len(literal)
    rest = text[pos:]
    if not final and literal.startswith(rest):
        return None
    raise ToolCallError(f"expected {literal!r} {what}, got {rest[:80]!r}")


def _object_at(text: str, pos: int, final: bool, where: str) -> int | None:
    pos = skip_ws(text, pos)
    if pos >= len(text):
        if final:
            raise ToolCallError(f"the output ended after {where} without a tool call")
        return None
    if text[pos] != "{":
        raise ToolCallError(f"{where} must be followed by a JSON call object, got "
                            f"{text[pos:pos + 80]!r}")
    return pos


# Families whose region is their marker, one call object and a closing literal: name ->
# (the closing literal, where an error says it was expected).
_CLOSING: Mapping[str, tuple[str, str]] = {
    "hermes": ("</tool_call>", "after the call"),
    "code_block": ("```", "closing the tool_call block"),
}


@dataclass(frozen=True)
class ToolFamily:
    """One family's call format (see the module docstring)."""

    name: str
    markers: tuple[str, ...]   # literal texts that open a call region anywhere
    starts_with_json: bool     # a region may also open with "{" as the first output
    args_key: str              # "arguments" or "parameters"

    # -- reading -------------------------------------------------------------------
    def read_region(
        self, text: str, pos: int, names: Collection[str], *, final: bool
    ) -> tuple[list[CallPart], int | None]:
        """The calls of the region opening at ``pos`` and its end (None while open)."""
        calls: list[CallPart] = []
        closing = _CLOSING.get(self.name)
        if closing is not None:  # the marker, one call object, the closing literal
            marker = self.markers[0]
            start = _object_at(text, pos + len(marker), final, marker)
            if start is None:
                return calls, None
            part, end = read_call(text, start, names, final=final)
            calls.append(part)
            if end is None:
                return calls, None
            literal, what = closing
            return calls, _expect(text, skip_ws(text, end), literal, final, what)
        if self.name == "mistral":
            p = skip_ws(text, pos + len("[TOOL_CALLS]"))
            if p >= len(text):
                if final:
                    raise ToolCallError("the output ended after [TOOL_CALLS]")
                return calls, None
            if text[p] == "{":  # one call without the list
                part, end = read_call(text, p, names, final=final)
                return [part], end
            if text[p] != "[":
                raise ToolCallError(f"[TOOL_CALLS] must be followed by a JSON list of calls, "
                                    f"got {text[p:p + 80]!r}")
            p += 1
            while True:
                start = _object_at(text, p, final, "[TOOL_CALLS][")
                if start is None:
                    return calls, None
                part, end = read_call(text, start, names, final=final)
                calls.append(part)
                if end is None:
                    return calls, None
                p = skip_ws(text, end)
                if p >= len(text):
                    if final:
                        raise ToolCallError("the output ended inside the [TOOL_CALLS] list")
                    return calls, None
                if text[p] == "]":
                    return calls, p + 1
                if text[p] != ",":
                    raise ToolCallError(f"expected ',' or ']' in the [TOOL_CALLS] list, got "
                                        f"{text[p:p + 80]!r}")
                p += 1
        # llama3 and generic: an optional marker, then one call object
        p = pos
        for marker in self.markers:
            if text.startswith(marker, p):
                p += len(marker)
        start = _object_at(text, p, final, "the call marker")
        if start is None:
            return calls, None
        part, end = read_call(text, start, names, final=final)
        return [part], end

    # -- grammar -------------------------------------------------------------------
    def grammar_rules(self, parallel: bool) -> dict[str, str]:
        """GBNF rules around the ``tool-call`` rule (one call object); ``root`` included."""
        more = parallel
        if self.name == "hermes":
            rules = {"tc-one": '"<tool_call>" "\\n"? tool-call "</tool_call>"'}
            rules["root"] = 'tc-one ("\\n" tc-one)*' if more else "tc-one"
            return rules
        if self.name == "mistral":
            tail = ' ("," " "? tool-call)*' if more else ""
            return {"root": f'"[TOOL_CALLS]" "[" tool-call{tail} "]"'}
        if self.name == "code_block":
            rules = {"tc-one": '"```tool_call\\n" tool-call "```"'}
            rules["root"] = 'tc-one ("\\n" tc-one)*' if more else "tc-one"
            return rules
        if self.name == "llama3":
            return {"root": '"<|python_tag|>"? tool-call'}
        return {"root": 'tool-call ("\\n" tool-call)*' if more else "tool-call"}

    def trigger_patterns(self) -> tuple[str, ...]:
        """Regexes (libllama lazy-grammar triggers): the grammar starts at group 1."""
        patterns = [f"({re.escape(marker)})" for marker in self.markers]
        if self.starts_with_json:
            patterns.append(r"^\s*(\{)[\s\S]*$")
        return tuple(patterns)

    # -- showing calls to templates that do not render them -------------------------
    def format_calls(self, calls: Sequence[Mapping[str, Any]]) -> str:
        """Assistant tool calls (``{"name", "arguments"}`` dicts) as this family writes
        them."""
        objs = [{"name": c["name"], self.args_key: c["arguments"]} for c in calls]
        texts = [json.dumps(o, ensure_ascii=False) for o in objs]
        if self.name == "hermes":
            return "\n".join(f"<tool_call>\n{t}\n</tool_call>" for t in texts)
        if self.name == "mistral":
            return "[TOOL_CALLS]" + json.dumps(objs, ensure_ascii=False)
        if self.name == "code_block":
            return "\n".join(f"```tool_call\n{t}\n```" for t in texts)
        return "\n".join(texts)

    def format_result(self, name: str | None, content: str) -> str:
        """A tool result as user-turn text."""
        if self.name == "hermes":
            return f"<tool_response>\n{content}\n</tool_response>"
        label = f" of {name}" if name else ""
        return f"Tool result{label}:\n{content}"

    def instructions(self, tools: Sequence[Mapping[str, Any]]) -> str:
        """A system-prompt text declaring ``tools`` and this family's call format."""
        listing = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        example = self.format_calls([{"name": "<function-name>",
                                      "arguments": {"<argument>": "<value>"}}])
        return (
            "You can call these functions (JSON schemas of their arguments):\n"
            f"{listing}\n"
            "To call one, answer with exactly this format and nothing else:\n"
            f"{example}"
        )


FAMILIES: Mapping[str, ToolFamily] = {
    f.name: f
    for f in (
        ToolFamily("hermes", ("<tool_call>",), False, "arguments"),
        ToolFamily("llama3", ("<|python_tag|>",), True, "parameters"),
        ToolFamily("mistral", ("[TOOL_CALLS]",), False, "arguments"),
        ToolFamily("code_block", ("```tool_call",), False, "arguments"),
        ToolFamily("generic", (), True, "arguments"),
    )
}


def detect_family(template: str) -> ToolFamily:
    """The family a chat template's text belongs to (``generic`` when nothing matches)."""
    if "<tool_call>" in template:
        return FAMILIES["hermes"]
    if "[TOOL_CALLS]" in template or "[AVAILABLE_TOOLS]" in template:
        return FAMILIES["mistral"]
    if "<|python_tag|>" in template or (
        "<|start_header_id|>" in template and re.search(r"\btools\b", template)
    ):
        return FAMILIES["llama3"]
    if "<start_of_turn>" in template:
        return FAMILIES["code_block"]
    return FAMILIES["generic"]
