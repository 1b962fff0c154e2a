"""Tool calls for local models: the family from the chat template, the grammar that keeps
calls valid, and the parser that turns output back into text and calls.

:func:`plan_tools` is what the engine's submission path calls once per request; the
returned :class:`ToolPlan` carries the grammar (eager for ``required`` / a named tool,
lazy from the family's marker for ``auto``) and makes the parser for the run's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sipp.engine.json_schema import SchemaError
from sipp.engine.tools.families import FAMILIES, ToolFamily, detect_family
from sipp.engine.tools.grammar import tool_call_grammar
from sipp.engine.tools.parser import ParsedOutput, ToolCallStream, parse_output
from sipp.errors import JsonSchemaError
from sipp.tools import ToolChoice, ToolSpec

__all__ = [
    "FAMILIES",
    "ParsedOutput",
    "ToolCallStream",
    "ToolFamily",
    "ToolPlan",
    "detect_family",
    "parse_output",
    "plan_tools",
]


@dataclass(frozen=True)
class ToolPlan:
    """How one request with tools runs: ``grammar`` (None for ``none``), its lazy
    ``triggers`` (empty when the grammar is eager) and the allowed tool names."""

    family: ToolFamily
    choice: ToolChoice
    grammar: str | None
    triggers: tuple[str, ...]
    names: frozenset[str]

    @property
    def parses(self) -> bool:
        """Whether the output is split into text and calls (not with ``tool_choice="none"``)."""
        return self.choice.mode != "none"

    def stream(self) -> ToolCallStream:
        return ToolCallStream(self.family, self.names)


def plan_tools(
    template: str,
    tools: Sequence[ToolSpec],
    choice: ToolChoice,
    *,
    parallel: bool = True,
) -> ToolPlan:
    """The plan for ``tools`` under ``choice`` with the family of ``template``. Raises
    :class:`~sipp.errors.JsonSchemaError` naming ``tools[i].function.parameters`` and the
    keyword of a parameters schema the grammar compiler does not support."""
    family = detect_family(template)
    allowed = [t for t in tools if choice.name is None or t.name == choice.name]
    names = frozenset(t.name for t in allowed)
    if choice.mode == "none" or not allowed:
        return ToolPlan(family, choice, None, (), names)
    try:
        grammar = tool_call_grammar(family, allowed, parallel=parallel and choice.name is None)
    except SchemaError as exc:
        raise _tool_schema_error(exc, allowed, tools) from exc
    triggers = () if choice.forced else family.trigger_patterns()
    return ToolPlan(family, choice, grammar, triggers, names)


def _tool_schema_error(
    exc: SchemaError, allowed: Sequence[ToolSpec], tools: Sequence[ToolSpec]
) -> JsonSchemaError:
    """Point a compiler error at the tool's own ``parameters`` schema."""
    parts = exc.pointer.split("/")
    if len(parts) >= 5 and parts[1] == "anyOf" and parts[2].isdigit():
        tool = allowed[int(parts[2])]
        index = next(i for i, t in enumerate(tools) if t is tool)
        inner = "/".join(parts[5:])
        where = f"tools[{index}].function.parameters" + (f" at #/{inner}" if inner else "")
        keyword = f"keyword '{exc.keyword}' in " if exc.keyword else ""
        message = str(exc.message).rsplit(" (", 1)[0]
        error = JsonSchemaError(f"{message} ({keyword}{where})")
        error.param = f"tools[{index}].function.parameters"  # type: ignore[attr-defined]
        return error
    return JsonSchemaError(str(exc.message))
