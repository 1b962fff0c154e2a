"""Provider endpoints: query, chat and embed sent straight to OpenAI, an OpenAI-compatible
API or Anthropic.

Mapping (see :mod:`sipp.providers.openai`, :mod:`sipp.providers.anthropic`): query →
completions or one Anthropic user message, chat → chat completions or Anthropic messages,
embed → embeddings (Anthropic: unsupported). ``emit_tokens=True`` uses the provider's SSE
stream. Failures are :class:`~sipp.errors.ProviderError` keeping provider, kind, status,
the (redacted) body and ``retry_after``.

A correlation header (:meth:`ProviderEndpoint.set_correlation_header`) is off by default;
when set, every call sends the run's ``request_id`` under that header name. The gateway
server turns it on for its provider targets (OpenAI: ``x-client-request-id``;
OpenAI-compatible: the target's ``correlation_header``; Anthropic: none).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, cast

from sipp._validate import RESERVED_CORRELATION_HEADERS, check_header_name
from sipp.descriptors import ProviderDescriptor
from sipp.endpoints.base import Capability, Endpoint, Operation, OptionGroup
from sipp.errors import (
    ConfigurationError,
    ProviderError,
    SippError,
    UnsupportedOperationError,
)
from sipp.providers import anthropic, openai
from sipp.providers._common import ParsedEmbedding, ParsedText, ProviderStreamError
from sipp.providers._errors import ProviderFormatError, error_from_payload, http_error, redact
from sipp.requests import EmbedRequest, RunSink, TextRequest
from sipp.transports.driver import Respond, ResponseTooLargeError, RunDriver
from sipp.transports.http import (
    MAX_ERROR_BODY_BYTES,
    CallFailure,
    HttpCall,
    HttpClient,
    Response,
    encode_json,
    retry_after_seconds,
)
from sipp.transports.sse import SseError
from sipp.types import ChatMessage, EndpointRef

__all__ = ["ProviderEndpoint"]

_JSON = "application/json"


class ProviderEndpoint(Endpoint):
    """An endpoint that calls a provider API directly (see :class:`ProviderDescriptor`)."""

    kind = "provider"
    accepts: ClassVar[frozenset[OptionGroup]] = frozenset({"provider_options"})

    def __init__(self, ref: EndpointRef, descriptor: ProviderDescriptor) -> None:
        if not isinstance(descriptor, ProviderDescriptor):
            raise ConfigurationError(
                f"descriptor must be a ProviderDescriptor, got {type(descriptor).__name__}"
            )
        super().__init__(ref)
        self.descriptor = descriptor
        self.provider = descriptor.provider
        if descriptor.base_url is not None:
            self._base = descriptor.base_url
        elif self.provider == "anthropic":
            self._base = anthropic.DEFAULT_BASE_URL
        else:
            self._base = openai.DEFAULT_BASE_URL
        self._headers = self._static_headers()
        self._secrets = self._secret_values()
        self._http = HttpClient(descriptor.timeouts)
        self.correlation_header: str | None = None

    def set_correlation_header(self, name: str | None) -> bool:
        """Send each run's ``request_id`` upstream under header ``name`` (None: stop).

        The name must be a valid HTTP header name that is not a transport or
        authentication header of this endpoint (``authorization``, ``content-type``, ...).
        """
        if name is None:
            self.correlation_header = None
            return True
        check_header_name("correlation_header", name)
        taken = {key.lower() for key in self._headers} | RESERVED_CORRELATION_HEADERS
        if name.lower() in taken:
            raise ConfigurationError(
                f"correlation_header must not replace the {name.lower()} header")
        self.correlation_header = name
        return True

    def _correlation(self, request_id: str) -> dict[str, str] | None:
        header = self.correlation_header
        if header is None or not request_id:
            return None
        return {header: request_id}

    def capability(self, operation: Operation) -> Capability:
        if operation == "embed" and self.provider == "anthropic":
            return "unsupported"
        return "unknown"

    def unsupported_reason(self, operation: Operation) -> str | None:
        if operation == "embed" and self.provider == "anthropic":
            return anthropic.EMBED_UNSUPPORTED
        return None

    # ------------------------------------------------------------ operations
    def start_text(self, request: TextRequest, sink: RunSink) -> None:
        model = self.descriptor.model
        stream = request.emit_tokens
        parse: Callable[[Any], ParsedText]
        if self.provider == "anthropic":
            messages = (
                (ChatMessage("user", request.prompt),)
                if request.operation == "query" and request.prompt is not None
                else request.messages or ()
            )
            body = anthropic.messages_body(
                model, messages, request.options, stream=stream,
                provider_options=request.provider_options, tools=request.tools,
            )
            path, parse = anthropic.MESSAGES_PATH, anthropic.parse_message
        elif request.operation == "query":
            assert request.prompt is not None
            body = openai.completion_body(
                self.provider, model, request.prompt, request.options, stream=stream,
                provider_options=request.provider_options,
            )
            path, parse = openai.COMPLETION_PATH, openai.parse_completion
        else:
            body = openai.chat_body(
                self.provider, model, request.messages or (), request.options, stream=stream,
                provider_options=request.provider_options, tools=request.tools,
            )
            path, parse = openai.CHAT_PATH, openai.parse_chat
        respond = self._respond(path, encode_json(body), self._correlation(request.request_id),
                                stream=stream)
        driver = RunDriver(sink, self._new_call(), text=True)
        if stream:
            # the decoders are the driver's StreamDecoder themselves (no wrapper call per
            # event on the streaming path)
            decoder = (
                anthropic.AnthropicStream()
                if self.provider == "anthropic"
                else openai.OpenAIStream(request.operation)
            )
            self._http.start(driver.call, driver.stream(respond, decoder, self._translate))
        else:
            self._http.start(driver.call, driver.finite(
                respond, lambda body: _text_payload(parse(_json_body(body))), self._translate))

    def start_embed(self, request: EmbedRequest, sink: RunSink) -> None:
        if self.provider == "anthropic":
            raise UnsupportedOperationError(
                f"unsupported operation embed on endpoint provider:{self.ref.id}: "
                + anthropic.EMBED_UNSUPPORTED
            )
        body = openai.embedding_body(
            self.provider, self.descriptor.model, request.input, request.provider_options
        )
        respond = self._respond(openai.EMBEDDING_PATH, encode_json(body),
                                self._correlation(request.request_id), stream=False)
        driver = RunDriver(sink, self._new_call(), text=False)
        self._http.start(driver.call, driver.finite(
            respond, lambda body: _embed_payload(openai.parse_embedding(_json_body(body))),
            self._translate))

    def close(self) -> None:
        """Abort in-flight calls (their runs fail) and close pooled connections."""
        self._http.close()

    # ------------------------------------------------------------ internals
    def _static_headers(self) -> dict[str, str]:
        d = self.descriptor
        headers = dict(d.static_headers or ())
        if self.provider == "anthropic":
            assert d.api_key is not None
            headers["x-api-key"] = d.api_key
            headers["anthropic-version"] = d.version or anthropic.DEFAULT_VERSION
        elif d.api_key is not None:
            headers["Authorization"] = f"Bearer {d.api_key}"
        else:
            assert d.auth_header_name is not None and d.auth_header_value is not None
            headers[d.auth_header_name] = d.auth_header_value
        headers["Content-Type"] = _JSON
        return headers

    def _secret_values(self) -> list[str]:
        d = self.descriptor
        values = [d.api_key or "", d.auth_header_value or ""]
        pairs = cast("tuple[tuple[str, str], ...]", d.static_headers or ())
        values += [value for _, value in pairs]
        return [v for v in values if v]

    def _new_call(self) -> HttpCall:
        try:
            return self._http.new_call()
        except CallFailure as exc:
            raise ProviderError(exc.message, provider=self.provider, kind="transport") from exc

    def _url(self, path: str) -> str:
        return self._base + path

    def _respond(self, path: str, payload: bytes, extra: dict[str, str] | None, *,
                 stream: bool) -> Respond:
        """Post to ``path``; an error status, or a stream request answered with anything but
        SSE, raises (the provider's error body kept)."""

        async def respond(call: HttpCall) -> Response:
            headers = dict(self._headers)
            headers["Accept"] = "text/event-stream" if stream else _JSON
            if extra:
                headers.update(extra)
            response = await call.post(self._url(path), headers, payload, stream=stream)
            status: int = response.status
            if not 200 <= status < 300:
                body, truncated = await call.read_body(response, MAX_ERROR_BODY_BYTES)
                raise http_error(
                    self.provider, status, response.reason, body, truncated,
                    retry_after=retry_after_seconds(response.headers),
                    request_id=response.headers.get("x-request-id")
                    or response.headers.get("request-id"),
                    secrets=self._secrets,
                )
            content_type = response.headers.get("content-type", "")
            if stream and not content_type.startswith("text/event-stream"):
                body, _ = await call.read_body(response, MAX_ERROR_BODY_BYTES)
                try:
                    obj = json.loads(body)
                except (UnicodeDecodeError, json.JSONDecodeError):
                    obj = None
                if isinstance(obj, dict) and obj.get("error") is not None:
                    raise ProviderStreamError(obj)
                raise ProviderFormatError(
                    f"stream request answered with content type {content_type!r}"
                )
            return response

        return respond

    def _translate(self, exc: BaseException) -> BaseException:
        provider = self.provider
        if isinstance(exc, SippError):
            return exc
        if isinstance(exc, ProviderStreamError):
            return error_from_payload(provider, exc.payload, secrets=self._secrets)
        if isinstance(exc, ProviderFormatError | SseError | ResponseTooLargeError):
            return ProviderError(
                _redact(f"provider error (provider {provider}): invalid response: {exc}",
                        self._secrets),
                provider=provider, kind="provider",
            )
        if isinstance(exc, CallFailure):
            kind = "timeout" if exc.kind == "timeout" else "transport"
            return ProviderError(
                _redact(f"provider error ({kind} {provider}): {exc.message}", self._secrets),
                provider=provider, kind=kind,
            )
        if isinstance(exc, Exception):
            return ProviderError(
                _redact(f"provider error (transport {provider}): {type(exc).__name__}: {exc}",
                        self._secrets),
                provider=provider, kind="transport",
            )
        return exc


def _redact(text: str, secrets: Iterable[str]) -> str:
    result: str = redact(text, secrets)
    return result


def _json_body(body: bytes) -> Any:
    """A finite response body as JSON; an ``error`` object in it is the provider's error."""
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProviderFormatError(f"response is not valid JSON: {exc}") from exc
    if isinstance(obj, dict) and obj.get("error") is not None:
        raise ProviderStreamError(obj)
    return obj


def _text_payload(parsed: ParsedText) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "text": parsed.text,
        "finish_reason": parsed.finish_reason,
        "usage": parsed.usage,
        "local_stats": None,
    }
    if parsed.tool_calls:
        payload["tool_calls"] = parsed.tool_calls
    if parsed.logprobs:
        payload["logprobs"] = parsed.logprobs
    return payload


def _embed_payload(parsed: ParsedEmbedding) -> dict[str, Any]:
    return {
        "values": parsed.values,
        "usage": parsed.usage,
        "local_stats": None,
        "pooling": None,
        "normalized": None,
    }
