"""``LocalEndpoint``: a GGUF model loaded in-process and run by its engine thread."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from sipp.endpoints.base import Capability, Endpoint, Operation, OptionGroup
from sipp.engine.core import Engine
from sipp.errors import ConfigurationError
from sipp.requests import EmbedRequest, RunSink, TextRequest
from sipp.types import EndpointRef

__all__ = ["LocalEndpoint"]


class LocalEndpoint(Endpoint):
    """Loads ``descriptor.model_path`` (blocking; any model source: a path, a packaged
    name, ``hf://`` or a URL, downloaded into the model cache first) with
    ``descriptor.config`` and serves query, chat and embed from one engine thread.

    Capabilities come from the loaded model: ``query`` needs a decoder (and embeddings off),
    ``chat`` additionally a chat template (GGUF ``tokenizer.chat_template`` or the
    descriptor's override), ``embed`` pooled embedding output. ``local.media`` (images) on
    query and chat needs a projector (``multimodal.projector_path``), which loads with the
    model: :attr:`supports_media` and :attr:`media_marker` tell whether one is loaded and
    which marker stands for an image in a prompt.
    """

    kind = "local"
    accepts: ClassVar[frozenset[OptionGroup]] = frozenset({"local"})

    def __init__(self, ref: EndpointRef, descriptor: Any) -> None:
        super().__init__(ref)
        path = getattr(descriptor, "model_path", None)
        if not isinstance(path, str | os.PathLike) or not str(path):
            raise ConfigurationError("local descriptor model_path must be a non-empty path")
        from sipp.models.load import resolve_local

        load = resolve_local(
            path, getattr(descriptor, "config", None), getattr(descriptor, "resolve", None)
        )
        self._engine = Engine.load(
            str(load.path),
            load.config,
            chat_template=getattr(descriptor, "chat_template", None),
            name=ref.id,
        )

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def supports_media(self) -> bool:
        """Whether query and chat accept ``local.media`` (a vision projector is loaded)."""
        return self._engine.info.vision

    @property
    def media_marker(self) -> str | None:
        """The text that places one image in a prompt (``<__media__>``), or None."""
        return self._engine.info.media_marker

    def capability(self, operation: Operation) -> Capability:
        info = self._engine.info
        if operation == "query":
            ok = info.can_generate
        elif operation == "chat":
            ok = info.can_generate and info.has_chat_template
        else:
            ok = info.can_embed
        return "supported" if ok else "unsupported"

    def unsupported_reason(self, operation: Operation) -> str | None:
        """Why ``operation`` is unsupported here (used in the client's error message)."""
        info = self._engine.info
        if operation in ("query", "chat") and not info.can_generate:
            return "the model is loaded for embeddings only (it does not generate text)"
        if operation == "chat" and not info.has_chat_template:
            return (
                "the model has no chat template (tokenizer.chat_template); call query() with "
                "a raw prompt instead, or pass chat_template= on the LocalModelDescriptor"
            )
        if operation == "embed" and not info.can_embed:
            return (
                "the model does not produce embeddings; load an embedding model or set "
                "context.embeddings=True with a pooling type other than none"
            )
        return None

    def start_text(self, request: TextRequest, sink: RunSink) -> None:
        self._engine.submit_text(request, sink)

    def start_embed(self, request: EmbedRequest, sink: RunSink) -> None:
        self._engine.submit_embed(request, sink)

    def close(self) -> None:
        self._engine.close()

    def metrics(self) -> dict[str, Any] | None:
        if not self._engine.config.observability.metrics_enabled:
            return None
        return self._engine.metrics()
