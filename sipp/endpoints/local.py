"""``LocalEndpoint``: a GGUF model loaded in-process and run by its engine thread."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

from sipp.endpoints.base import Capability, Endpoint, Operation, OptionGroup
from sipp.engine.core import Engine
from sipp.errors import ConfigurationError, InvalidRequestError
from sipp.models.load import resolve_local
from sipp.requests import EmbedRequest, RunSink, TextRequest
from sipp.types import EndpointRef, SippModelInfo

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
        self._source = str(path)
        self._chat_template: str | None = getattr(descriptor, "chat_template", None)
        load = resolve_local(
            path, getattr(descriptor, "config", None), getattr(descriptor, "resolve", None)
        )
        self._engine = Engine.load(
            str(load.path),
            load.config,
            chat_template=getattr(descriptor, "chat_template", None),
            name=ref.id,
            progress=getattr(descriptor, "progress", None),
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

    def _native_model(self) -> Any:
        model = self._engine.model
        return getattr(model, "native", model)  # the engine's wrapper, or the model itself

    def tokenize(self, text: str, *, add_special: bool = True,
                 parse_special: bool = False) -> list[int]:
        """Token ids of ``text`` with this model's vocabulary (no context needed)."""
        if not isinstance(text, str):
            raise InvalidRequestError(f"text must be a string, got {type(text).__name__}")
        result: list[int] = self._native_model().tokenize(
            text, add_special=add_special, parse_special=parse_special
        )
        return result

    def detokenize(self, ids: Sequence[int], *, remove_special: bool = False,
                   unparse_special: bool = False) -> str:
        """The text of token ``ids`` (invalid UTF-8 replaced)."""
        model = self._native_model()
        if isinstance(ids, str | bytes) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            raise InvalidRequestError("ids must be a sequence of integer token ids")
        bad = [i for i in ids if not 0 <= i < model.n_vocab]
        if bad:
            raise InvalidRequestError(
                f"ids: token {bad[0]} is outside this vocabulary [0, {model.n_vocab})"
            )
        text: str = model.detokenize(list(ids), remove_special, unparse_special)
        return text

    def model_info(self) -> SippModelInfo:
        """Facts of the loaded model (see :class:`sipp.types.SippModelInfo`)."""
        model = self._native_model()
        info = self._engine.info
        template = self._chat_template or model.chat_template()
        return SippModelInfo(
            endpoint=self.ref.id,
            source=self._source,
            path=str(model.path),
            architecture=model.architecture,
            description=model.description,
            n_params=int(model.n_params),
            size=int(model.size),
            n_ctx_train=int(model.n_ctx_train),
            n_ctx=int(getattr(info, "n_ctx", 0) or 0),
            n_vocab=int(model.n_vocab),
            n_layer=int(model.n_layer),
            embedding_size=int(model.n_embd_out),
            chat_template=template,
            capabilities={
                "query": self.capability("query") == "supported",
                "chat": self.capability("chat") == "supported",
                "embed": self.capability("embed") == "supported",
                "media": self.supports_media,
            },
        )

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
                "the model has no chat template (tokenizer.chat_template): call query() with "
                "a raw prompt, or give it one: LocalModelDescriptor(chat_template=...), "
                'chat_template = "FILE" on the gateway TOML target, or --chat-template FILE '
                "(sipp, sipp serve)"
            )
        if operation == "embed" and not info.can_embed:
            return (
                "the model does not produce embeddings: load an embedding model, or load this "
                "one with context.embeddings=True (NativeRuntimeConfig; gateway TOML "
                "[targets.runtime.context] embeddings = true; sipp serve --embeddings) and a "
                "pooling type other than none"
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
