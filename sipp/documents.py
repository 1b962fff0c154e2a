"""Documents for retrieval-augmented chat: validation and the system block format.

``client.chat(messages, documents=[{"id": ..., "text": ..., ...}])`` hands the documents
to a chat template that takes a ``documents`` variable (Command R / Granite style);
everywhere else they become one system block in this format::

    Answer using the documents below. Each document starts with its id.

    <document id="kb-12" title="Returns">
    Items can be returned within 30 days.
    </document>

Extra string / number / bool fields become attributes after the id, in the given order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from sipp.errors import InvalidRequestError
from sipp.types import ChatMessage

__all__ = ["DOCUMENTS_PREAMBLE", "coerce_documents", "documents_block", "with_documents"]

DOCUMENTS_PREAMBLE = "Answer using the documents below. Each document starts with its id."


def coerce_documents(documents: Sequence[Mapping[str, Any]] | None) -> tuple[dict[str, Any], ...]:
    """Validated copies: each a dict with string ``id`` and ``text`` (ids unique) and JSON
    values elsewhere."""
    if documents is None:
        return ()
    if isinstance(documents, str | bytes | Mapping) or not isinstance(documents, Sequence):
        raise InvalidRequestError("documents must be a list of {id, text, ...} dicts")
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, doc in enumerate(documents):
        if not isinstance(doc, Mapping):
            raise InvalidRequestError(f"documents[{i}] must be a dict with id and text")
        doc_id, text = doc.get("id"), doc.get("text")
        if not isinstance(doc_id, str) or not doc_id:
            raise InvalidRequestError(f"documents[{i}].id must be a non-empty string")
        if not isinstance(text, str):
            raise InvalidRequestError(f"documents[{i}].text must be a string")
        if doc_id in seen:
            raise InvalidRequestError(f"documents[{i}].id {doc_id!r} appears twice")
        seen.add(doc_id)
        try:
            copy = json.loads(json.dumps(dict(doc), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"documents[{i}] must hold only JSON values: {exc}") from exc
        result.append(copy)
    return tuple(result)


def _attribute(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def documents_block(documents: Sequence[Mapping[str, Any]]) -> str:
    """The system block text for ``documents`` (see the module docstring)."""
    parts = [DOCUMENTS_PREAMBLE, ""]
    for doc in documents:
        attrs = [f'id="{_attribute(doc["id"])}"']
        for key, value in doc.items():
            if key not in ("id", "text") and isinstance(value, str | int | float | bool):
                attrs.append(f'{key}="{_attribute(value)}"')
        parts.append(f"<document {' '.join(attrs)}>\n{doc['text']}\n</document>")
    return "\n".join(parts)


def with_documents(
    messages: Sequence[ChatMessage], documents: Sequence[Mapping[str, Any]]
) -> tuple[ChatMessage, ...]:
    """``messages`` with the documents block appended to the leading system message (or
    a new system message in front)."""
    if not documents:
        return tuple(messages)
    block = documents_block(documents)
    if messages and messages[0].role == "system":
        first = messages[0]
        content = f"{first.content}\n\n{block}" if first.content else block
        return (replace(first, content=content), *messages[1:])
    return (ChatMessage("system", block), *messages)
