"""Retrieval-augmented chat in one call: search a :class:`~sipp.vector.VectorIndex`, pass
the hits as documents to ``client.chat``, return the answer with the ids it was given."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sipp.errors import InvalidRequestError
from sipp.types import ChatMessage, SippTextOptions, SippTextResponse
from sipp.vector import SearchHit, VectorIndex

if TYPE_CHECKING:
    from sipp.client import SippClient
    from sipp.types import EndpointRef

__all__ = ["RagAnswer", "retrieve_and_chat"]


@dataclass(frozen=True)
class RagAnswer:
    """The model's ``text``, the document ``ids`` it was given (best first), the search
    ``hits`` and the full chat ``response``."""

    text: str
    ids: list[str]
    hits: list[SearchHit]
    response: SippTextResponse


def retrieve_and_chat(
    client: SippClient,
    question: str,
    *,
    index: VectorIndex,
    endpoint: EndpointRef | None = None,
    k: int = 4,
    filter: Mapping[str, Any] | None = None,
    embed_endpoint: EndpointRef | None = None,
    history: Sequence[ChatMessage] = (),
    system: str | None = None,
    options: SippTextOptions | None = None,
    timeout: float | None = None,
) -> RagAnswer:
    """Retrieve the ``k`` best documents for ``question`` and answer it with them.

    ``embed_endpoint`` embeds the question (default: the endpoint the index was filled
    through by ``add_texts``); rows without a stored text are skipped. ``history`` goes
    before the question, ``system`` in front of the documents block.
    """
    if not isinstance(question, str) or not question.strip():
        raise InvalidRequestError("question must be a non-empty string")
    if not isinstance(index, VectorIndex):
        raise InvalidRequestError("index must be a VectorIndex")
    hits = index.search_text(question, k, filter=filter, client=client if embed_endpoint
                             else None, endpoint=embed_endpoint)
    used = [hit for hit in hits if hit.text is not None]
    documents = [{"id": hit.id, "text": hit.text} for hit in used]
    messages = [*history, ChatMessage("user", question)]
    if system is not None:
        messages.insert(0, ChatMessage("system", system))
    run = client.chat(messages, endpoint=endpoint, options=options, documents=documents)
    response = run.result(timeout)
    return RagAnswer(response["text"], [hit.id for hit in used], used, response)
