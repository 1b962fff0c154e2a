"""Gateway endpoints: query, chat and embed sent to a Sipp gateway over HTTP.

Bodies and events follow :mod:`sipp.gateway.profile`. With ``emit_tokens=True`` the call
streams (SSE, parsed as bytes arrive); otherwise one JSON response. Gateway errors come back
as the same :class:`~sipp.errors.SippError` subclass, found by their ``code``; transport
problems are :class:`~sipp.errors.EndpointError` with ``kind`` transport, timeout, http or
protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from sipp._validate import check_header_name
from sipp.descriptors import GatewayDescriptor
from sipp.endpoints.base import (
    LOCAL_ONLY_OPTION_KEYS,
    Capability,
    Endpoint,
    Operation,
    OptionGroup,
)
from sipp.errors import ConfigurationError, EndpointError, SippError
from sipp.gateway import profile
from sipp.requests import EmbedRequest, RunSink, TextRequest
from sipp.tools import ToolCallDeltas
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
from sipp.transports.sse import SseError, SseEvent
from sipp.types import EndpointRef, FinishReason, Usage

__all__ = ["GatewayEndpoint"]


class GatewayEndpoint(Endpoint):
    """An endpoint backed by a gateway target (see :class:`GatewayDescriptor`)."""

    kind = "gateway"
    accepts: ClassVar[frozenset[OptionGroup]] = frozenset({"endpoint_options"})
    refused_option_keys = LOCAL_ONLY_OPTION_KEYS

    def __init__(self, ref: EndpointRef, descriptor: GatewayDescriptor) -> None:
        if not isinstance(descriptor, GatewayDescriptor):
            raise ConfigurationError(
                f"descriptor must be a GatewayDescriptor, got {type(descriptor).__name__}"
            )
        super().__init__(ref)
        self.descriptor = descriptor
        self._http = HttpClient(descriptor.timeouts)
        self.correlation_header: str | None = None

    def capability(self, operation: Operation) -> Capability:
        return "unknown"

    def set_correlation_header(self, name: str | None) -> bool:
        """Send each run's ``request_id`` under header ``name`` (None: stop); a gateway in
        front of another passes ``x-request-id``, so both access logs share the id."""
        if name is not None:
            check_header_name("correlation_header", name)
        self.correlation_header = name
        return True

    # ------------------------------------------------------------ operations
    def start_text(self, request: TextRequest, sink: RunSink) -> None:
        d = self.descriptor
        extra = self._extra(request.endpoint_options)
        stream = request.emit_tokens
        if request.operation == "query":
            assert request.prompt is not None
            body = profile.encode_query_body(
                d.target, request.prompt, request.options, stream=stream, extra=extra
            )
            route = d.query_route
        else:
            assert request.messages is not None
            body = profile.encode_chat_body(
                d.target, request.messages, request.options, stream=stream, extra=extra,
                tools=request.tools,
            )
            route = d.chat_route
        payload, headers = self._prepare(body, stream=stream, request_id=request.request_id)
        call = self._new_call()
        driver = RunDriver(sink, call, text=True)
        respond = self._respond(route, payload, headers, stream=stream)
        work = (driver.stream(respond, _ProfileStream(), _translate) if stream
                else driver.finite(respond, _text_payload, _translate))
        self._http.start(call, work)

    def start_embed(self, request: EmbedRequest, sink: RunSink) -> None:
        body = profile.encode_embed_body(
            self.descriptor.target, request.input, extra=self._extra(request.endpoint_options)
        )
        payload, headers = self._prepare(body, stream=False, request_id=request.request_id)
        call = self._new_call()
        driver = RunDriver(sink, call, text=False)
        respond = self._respond(self.descriptor.embed_route, payload, headers, stream=False)
        self._http.start(call, driver.finite(respond, _embed_payload, _translate))

    def close(self) -> None:
        """Abort in-flight calls (their runs fail) and close pooled connections."""
        self._http.close()

    # ------------------------------------------------------------ request building
    def _extra(self, endpoint_options: Mapping[str, Any] | None) -> dict[str, Any]:
        merged = dict(self.descriptor.protocol_options or {})
        merged.update(endpoint_options or {})
        return merged

    def _prepare(self, body: dict[str, Any], *, stream: bool, request_id: str = ""
                 ) -> tuple[bytes, dict[str, str]]:
        headers = self._headers(stream)
        if self.correlation_header is not None and request_id:
            headers[self.correlation_header] = request_id
        return encode_json(body), headers

    def _headers(self, stream: bool) -> dict[str, str]:
        d = self.descriptor
        headers = dict(d.static_headers or ())
        headers["Content-Type"] = profile.JSON_CONTENT_TYPE
        headers["Accept"] = profile.SSE_CONTENT_TYPE if stream else profile.JSON_CONTENT_TYPE
        if d.authentication_kind != "none":
            value = d.authentication_value
            if callable(value):
                try:
                    value = value()
                except Exception as exc:
                    raise EndpointError(
                        f"authentication value provider failed: {type(exc).__name__}",
                        kind="configuration",
                    ) from exc
            if not isinstance(value, str) or not value.strip() or any(
                ch in value for ch in "\r\n\0"
            ):
                raise EndpointError(
                    "authentication value provider must return a non-empty header-safe string",
                    kind="configuration",
                )
            if d.authentication_kind == "bearer":
                headers["Authorization"] = f"Bearer {value}"
            else:
                assert d.authentication_header is not None
                headers[d.authentication_header] = value
        return headers

    def _new_call(self) -> HttpCall:
        try:
            return self._http.new_call()
        except CallFailure as exc:
            raise EndpointError(exc.message, kind="transport") from exc

    def _url(self, route: str) -> str:
        return self.descriptor.base_url + "/" + route.lstrip("/")

    # ------------------------------------------------------------ exchanges
    def _respond(
        self, route: str, payload: bytes, headers: dict[str, str], *, stream: bool
    ) -> Respond:
        """Post to ``route``; a gateway error status or a non-SSE stream answer raises."""

        async def respond(call: HttpCall) -> Response:
            response = await call.post(self._url(route), headers, payload, stream=stream)
            await self._check_status(call, response)
            content_type = response.headers.get("content-type", "")
            if stream and not content_type.startswith(profile.SSE_CONTENT_TYPE):
                raise EndpointError(
                    f"gateway answered a stream request with content type {content_type!r}",
                    kind="protocol",
                    status=response.status,
                )
            return response

        return respond

    @staticmethod
    async def _check_status(call: HttpCall, response: Response) -> None:
        status: int = response.status
        if 200 <= status < 300:
            return
        body, _ = await call.read_body(response, MAX_ERROR_BODY_BYTES)
        error = profile.decode_error_body(
            status, body, retry_after=retry_after_seconds(response.headers)
        )
        if isinstance(error, EndpointError) and error.code == "endpoint":
            error = EndpointError(
                f"gateway returned HTTP {status} {response.reason or ''}".rstrip(),
                kind="http",
                status=status,
                retry_after=error.retry_after,
                raw_body=error.raw_body,
            )
        raise error


class _ProfileStream:
    """The profile's SSE events (``token``, ``usage``, ``done``, ``error``) for the driver."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finish_reason: FinishReason | None = None
        self.calls = ToolCallDeltas()

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def feed(self, event: SseEvent) -> tuple[str | dict[str, Any], ...]:
        item = profile.decode_stream_event(event.event, event.data)
        if isinstance(item, profile.StreamToken):
            for delta in item.tool_calls:
                self.calls.add(delta)
            if not item.text and item.tool_calls:
                return item.tool_calls
            return (item.text, *item.tool_calls)
        if isinstance(item, profile.StreamUsage):
            self.usage = item.usage
        elif isinstance(item, profile.StreamDone):
            self.finish_reason = item.finish_reason
        else:
            raise item.error
        return ()

    def finish(self, text: str) -> dict[str, Any]:
        if self.finish_reason is None:
            raise EndpointError("stream ended before a done event", kind="protocol")
        result: dict[str, Any] = {"text": text, "finish_reason": self.finish_reason,
                                  "usage": self.usage, "local_stats": None}
        if self.calls.calls:
            result["tool_calls"] = self.calls.calls
        return result


def _text_payload(body: bytes) -> dict[str, Any]:
    result = profile.decode_text_response(body)
    payload: dict[str, Any] = {"text": result.text, "finish_reason": result.finish_reason,
                               "usage": result.usage, "local_stats": None}
    if result.tool_calls:
        payload["tool_calls"] = result.tool_calls
    return payload


def _embed_payload(body: bytes) -> dict[str, Any]:
    result = profile.decode_embedding_response(body)
    return {"values": result.values, "usage": result.usage, "local_stats": None,
            "pooling": None, "normalized": None}


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, SippError):
        return exc
    if isinstance(exc, SseError):
        return EndpointError(f"malformed gateway stream: {exc}", kind="protocol")
    if isinstance(exc, ResponseTooLargeError):
        return EndpointError(f"gateway {exc}", kind="protocol")
    if isinstance(exc, CallFailure):
        kind = "timeout" if exc.kind == "timeout" else "transport"
        code = "timeout" if exc.kind == "timeout" else None
        return EndpointError(f"gateway {exc.message}", kind=kind, code=code)
    if isinstance(exc, Exception):
        return EndpointError(f"gateway call failed: {type(exc).__name__}: {exc}", kind="transport")
    return exc

