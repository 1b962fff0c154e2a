"""GBNF that makes a family's tool call valid for the declared tools.

One JSON schema describes a call to any of the allowed tools (``anyOf`` of ``{"name":
const, "arguments": <parameters>}``, name first, objects closed); the JSON-schema compiler
turns it into the ``tool-call`` rule and the family wraps it with its markers. The same text
serves ``required`` / a named tool (an eager grammar: the output can only be calls) and
``auto`` (a lazy grammar that starts at the family's marker).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from sipp.engine.json_schema import json_schema_to_gbnf
from sipp.engine.tools.families import ToolFamily
from sipp.tools import ToolSpec

__all__ = ["call_schema", "tool_call_grammar"]


def _rebase_refs(schema: Any, prefix: str) -> Any:
    """Point local ``$ref`` values of an embedded schema at its new place."""
    if isinstance(schema, dict):
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#"):
                out[key] = "#" + prefix + value[1:]
            else:
                out[key] = _rebase_refs(value, prefix)
        return out
    if isinstance(schema, list):
        return [_rebase_refs(v, prefix) for v in schema]
    return schema


def call_schema(tools: Sequence[ToolSpec], args_key: str) -> dict[str, Any]:
    """The JSON schema of one call to any of ``tools``."""
    branches = []
    for index, tool in enumerate(tools):
        params = _rebase_refs(copy.deepcopy(dict(tool.parameters)),
                              f"/anyOf/{index}/properties/{args_key}")
        branches.append({
            "type": "object",
            "properties": {"name": {"const": tool.name}, args_key: params},
            "required": ["name", args_key],
            "additionalProperties": False,
        })
    return {"anyOf": branches}


def tool_call_grammar(family: ToolFamily, tools: Sequence[ToolSpec], *, parallel: bool) -> str:
    """GBNF (``root``) for the family's call region holding one call (or several when
    ``parallel``) to ``tools``. Raises :class:`~sipp.errors.JsonSchemaError` naming the
    keyword and pointer (``#/anyOf/<tool index>/properties/arguments/...``) of a schema
    the compiler does not support."""
    body = json_schema_to_gbnf(call_schema(tools, family.args_key))
    body = re.sub(r"^root ::= ", "tool-call ::= ", body, count=1, flags=re.M)
    rules = family.grammar_rules(parallel)
    head = [f"root ::= {rules.pop('root')}"] + [f"{k} ::= {v}" for k, v in rules.items()]
    return "\n".join(head) + "\n" + body
