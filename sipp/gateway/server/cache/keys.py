"""Cache keys: what makes two requests the same question.

The exact key hashes the normalized request: the target, the route family, the messages or
prompt and every output-changing option, never the bearer token (the scope carries the
caller label instead). The semantic partition hashes the same minus the last user turn, so
a semantic match is only ever searched among requests that differ in that turn alone."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CacheControl", "RequestKey", "cache_control", "request_key"]

# Body fields that change nothing in the answer (delivery, accounting, cache control).
_NEUTRAL = frozenset({"stream", "stream_options", "user", "store", "metadata", "service_tier",
                      "prompt_cache_key", "safety_identifier", "cache_control"})


@dataclass(frozen=True)
class CacheControl:
    """``no_cache``: do not answer from the cache (the fresh answer still refreshes it);
    ``no_store``: do not store this answer."""

    no_cache: bool = False
    no_store: bool = False


def cache_control(header: bytes | None, body_value: Any = None) -> CacheControl:
    """From a ``Cache-Control`` header and/or a body ``cache_control`` string (the
    OpenAI-route ``extra_body`` equivalent); unknown directives are ignored."""
    words: set[str] = set()
    for raw in (header.decode("latin-1") if header else None,
                body_value if isinstance(body_value, str) else None):
        if raw:
            words |= {part.strip().lower().split("=")[0] for part in raw.split(",")}
    return CacheControl("no-cache" in words, "no-store" in words)


@dataclass(frozen=True)
class RequestKey:
    """A request's exact key, its semantic partition, the text a semantic cache embeds,
    and whether the answer is deterministic (temperature 0 or a seed)."""

    exact: str
    partition: str
    question: str
    deterministic: bool
    # reasons the request can never be cached (n > 1, logprobs): it is a bypass
    uncacheable: str | None = None


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def _digest(*parts: Any) -> str:
    return hashlib.sha256(_canonical(list(parts))).hexdigest()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "\n".join(str(p.get("text", "")) for p in content
                         if isinstance(p, Mapping) and p.get("type") == "text")
    return ""


def request_key(family: str, target: str, scope: str, body: Mapping[str, Any]) -> RequestKey:
    """The key of a decoded-valid text request body (``family``: the route family, e.g.
    ``openai.chat``; ``scope``: the caller label, or ``*`` for a shared cache)."""
    options = {k: v for k, v in body.items() if k not in _NEUTRAL and k != "model"}
    exact = _digest(family, target, scope, options)
    question = ""
    partition_options = dict(options)
    messages = options.get("messages")
    if isinstance(messages, list):
        last = max((i for i, m in enumerate(messages)
                    if isinstance(m, Mapping) and m.get("role") == "user"), default=None)
        if last is not None:
            question = _text_of(messages[last].get("content"))
            partition_options["messages"] = [
                {**m, "content": None} if i == last else m for i, m in enumerate(messages)]
    elif isinstance(options.get("prompt"), str):
        question = options["prompt"]
        partition_options.pop("prompt")
    temperature = body.get("temperature")
    deterministic = (temperature is not None and not isinstance(temperature, bool)
                     and temperature == 0) or body.get("seed") is not None
    uncacheable = None
    if isinstance(body.get("n"), int) and body["n"] > 1:
        uncacheable = "n > 1"
    elif body.get("logprobs"):
        uncacheable = "logprobs"
    return RequestKey(exact, _digest(family, target, scope, partition_options), question,
                      deterministic, uncacheable)
