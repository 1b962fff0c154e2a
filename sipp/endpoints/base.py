"""The contract every endpoint kind implements (its request values live in sipp.requests)."""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Literal

from sipp.requests import EmbedRequest, RunSink, TextRequest
from sipp.types import EndpointRef

__all__ = [
    "LOCAL_ONLY_OPTION_KEYS",
    "Capability",
    "EmbedRequest",
    "Endpoint",
    "Operation",
    "OptionGroup",
    "TextRequest",
]

Operation = Literal["query", "chat", "embed"]
Capability = Literal["supported", "unsupported", "unknown"]
# The request option groups beyond ``options``: ``local`` (LocalTextOptions /
# LocalEmbedOptions), ``endpoint_options`` and ``provider_options``.
OptionGroup = Literal["local", "endpoint_options", "provider_options"]

# Fields only a local endpoint understands; gateways refuse them inside endpoint_options.
LOCAL_ONLY_OPTION_KEYS = frozenset(
    {"context_key", "contextKey", "grammar", "json_schema", "jsonSchema", "sampling",
     "media", "normalize", "local"}
)


class Endpoint(abc.ABC):
    """One registered endpoint. ``start_*`` must not block on the work: they hand it to an
    engine thread or an I/O thread and return; results flow through the ``RunSink``.
    Errors found before any work starts may be raised (the client fails the run with them).
    """

    kind: Literal["local", "gateway", "provider"]
    accepts: ClassVar[frozenset[OptionGroup]] = frozenset()
    """The option groups this endpoint takes; the client refuses the others before
    ``start_*`` (the one place requests are checked against the endpoint)."""
    refused_option_keys: ClassVar[frozenset[str]] = frozenset()
    """Keys ``endpoint_options`` must not carry here."""

    def __init__(self, ref: EndpointRef) -> None:
        self.ref = ref

    def unsupported_reason(self, operation: Operation) -> str | None:
        """Why ``operation`` is unsupported here, for the client's error (None: no detail)."""
        return None

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
