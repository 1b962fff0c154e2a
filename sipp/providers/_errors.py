"""Provider error construction: kinds from codes and statuses, secret redaction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sipp.errors import ProviderError

__all__ = ["ProviderFormatError", "classify", "error_from_payload", "http_error", "redact"]

_REDACTED = "[redacted]"

_CODE_KINDS = {
    "authentication": "authentication", "authentication_error": "authentication",
    "invalid_api_key": "authentication",
    "authorization": "authorization", "authorization_error": "authorization",
    "permission_error": "authorization",
    "invalid_request": "invalid_request", "invalid_request_error": "invalid_request",
    "unsupported_feature": "unsupported_feature",
    "model_not_found": "model_not_found", "not_found_error": "model_not_found",
    "overloaded": "overloaded", "overloaded_error": "overloaded",
    "insufficient_quota": "quota_exceeded", "quota_exceeded": "quota_exceeded",
    "rate_limit": "rate_limited", "rate_limited": "rate_limited",
    "rate_limit_exceeded": "rate_limited", "rate_limit_error": "rate_limited",
    "timeout": "timeout", "transport": "transport",
}
_STATUS_KINDS = {401: "authentication", 402: "quota_exceeded", 403: "authorization",
                 404: "model_not_found", 408: "timeout", 429: "rate_limited",
                 500: "overloaded", 502: "overloaded", 503: "overloaded", 504: "overloaded",
                 529: "overloaded"}


class ProviderFormatError(ValueError):
    """A provider response does not have the documented shape."""


def classify(code: str | None, status: int | None) -> str:
    """The ProviderError kind for a provider error ``code`` and HTTP ``status``."""
    if code is not None and code in _CODE_KINDS:
        return _CODE_KINDS[code]
    if status is not None:
        if status in _STATUS_KINDS:
            return _STATUS_KINDS[status]
        if 400 <= status < 500:
            return "invalid_request"
    return "provider"


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` with every secret replaced by ``[redacted]`` (strings, lists, dicts)."""
    words = [s for s in secrets if s and len(s) >= 4]
    if not words:
        return value

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            for word in words:
                item = item.replace(word, _REDACTED)
            return item
        if isinstance(item, list):
            return [walk(sub) for sub in item]
        if isinstance(item, dict):
            return {walk(k): walk(v) for k, v in item.items()}
        return item

    return walk(value)


def _error_fields(payload: Any) -> tuple[str | None, str | None]:
    """``(code, message)`` from ``{"error": {...}}``, ``{"error": "..."}`` or ``{"message"}``."""
    if not isinstance(payload, Mapping):
        return None, None
    error = payload.get("error")
    code: Any = None
    message: Any = None
    if isinstance(error, Mapping):
        message = error.get("message")
        code = error.get("code") or error.get("type")
    elif isinstance(error, str):
        message = error
    if message is None:
        message = payload.get("message")
    if code is None and payload.get("type") not in (None, "error"):
        code = payload.get("type")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )


def error_from_payload(
    provider: str,
    payload: Any,
    *,
    status: int | None = None,
    reason: str | None = None,
    retry_after: float | None = None,
    request_id: str | None = None,
    secrets: Iterable[str] = (),
) -> ProviderError:
    """A ProviderError from an error body (parsed JSON or text) or an in-stream error."""
    secret_list = list(secrets)
    code, message = _error_fields(payload)
    if message is None:
        message = reason or (f"HTTP {status}" if status else "provider reported an error")
    kind = classify(code, status)
    where = f" (HTTP {status})" if status is not None else ""
    text = f"provider error ({kind} {provider}){where}: {message}"
    return ProviderError(
        redact(text, secret_list),
        provider=provider,
        kind=kind,
        status=status,
        request_id=redact(request_id, secret_list),
        retry_after=retry_after,
        raw_body=redact(payload, secret_list),
    )


def http_error(
    provider: str,
    status: int,
    reason: str | None,
    body: bytes,
    truncated: bool,
    *,
    retry_after: float | None,
    request_id: str | None,
    secrets: Iterable[str],
) -> ProviderError:
    """A ProviderError for a non-2xx response; the body is kept parsed when it is JSON."""
    payload: Any
    if truncated:
        payload = {"error": {"message": "provider error response exceeded body limit"}}
    else:
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload = body.decode("utf-8", errors="replace")
    return error_from_payload(
        provider, payload, status=status, reason=reason, retry_after=retry_after,
        request_id=request_id, secrets=secrets,
    )
