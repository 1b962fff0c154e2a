"""The bottom of the run path: validated request values and the producer protocol.

The client builds a :class:`TextRequest` or :class:`EmbedRequest` and hands it, with a
:class:`RunSink`, to an endpoint; engines and transports only ever see these two names, so
they never import the client, the endpoints or the run handles above them
(``sipp.runs.RunSink`` is the implementation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sipp.tools import ToolRequest
from sipp.types import ChatMessage, LocalEmbedOptions, LocalTextOptions, SippTextOptions

__all__ = ["EmbedRequest", "RunSink", "TextRequest"]


@dataclass(frozen=True)
class TextRequest:
    """A validated query (``prompt``) or chat (``messages``) request."""

    operation: Literal["query", "chat"]
    prompt: str | None
    messages: tuple[ChatMessage, ...] | None
    options: SippTextOptions
    local: LocalTextOptions | None
    endpoint_options: Mapping[str, Any] | None
    provider_options: Mapping[str, Any] | None
    emit_tokens: bool
    request_id: str = ""
    tools: ToolRequest | None = None
    # chat documents for templates with a ``documents`` variable (see sipp.documents)
    documents: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class EmbedRequest:
    """A validated embed request for one input text."""

    input: str
    local: LocalEmbedOptions | None
    endpoint_options: Mapping[str, Any] | None
    provider_options: Mapping[str, Any] | None
    request_id: str = ""


class RunSink(Protocol):
    """What a producer (engine thread, transport loop) may do with one run.

    Call :meth:`push` for each token batch, then exactly one of :meth:`complete` or
    :meth:`fail`; later calls are ignored. All methods are safe from any thread.
    """

    def push(
        self, text: str, token_count: int, tool_calls: tuple[dict[str, Any], ...] = ()
    ) -> None:
        """Deliver one token batch (dropped unless the caller streams tokens);
        ``tool_calls`` are tool-call deltas that follow ``text``."""

    def complete(self, payload: dict[str, Any]) -> None:
        """Finish successfully; ``payload`` is the response without its ``endpoint`` key."""

    def fail(self, error: BaseException) -> None:
        """Finish with an error."""

    def on_cancel(self, canceller: Callable[[str], None]) -> None:
        """Register how to stop the work; called at most once, with the cancel reason."""
