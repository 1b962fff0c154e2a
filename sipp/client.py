"""``SippClient``: the endpoint registry and the three operations.

Operation code never changes with the endpoint: ``query``, ``chat`` and ``embed`` take an
``EndpointRef`` from :meth:`SippClient.add` and return a run at once.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from sipp._validate import check_json_object
from sipp.documents import coerce_documents, with_documents
from sipp.endpoints.base import Endpoint, Operation
from sipp.endpoints.kinds import DEFAULT_ENDPOINT_KINDS, EndpointEntry, entry_for
from sipp.errors import (
    AmbiguousEndpointError,
    CancelledError,
    ConfigurationError,
    EndpointNotFoundError,
    InvalidRequestError,
    SippError,
    UnsupportedOperationError,
)
from sipp.pii.apply import RestoringSink, mask_embed_inputs, mask_text_request
from sipp.pii.policy import PiiPolicy
from sipp.rag import RagAnswer, retrieve_and_chat
from sipp.requests import EmbedRequest, TextRequest
from sipp.runs import RunSink, SippEmbeddingRun, SippTextRun
from sipp.tools import ToolChoice, ToolRequest, ToolSpec, parse_tool_choice, parse_tools
from sipp.types import (
    ChatMessage,
    EndpointRef,
    LocalEmbedOptions,
    LocalTextOptions,
    SippModelInfo,
    SippTextOptions,
)
from sipp.vector import VectorIndex

__all__ = ["SippClient"]

_EMBED_WINDOW = 16
"""Most runs of one embedding batch started at once (the rest follow as they finish)."""
_request_ids = itertools.count(1)


def _close_endpoints(endpoints: dict[str, Endpoint]) -> None:
    if endpoints:
        warnings.warn(
            f"SippClient with {len(endpoints)} open endpoint(s) was not closed; "
            "call close() or use it as a context manager",
            ResourceWarning,
            stacklevel=2,
        )
        for endpoint in list(endpoints.values()):
            endpoint.close()
        endpoints.clear()


def _json_options(name: str, value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return check_json_object(name, value, error=InvalidRequestError)


def _coerce_messages(
    messages: Sequence[ChatMessage | Mapping[str, Any]],
) -> tuple[ChatMessage, ...]:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidRequestError(
            "messages must be a list of ChatMessage or {role, content, ...} dicts"
        )
    if not messages:
        raise InvalidRequestError("chat messages must not be empty")
    result: list[ChatMessage] = []
    for index, message in enumerate(messages):
        if isinstance(message, ChatMessage):
            result.append(message)
        elif isinstance(message, Mapping):
            try:
                result.append(ChatMessage.from_dict(message))
            except InvalidRequestError as exc:
                raise InvalidRequestError(f"messages[{index}]: {exc.message}") from exc
        else:
            raise InvalidRequestError(
                f"messages[{index}] must be a ChatMessage or a dict, got {type(message).__name__}"
            )
    return tuple(result)


class SippClient:
    """A registry of endpoints and the entry point of ``query``, ``chat`` and ``embed``.

    Use it as a context manager (sync or async) or call :meth:`close` to release every
    loaded model and connection.
    """

    endpoint_kinds: ClassVar[Mapping[type, EndpointEntry]] = DEFAULT_ENDPOINT_KINDS
    """Descriptor class → endpoint kind and factory (a subclass may register others)."""

    def __init__(self, *, pii: PiiPolicy | None = None) -> None:
        """``pii``: the :class:`~sipp.pii.PiiPolicy` for every endpoint (see
        docs/pii-masking.md); :meth:`add` may set another per endpoint."""
        if pii is not None and not isinstance(pii, PiiPolicy):
            raise ConfigurationError(f"pii must be a PiiPolicy, got {type(pii).__name__}")
        self._pii = pii
        self._pii_by_id: dict[str, PiiPolicy] = {}
        self._lock = threading.Lock()
        self._endpoints: dict[str, Endpoint] = {}
        self._closed = False
        self._finalizer = weakref.finalize(self, _close_endpoints, self._endpoints)

    # ------------------------------------------------------------------ registry
    def add(self, id: str, descriptor: Any, *, pii: PiiPolicy | None = None) -> EndpointRef:
        """Register ``descriptor`` under ``id`` and return its :class:`EndpointRef`.

        Local descriptors load their model now (blocking). Reusing an id replaces the old
        endpoint, which is closed once the new one is ready. ``pii`` replaces the client's
        PII policy for this endpoint.
        """
        self._check_open()
        if pii is not None and not isinstance(pii, PiiPolicy):
            raise ConfigurationError(f"pii must be a PiiPolicy, got {type(pii).__name__}")
        entry = entry_for(self.endpoint_kinds, descriptor)
        if entry is None:
            raise ConfigurationError(
                "descriptor must be LocalModelDescriptor, ProviderDescriptor, or "
                f"GatewayDescriptor, got {type(descriptor).__name__}"
            )
        kind = entry.kind
        if not isinstance(id, str) or not id:
            raise ConfigurationError(f"{kind} id must be a non-empty string")
        if id != id.strip():
            raise ConfigurationError(f"{kind} id must not contain surrounding whitespace")
        ref = EndpointRef(kind, id)
        self._install(entry.create(ref, descriptor), pii)
        return ref

    def register(self, endpoint: Endpoint, *, pii: PiiPolicy | None = None) -> EndpointRef:
        """Register an endpoint object built elsewhere (a kind this client's table does not
        know, such as the gateway's router over other endpoints) under ``endpoint.ref``;
        like :meth:`add` otherwise."""
        self._check_open()
        if not isinstance(endpoint, Endpoint):
            raise ConfigurationError(f"endpoint must be an Endpoint, got {type(endpoint).__name__}")
        if pii is not None and not isinstance(pii, PiiPolicy):
            raise ConfigurationError(f"pii must be a PiiPolicy, got {type(pii).__name__}")
        self._install(endpoint, pii)
        return endpoint.ref

    def _install(self, endpoint: Endpoint, pii: PiiPolicy | None) -> None:
        id = endpoint.ref.id
        with self._lock:
            if self._closed:
                endpoint.close()
                raise ConfigurationError("SippClient is closed")
            old = self._endpoints.pop(id, None)
            self._endpoints[id] = endpoint
            if pii is None:
                self._pii_by_id.pop(id, None)
            else:
                self._pii_by_id[id] = pii
        if old is not None:
            old.close()

    def remove(self, endpoint: EndpointRef | str) -> None:
        """Unregister and close one endpoint."""
        id = endpoint.id if isinstance(endpoint, EndpointRef) else endpoint
        with self._lock:
            old = self._endpoints.pop(id, None)
        if old is None:
            raise EndpointNotFoundError(f"endpoint not found: {id}")
        old.close()

    def endpoints(self) -> list[EndpointRef]:
        """The registered endpoints, in registration order."""
        with self._lock:
            return [endpoint.ref for endpoint in self._endpoints.values()]

    def metrics(self, endpoint: EndpointRef | None = None) -> dict[str, Any]:
        """Runtime metrics of one endpoint, or ``{id: metrics}`` for all that keep any."""
        if endpoint is not None:
            found = self._lookup(endpoint)
            return found.metrics() or {}
        with self._lock:
            endpoints = list(self._endpoints.values())
        return {e.ref.id: m for e in endpoints if (m := e.metrics()) is not None}

    def endpoint(self, ref: EndpointRef) -> Endpoint:
        """The endpoint object behind ``ref`` (for advanced use: metrics, introspection)."""
        return self._lookup(ref)

    # ------------------------------------------------------------------ model facts
    def tokenize(self, text: str, *, endpoint: EndpointRef | None = None,
                 add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of ``text`` with a local endpoint's vocabulary. ``add_special`` adds
        BOS/EOS as the model is configured; ``parse_special`` turns special-token text
        (``<start_of_turn>``) into those tokens. ``endpoint`` may be omitted when exactly
        one local endpoint is registered."""
        found = self._local_endpoint(endpoint, "tokenize")
        result: list[int] = found.tokenize(text, add_special=add_special,
                                           parse_special=parse_special)
        return result

    def detokenize(self, ids: Sequence[int], *, endpoint: EndpointRef | None = None,
                   remove_special: bool = False, unparse_special: bool = False) -> str:
        """The text of token ``ids`` on a local endpoint (inverse of :meth:`tokenize`)."""
        found = self._local_endpoint(endpoint, "detokenize")
        text: str = found.detokenize(ids, remove_special=remove_special,
                                     unparse_special=unparse_special)
        return text

    def model_info(self, endpoint: EndpointRef | None = None) -> SippModelInfo:
        """Facts of a local endpoint's model: architecture, ``n_ctx_train``, ``n_params``,
        ``size``, chat template, embedding size and capabilities (see ``SippModelInfo``)."""
        info: SippModelInfo = self._local_endpoint(endpoint, "model_info").model_info()
        return info

    def _local_endpoint(self, ref: EndpointRef | None, what: str) -> Any:
        self._check_open()
        if ref is None:
            with self._lock:
                local = [e for e in self._endpoints.values() if e.ref.kind == "local"]
            if len(local) != 1:
                raise AmbiguousEndpointError(
                    f"{what}: pass endpoint=... ({len(local)} local endpoints are registered; "
                    "only a single one is chosen implicitly)"
                )
            return local[0]
        found = self._lookup(ref)
        if not hasattr(found, what):
            raise UnsupportedOperationError(
                f"{what} needs a local endpoint; {ref.kind}:{ref.id} runs elsewhere"
            )
        return found

    def close(self) -> None:
        """Close every endpoint; pending local runs fail with ``EngineClosedError``."""
        with self._lock:
            self._closed = True
            endpoints = list(self._endpoints.values())
            self._endpoints.clear()
        self._finalizer.detach()
        for endpoint in endpoints:
            endpoint.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close` (runs it in a worker thread)."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> SippClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> SippClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ operations
    def query(
        self,
        prompt: str,
        *,
        endpoint: EndpointRef | None = None,
        options: SippTextOptions | None = None,
        local: LocalTextOptions | None = None,
        endpoint_options: Mapping[str, Any] | None = None,
        provider_options: Mapping[str, Any] | None = None,
        emit_tokens: bool = False,
        request_id: str | None = None,
    ) -> SippTextRun:
        """Generate from ``prompt`` exactly as given (no chat template)."""
        if not isinstance(prompt, str):
            raise InvalidRequestError(f"prompt must be a string, got {type(prompt).__name__}")
        return self._start_text(
            "query", prompt, None, endpoint, options, local, endpoint_options,
            provider_options, emit_tokens, request_id,
        )

    def chat(
        self,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        *,
        endpoint: EndpointRef | None = None,
        options: SippTextOptions | None = None,
        local: LocalTextOptions | None = None,
        endpoint_options: Mapping[str, Any] | None = None,
        provider_options: Mapping[str, Any] | None = None,
        emit_tokens: bool = False,
        request_id: str | None = None,
        tools: Sequence[Mapping[str, Any] | ToolSpec] | None = None,
        tool_choice: str | Mapping[str, Any] | ToolChoice | None = None,
        parallel_tool_calls: bool = True,
        documents: Sequence[Mapping[str, Any]] | None = None,
    ) -> SippTextRun:
        """Generate the assistant's reply to ``messages`` (rendered by the endpoint).

        ``documents`` (``[{"id", "text", ...}]``) reach a local chat template that takes a
        ``documents`` variable; otherwise they become a system block (see
        :mod:`sipp.documents`).

        ``tools`` are OpenAI function tools; ``tool_choice`` is ``"auto"`` (default with
        tools), ``"none"``, ``"required"`` or ``{"type": "function", "function": {"name":
        ...}}``. Calls come back in the response's ``tool_calls`` (and as ``TokenBatch``
        ``tool_calls`` deltas when streaming) with ``finish_reason="tool_calls"``.
        """
        specs = parse_tools(tools)
        choice = parse_tool_choice(tool_choice, specs)
        if not isinstance(parallel_tool_calls, bool):
            raise InvalidRequestError("parallel_tool_calls must be a bool")
        return self._start_text(
            "chat", None, _coerce_messages(messages), endpoint, options, local,
            endpoint_options, provider_options, emit_tokens, request_id,
            ToolRequest(specs, choice, parallel_tool_calls) if specs or tool_choice else None,
            coerce_documents(documents),
        )

    def retrieve_and_chat(
        self,
        question: str,
        *,
        index: VectorIndex,
        endpoint: EndpointRef | None = None,
        k: int = 4,
        filter: Mapping[str, Any] | None = None,
        embed_endpoint: EndpointRef | None = None,
        options: SippTextOptions | None = None,
        timeout: float | None = None,
    ) -> RagAnswer:
        """Answer ``question`` with the ``k`` best documents of ``index`` (blocking); the
        result carries the answer ``text`` and the document ``ids`` used. See
        :func:`sipp.rag.retrieve_and_chat`."""
        return retrieve_and_chat(
            self, question, index=index, endpoint=endpoint, k=k, filter=filter,
            embed_endpoint=embed_endpoint, options=options, timeout=timeout,
        )

    def embed(
        self,
        input: str | Sequence[str],
        *,
        endpoint: EndpointRef | None = None,
        local: LocalEmbedOptions | None = None,
        endpoint_options: Mapping[str, Any] | None = None,
        provider_options: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> SippEmbeddingRun:
        """Embed one text (``values`` is one vector) or a list of texts (``values`` is one
        vector per input, in order; the inputs are batched together by local engines)."""
        if isinstance(input, str):
            inputs: tuple[str, ...] = (input,)
        elif isinstance(input, Sequence) and not isinstance(input, bytes):
            inputs = tuple(input)
            if not inputs:
                raise InvalidRequestError("embed input list must not be empty")
            for index, item in enumerate(inputs):
                if not isinstance(item, str):
                    raise InvalidRequestError(
                        f"input[{index}] must be a string, got {type(item).__name__}"
                    )
        else:
            raise InvalidRequestError(
                f"input must be a string or a list of strings, got {type(input).__name__}"
            )
        if local is not None and not isinstance(local, LocalEmbedOptions):
            raise InvalidRequestError("local must be a LocalEmbedOptions for embed")
        found = self._resolve(endpoint, "embed")
        ep_options = _json_options("endpoint_options", endpoint_options)
        pr_options = _json_options("provider_options", provider_options)
        self._validate_boundaries(found, local, ep_options, pr_options, "embed")
        inputs = tuple(mask_embed_inputs(self._pii_for(found), found.ref.kind, inputs))
        rid = request_id or f"req-{next(_request_ids)}"
        requests = [
            EmbedRequest(text, local, ep_options, pr_options, rid) for text in inputs
        ]
        if isinstance(input, str):
            sink = RunSink(found.ref, wants_tokens=False, request_id=rid)
            self._dispatch(lambda: found.start_embed(requests[0], sink), sink)
            return SippEmbeddingRun(sink)
        return SippEmbeddingRun(self._fan_out_embed(found, requests, rid))

    # ------------------------------------------------------------------ internals
    def _pii_for(self, endpoint: Endpoint) -> PiiPolicy | None:
        with self._lock:
            return self._pii_by_id.get(endpoint.ref.id, self._pii)

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("SippClient is closed")

    def _lookup(self, ref: EndpointRef) -> Endpoint:
        if not isinstance(ref, EndpointRef):
            raise InvalidRequestError(
                f"endpoint must be an EndpointRef returned by add(), got {type(ref).__name__}"
            )
        with self._lock:
            found = self._endpoints.get(ref.id)
        if found is None or found.ref.kind != ref.kind:
            raise EndpointNotFoundError(f"endpoint not found: {ref.kind}:{ref.id}")
        return found

    def _resolve(self, ref: EndpointRef | None, operation: Operation) -> Endpoint:
        self._check_open()
        if ref is not None:
            found = self._lookup(ref)
            if found.capability(operation) == "unsupported":
                raise UnsupportedOperationError(
                    f"unsupported operation {operation} on endpoint {ref.kind}:{ref.id}"
                    + (f": {reason}" if (reason := found.unsupported_reason(operation)) else "")
                )
            return found
        with self._lock:
            candidates = [
                e for e in self._endpoints.values()
                if e.ref.kind == "local" and e.capability(operation) == "supported"
            ]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise AmbiguousEndpointError(
                f"no supported endpoint for {operation}: pass endpoint=... (only a single "
                "local endpoint that supports the operation is chosen implicitly)"
            )
        names = ", ".join(e.ref.id for e in candidates)
        raise AmbiguousEndpointError(
            f"ambiguous endpoint for {operation}: several local endpoints support it "
            f"({names}); pass endpoint=..."
        )

    @staticmethod
    def _validate_boundaries(
        endpoint: Endpoint,
        local: LocalTextOptions | LocalEmbedOptions | None,
        endpoint_options: Mapping[str, Any] | None,
        provider_options: Mapping[str, Any] | None,
        operation: Operation,
    ) -> None:
        """Refuse option groups ``endpoint`` does not accept: the only such check on the
        way to the endpoint (endpoints trust what reaches ``start_*``)."""
        kind = endpoint.ref.kind
        accepts = endpoint.accepts
        if local is not None and not local.is_empty() and "local" not in accepts:
            label = "embed" if operation == "embed" else "text"
            raise InvalidRequestError(f"local {label} options are not valid for {kind} endpoints")
        if endpoint_options and "endpoint_options" not in accepts:
            raise InvalidRequestError(f"endpoint_options are not valid for {kind} endpoints")
        if provider_options and "provider_options" not in accepts:
            raise InvalidRequestError(f"provider_options are not valid for {kind} endpoints")
        for key in endpoint_options or {}:
            if key in endpoint.refused_option_keys:
                raise InvalidRequestError(
                    f"endpoint_options cannot contain local-only field: {key}"
                )

    def _start_text(
        self,
        operation: Literal["query", "chat"],
        prompt: str | None,
        messages: tuple[ChatMessage, ...] | None,
        ref: EndpointRef | None,
        options: SippTextOptions | None,
        local: LocalTextOptions | None,
        endpoint_options: Mapping[str, Any] | None,
        provider_options: Mapping[str, Any] | None,
        emit_tokens: bool,
        request_id: str | None,
        tools: ToolRequest | None = None,
        documents: tuple[dict[str, Any], ...] = (),
    ) -> SippTextRun:
        if options is not None and not isinstance(options, SippTextOptions):
            raise InvalidRequestError("options must be a SippTextOptions")
        if local is not None and not isinstance(local, LocalTextOptions):
            raise InvalidRequestError(f"local must be a LocalTextOptions for {operation}")
        if not isinstance(emit_tokens, bool):
            raise InvalidRequestError("emit_tokens must be a bool")
        found = self._resolve(ref, operation)
        ep_options = _json_options("endpoint_options", endpoint_options)
        pr_options = _json_options("provider_options", provider_options)
        self._validate_boundaries(found, local, ep_options, pr_options, operation)
        rid = request_id or f"req-{next(_request_ids)}"
        policy = self._pii_for(found)
        masking = policy is not None and policy.applies_to(found.ref.kind)
        if documents and messages is not None and (found.ref.kind != "local" or masking):
            messages, documents = with_documents(messages, documents), ()
        session, prompt, messages = mask_text_request(policy, found.ref.kind, prompt, messages)
        request = TextRequest(
            operation, prompt, messages, options or SippTextOptions(), local,
            ep_options, pr_options, emit_tokens, rid, tools, documents,
        )
        sink = RunSink(found.ref, wants_tokens=emit_tokens, request_id=rid)
        target = sink if session is None else RestoringSink(sink, session)
        self._dispatch(lambda: found.start_text(request, target), target)
        return SippTextRun(sink)

    @staticmethod
    def _dispatch(start: Callable[[], None], sink: RunSink) -> None:
        """Start the work; an error the endpoint raises up front fails the run at once."""
        try:
            start()
        except SippError as exc:
            sink.fail(exc)

    def _fan_out_embed(
        self, endpoint: Endpoint, requests: list[EmbedRequest], request_id: str
    ) -> RunSink:
        """One run per input, at most ``_EMBED_WINDOW`` started at a time: a batch of any size
        (OpenAI clients send up to 2,048 inputs) never fills the engine's queue by itself."""
        parent = RunSink(endpoint.ref, wants_tokens=False, request_id=request_id)
        children = [RunSink(endpoint.ref, wants_tokens=False, request_id=request_id)
                    for _ in requests]
        lock = threading.Lock()
        state = {"next": 0, "in_flight": 0, "remaining": len(children)}
        flags = {"pumping": False, "finished": False}

        def pump() -> None:
            # a loop, not recursion: a child may finish inside its own dispatch
            with lock:
                if flags["pumping"]:
                    return
                flags["pumping"] = True
            try:
                while True:
                    with lock:
                        index = state["next"]
                        if (flags["finished"] or index >= len(children)
                                or state["in_flight"] >= _EMBED_WINDOW):
                            flags["pumping"] = False
                            return
                        state["next"] += 1
                        state["in_flight"] += 1
                    child = children[index]
                    child._add_done_callback(functools.partial(child_done, child))
                    self._dispatch(
                        functools.partial(endpoint.start_embed, requests[index], child), child
                    )
            except BaseException:
                with lock:
                    flags["pumping"] = False
                raise

        def child_done(child: RunSink) -> None:
            error: BaseException | None = None
            try:
                child._outcome()
            except BaseException as exc:
                error = exc
            with lock:
                state["in_flight"] -= 1
                state["remaining"] -= 1
                if flags["finished"]:
                    return
                finish = error is not None or state["remaining"] == 0
                flags["finished"] = finish
            if not finish:
                pump()
                return
            if error is not None:
                for other in children:
                    other._request_cancel("sibling_failed")
                parent.fail(error)
                return
            parent.complete(_merge_embeddings([c._outcome() for c in children]))

        def cancel_all(reason: str) -> None:
            with lock:
                flags["finished"] = True
            for child in children:
                child._request_cancel(reason)
            parent.fail(CancelledError(f"embedding cancelled: {reason}"))

        parent.on_cancel(cancel_all)
        pump()
        return parent


def _merge_embeddings(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    usage = None
    if all(p.get("usage") for p in payloads):
        usage = {
            key: sum(p["usage"][key] for p in payloads)
            for key in ("input_tokens", "output_tokens", "total_tokens")
        }
    first = payloads[0]
    return {
        "values": [p["values"] for p in payloads],
        "usage": usage,
        "local_stats": (
            {"inputs": len(payloads), "per_input": [p.get("local_stats") for p in payloads]}
            if first.get("local_stats") is not None
            else None
        ),
        "pooling": first.get("pooling"),
        "normalized": first.get("normalized"),
    }

