"""The contract every endpoint kind implements, and the request values the client hands it."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sipp.runs import RunSink
from sipp.types import (
    ChatMessage,
    EndpointRef,
    LocalEmbedOptions,
    LocalTextOptions,
    SippTextOptions,
)

__all__ = [
    "LOCAL_ONLY_OPTION_KEYS",
    "Capability",
    "EmbedRequest",
    "Endpoint",
    "Operation",
    "TextRequest",
]

Operation = Literal["query", "chat", "embed"]
Capability = Literal["supported", "unsupported", "unknown"]

# Fields only a local endpoint understands; gateways refuse them inside endpoint_options.
LOCAL_ONLY_OPTION_KEYS = frozenset(
    {"context_key", "contextKey", "grammar", "json_schema", "jsonSchema", "sampling",
     "media", "normalize", "local"}
)


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


@dataclass(frozen=True)
class EmbedRequest:
    """A validated embed request for one input text."""

    input: str
    local: LocalEmbedOptions | None
    endpoint_options: Mapping[str, Any] | None
    provider_options: Mapping[str, Any] | None
    request_id: str = ""


class Endpoint(abc.ABC):
    """One registered endpoint. ``start_*`` must not block on the work: they hand it to an
    engine thread or an I/O thread and return; results flow through the ``RunSink``.
    Errors found before any work starts may be raised (the client fails the run with them).
    """

    kind: Literal["local", "gateway", "provider"]

    def __init__(self, ref: EndpointRef) -> None:
        self.ref = ref

    @abc.abstractmethod
    def capability(self, operation: Operation) -> Capability:
        """Whether this endpoint can run ``operation`` (remote endpoints answer "unknown")."""

    @abc.abstractmethod
    def start_text(self, request: TextRequest, sink: RunSink) -> None:
        """Begin a query or chat."""

    @abc.abstractmethod
    def start_embed(self, request: EmbedRequest, sink: RunSink) -> None:
        """Begin an embedding."""

    def set_correlation_header(self, name: str | None) -> bool:
        """Send each run's ``request_id`` upstream under header ``name`` (None: stop).
        False when this endpoint has no upstream request to carry it (the default)."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; pending runs fail with ``EngineClosedError`` or similar."""

    def metrics(self) -> dict[str, Any] | None:
        """Runtime metrics snapshot, if the endpoint keeps any."""
        return None
