"""Messages and tools in the shape a chat template expects, whatever it supports.

Hugging Face templates take ``tools`` (OpenAI function tools) as a variable, assistant
``tool_calls`` with ``arguments`` as an object, and ``tool`` turns. Templates that know
none of that (Llama 2, Gemma, ...) get the same information as text: the tool list and
the family's call format in the system prompt, past calls written as the family writes
them, tool results as user turns (merged with a neighbouring user turn so roles still
alternate).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sipp.engine.tools.families import detect_family

__all__ = ["template_inputs"]


def _arguments_object(call: Mapping[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    args = function.get("arguments")
    if isinstance(args, str):
        try:
            function["arguments"] = json.loads(args)
        except json.JSONDecodeError:
            pass  # templates show it as given
    return {**call, "function": function}


def template_inputs(
    source: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """``(messages, tools)`` to render with the template ``source``."""
    knows_tools = re.search(r"\btools\b", source) is not None
    knows_calls = "tool_calls" in source
    knows_tool_role = re.search(r"""['"](tool|ipython)['"]""", source) is not None
    family = detect_family(source)
    out: list[dict[str, Any]] = []
    rewritten = False
    for message in messages:
        msg = dict(message)
        calls = msg.get("tool_calls")
        if calls:
            if knows_calls:
                msg["tool_calls"] = [_arguments_object(c) for c in calls]
            else:
                shown = family.format_calls([
                    {"name": c["function"]["name"],
                     "arguments": _arguments_object(c)["function"].get("arguments", {})}
                    for c in calls])
                content = msg.get("content") or ""
                msg = {"role": "assistant", "content": f"{content}\n{shown}" if content
                       else shown}
                rewritten = True
        if msg.get("role") == "tool" and not knows_tool_role:
            msg = {"role": "user",
                   "content": family.format_result(msg.get("name"), msg.get("content") or "")}
            rewritten = True
        out.append(msg)
    if tools and not knows_tools:
        note = family.instructions(tools)
        if out and out[0].get("role") == "system":
            out[0] = {**out[0], "content": f"{out[0].get('content') or ''}\n\n{note}".strip()}
        else:
            out.insert(0, {"role": "system", "content": note})
    if rewritten:
        out = _merge_users(out)
    return out, ([dict(t) for t in tools] if tools and knows_tools else None)


def _merge_users(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for msg in messages:
        if merged and msg.get("role") == "user" and merged[-1].get("role") == "user":
            merged[-1] = {**merged[-1], "content": f"{merged[-1]['content']}\n\n{msg['content']}"}
        else:
            merged.append(msg)
    return merged
