"""The Sipp error hierarchy.

Every error carries a stable ``code`` string: the gateway writes it into
``{"error": {"code": ..., "message": ...}}`` and the gateway client turns it back into
the same class with :func:`error_from_code`, so an error crosses the HTTP boundary intact.
Builtins are mixed in where callers expect them (``ValueError`` for invalid requests,
``LookupError`` for unknown endpoints, ``ImportError`` for backend problems).

    SippError
    ├── ConfigurationError (ValueError)            configuration
    ├── InvalidRequestError (ValueError)           invalid_request
    │   ├── GrammarError                           invalid_grammar
    │   ├── JsonSchemaError                        invalid_json_schema
    │   ├── ChatTemplateError                      chat_template
    │   ├── MediaError                             invalid_media
    │   ├── PiiBlockedError                        pii_blocked
    │   └── RequestTooLargeError                   request_too_large
    ├── UnsupportedOperationError                  unsupported_operation
    ├── EndpointNotFoundError (LookupError)        endpoint_not_found
    ├── AmbiguousEndpointError (LookupError)       ambiguous_endpoint
    ├── TargetNotFoundError (LookupError)          target_not_found
    ├── TargetNotReadyError                        target_not_ready, target_disabled
    ├── BackendError (ImportError)                 backend_unavailable
    ├── ModelLoadError                             model_load
    ├── QueueFullError                             queue_full
    ├── CancelledError                             cancelled
    ├── EngineError                                engine
    │   ├── EngineClosedError                      engine_closed
    │   ├── EngineDeadError                        engine_dead
    │   ├── KvCacheFullError                       kv_cache_full
    │   └── ToolCallError                          invalid_tool_call
    ├── AuthenticationError                        authentication
    ├── AuthorizationError                         authorization
    ├── BlockedError                               blocked
    ├── RateLimitedError                           rate_limited
    ├── AdmissionError                             admission
    └── RemoteCallError                            (never raised itself)
        ├── EndpointError                          endpoint   (gateway endpoint failures)
        └── ProviderError                          provider   (direct provider HTTP)
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AdmissionError",
    "AmbiguousEndpointError",
    "AuthenticationError",
    "AuthorizationError",
    "BackendError",
    "BlockedError",
    "CancelledError",
    "ChatTemplateError",
    "ConfigurationError",
    "EndpointError",
    "EndpointNotFoundError",
    "EngineClosedError",
    "EngineDeadError",
    "EngineError",
    "GrammarError",
    "InvalidRequestError",
    "JsonSchemaError",
    "KvCacheFullError",
    "MediaError",
    "ModelLoadError",
    "PiiBlockedError",
    "ProviderError",
    "QueueFullError",
    "RateLimitedError",
    "RemoteCallError",
    "RequestTooLargeError",
    "SippError",
    "TargetNotFoundError",
    "TargetNotReadyError",
    "ToolCallError",
    "UnsupportedOperationError",
    "error_from_code",
]


class SippError(Exception):
    """Root of all Sipp errors; ``code`` is stable and ``http_status`` is what a gateway sends."""

    default_code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code

    def to_dict(self) -> dict[str, Any]:
        """The gateway wire body: ``{"error": {"code", "message"}}``."""
        return {"error": {"code": self.code, "message": self.message}}


class ConfigurationError(SippError, ValueError):
    """A descriptor or runtime config value is invalid; the message names the field."""

    default_code = "configuration"
    http_status = 400


class InvalidRequestError(SippError, ValueError):
    """A request (prompt, messages, options) is invalid; the message names the field."""

    default_code = "invalid_request"
    http_status = 400


class GrammarError(InvalidRequestError):
    """A GBNF grammar was rejected by llama.cpp's grammar parser."""

    default_code = "invalid_grammar"


class JsonSchemaError(InvalidRequestError):
    """A JSON Schema is invalid or uses something the converter does not support."""

    default_code = "invalid_json_schema"


class ChatTemplateError(InvalidRequestError):
    """A chat template failed to compile or render."""

    default_code = "chat_template"


class MediaError(InvalidRequestError):
    """A media input (image) is unreadable or of the wrong shape."""

    default_code = "invalid_media"


class PiiBlockedError(InvalidRequestError):
    """A PII policy in ``block`` mode found personal data; the message names the entity
    types (never the values)."""

    default_code = "pii_blocked"
    http_status = 400


class RequestTooLargeError(InvalidRequestError):
    """The request does not fit (body size, prompt longer than the context)."""

    default_code = "request_too_large"
    http_status = 413


class UnsupportedOperationError(SippError):
    """The endpoint cannot run this operation (chat without template, embed on a text model)."""

    default_code = "unsupported_operation"
    http_status = 400


class EndpointNotFoundError(SippError, LookupError):
    """No endpoint is registered under that reference."""

    default_code = "endpoint_not_found"
    http_status = 404


class AmbiguousEndpointError(SippError, LookupError):
    """``endpoint`` was omitted and zero or several local endpoints support the operation."""

    default_code = "ambiguous_endpoint"
    http_status = 400


class TargetNotFoundError(SippError, LookupError):
    """A gateway target name is not configured."""

    default_code = "target_not_found"
    http_status = 404


class TargetNotReadyError(SippError):
    """A gateway target is still loading (or failed to load); retry when ready."""

    default_code = "target_not_ready"
    http_status = 503


class BackendError(SippError, ImportError):
    """No usable native backend (missing package, bad manifest, library failed to load)."""

    default_code = "backend_unavailable"
    http_status = 500


class ModelLoadError(SippError):
    """A model file could not be loaded; the message names the path and the reason."""

    default_code = "model_load"
    http_status = 500


class QueueFullError(SippError):
    """The endpoint's request queue is full; retry later."""

    default_code = "queue_full"
    http_status = 429


class CancelledError(SippError):
    """The run was cancelled before it produced a result."""

    default_code = "cancelled"
    http_status = 408


class EngineError(SippError):
    """The local engine failed while running a request."""

    default_code = "engine"
    http_status = 500


class EngineClosedError(EngineError):
    """The engine was shut down (client closed, endpoint replaced) before the run finished."""

    default_code = "engine_closed"
    http_status = 503


class EngineDeadError(EngineError):
    """The engine thread died; every pending run fails with this error."""

    default_code = "engine_dead"


class KvCacheFullError(EngineError):
    """``llama_decode`` found no KV slot for the batch (recoverable by the scheduler)."""

    default_code = "kv_cache_full"


class ToolCallError(EngineError):
    """The model started a tool call whose JSON does not parse into a declared tool (the
    run fails; a malformed call is never dropped silently)."""

    default_code = "invalid_tool_call"


class AuthenticationError(SippError):
    """Missing or invalid credentials."""

    default_code = "authentication"
    http_status = 401


class AuthorizationError(SippError):
    """The caller is not allowed to use this target."""

    default_code = "authorization"
    http_status = 403


class BlockedError(SippError):
    """The client address is on the gateway's blocklist."""

    default_code = "blocked"
    http_status = 403


class RateLimitedError(SippError):
    """A rate limit was hit; ``retry_after`` (seconds) tells when to retry, if known."""

    default_code = "rate_limited"
    http_status = 429

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class AdmissionError(SippError):
    """The gateway's concurrency limit is reached."""

    default_code = "admission"
    http_status = 429


class RemoteCallError(SippError):
    """A call to a remote endpoint failed: the shape :class:`EndpointError` and
    :class:`ProviderError` share. ``kind`` says how, ``status`` is the HTTP status when there
    was one, ``retry_after`` (seconds) comes from ``Retry-After``, ``raw_body`` keeps the
    (redacted) error body. Never raised itself, so it has no wire code of its own."""

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        raw_body: Any = None,
    ) -> None:
        super().__init__(message, code=code)
        self.kind = kind
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.raw_body = raw_body


class EndpointError(RemoteCallError):
    """A gateway endpoint call failed: ``kind`` is configuration, transport, timeout, http
    or protocol."""

    default_code = "endpoint"
    http_status = 500


class ProviderError(RemoteCallError):
    """A direct provider call failed; also keeps ``provider`` (``kind``: authentication,
    rate_limited, timeout, transport, ...)."""

    default_code = "provider"
    http_status = 500

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        kind: str,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        raw_body: Any = None,
    ) -> None:
        super().__init__(
            message, kind=kind, code=code, status=status, request_id=request_id,
            retry_after=retry_after, raw_body=raw_body,
        )
        self.provider = provider


def _all_subclasses(cls: type[SippError]) -> list[type[SippError]]:
    found: list[type[SippError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


_SIMPLE_CLASSES: dict[str, type[SippError]] = {}
# Codes a gateway sends for a variant of a class, besides each class's ``default_code``.
_VARIANT_CODES: dict[str, type[SippError]] = {
    "target_disabled": TargetNotReadyError,  # a target an administrator disabled
}


def error_from_code(code: str, message: str, **extra: Any) -> SippError:
    """Rebuild the error class a gateway encoded as ``code`` (unknown codes → ``SippError``).

    ``extra`` may carry ``retry_after`` for rate limits; other keys are ignored for classes
    that do not take them.
    """
    if not _SIMPLE_CLASSES:
        for sub in _all_subclasses(SippError):
            if issubclass(sub, RemoteCallError):  # these need a kind: never rebuilt from a code
                continue
            _SIMPLE_CLASSES.setdefault(sub.default_code, sub)
    cls = _SIMPLE_CLASSES.get(code) or _VARIANT_CODES.get(code)
    if cls is None:
        return SippError(message, code=code)
    if issubclass(cls, RateLimitedError):
        return cls(message, code=code, retry_after=extra.get("retry_after"))
    return cls(message, code=code)
