"""What happens to a text request before it runs and after it answers: the response cache
(exact or semantic lookup, replay of a hit, filling on a miss), route-on-hit, and RAG
passages injected from a collection.

Both route families call :func:`intercept` once the target is resolved; it returns an
:class:`Interception` that says whether to replay a cached answer, which target runs the
request, what to add to the conversation, and how to file the answer afterwards. The
outcome is in the response headers ``x-sipp-cache`` (``hit``, ``miss`` or ``bypass``),
``x-sipp-route`` (the target a route-on-hit rule sent the request to) and
``x-sipp-rag-sources`` (the ids of the injected passages), and in the request log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from sipp._json import loads_untrusted
from sipp.documents import documents_block, with_documents
from sipp.gateway.server.cache import (
    CacheControl,
    CachedAnswer,
    Lookup,
    RequestKey,
    ResponseCache,
    cache_control,
    request_key,
)
from sipp.gateway.server.http import Exchange
from sipp.gateway.server.logging import logger
from sipp.gateway.server.state import GatewayState
from sipp.gateway.server.targets import TargetState
from sipp.types import ChatMessage, TokenBatch

__all__ = ["CONTEXT_PREAMBLE", "Interception", "Recorder", "intercept", "replay_stream"]

CONTEXT_PREAMBLE = ("A previous answer to a similar question follows; use it if it answers "
                    "the current question.")

CacheStatus = Literal["hit", "miss", "bypass"]


class StreamEncoder(Protocol):
    """A route family's SSE frames (the shape :mod:`.execution` streams with)."""

    def token(self, batch: TokenBatch) -> bytes: ...
    def end(self, response: Any) -> bytes: ...
    def error(self, exc: Any) -> bytes: ...


@dataclass
class Interception:
    """The plan for one text request (see the module docstring)."""

    target: TargetState                 # where the run goes
    cache: ResponseCache | None = None
    status: CacheStatus | None = None
    key: RequestKey | None = None
    replay: CachedAnswer | None = None  # answer verbatim (no run)
    context: CachedAnswer | None = None  # a hit routed on, with the cached answer
    fill: bool = False
    vector: Sequence[float] | None = None
    documents: list[dict[str, Any]] = field(default_factory=list)
    inject: Literal["system", "documents"] = "system"

    def messages(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """The conversation the run gets: the cached context and (``inject = "system"``)
        the passages in the system message."""
        out = tuple(messages)
        if self.context is not None:
            out = _with_system(out, _context_text(self.context))
        if self.documents and self.inject == "system":
            out = with_documents(out, self.documents)
        return list(out)

    def chat_documents(self) -> list[dict[str, Any]] | None:
        """Documents for the chat call (``inject = "documents"``: the template's variable
        on local targets that have one, else a system block)."""
        return self.documents if self.documents and self.inject == "documents" else None

    def prompt(self, prompt: str) -> str:
        parts = []
        if self.context is not None:
            parts.append(_context_text(self.context))
        if self.documents:
            parts.append(documents_block(self.documents))
        return "\n\n".join([*parts, prompt]) if parts else prompt

    async def answered(self, response: Mapping[str, Any] | None,
                       batches: Sequence[TokenBatch] | None) -> None:
        """File a finished run's answer (a miss that may be stored)."""
        if not self.fill or response is None or self.cache is None or self.key is None:
            return
        if response.get("finish_reason") not in ("stop", "length", "tool_calls"):
            return
        try:
            await self.cache.fill(self.key, CachedAnswer.from_response(
                response, self.key.question, batches), self.vector)
        except Exception:  # a cache that cannot store must not fail the answered request
            self.cache.errors += 1
            logger.warning("cache fill failed", exc_info=True,
                           extra={"cache": self.cache.config.name})


class Recorder:
    """A stream encoder that keeps the token batches it encodes (so a cached answer
    replays in the original's chunks)."""

    def __init__(self, inner: StreamEncoder, batches: list[TokenBatch] | None = None) -> None:
        self.inner = inner
        self.batches: list[TokenBatch] = [] if batches is None else batches

    def token(self, batch: TokenBatch) -> bytes:
        self.batches.append(batch)
        return self.inner.token(batch)

    def end(self, response: Any) -> bytes:
        return self.inner.end(response)

    def error(self, exc: Any) -> bytes:
        return self.inner.error(exc)


def _context_text(answer: CachedAnswer) -> str:
    return f"{CONTEXT_PREAMBLE}\n\nQuestion: {answer.question}\nAnswer: {answer.text}"


def _with_system(messages: tuple[ChatMessage, ...], text: str) -> tuple[ChatMessage, ...]:
    if messages and messages[0].role == "system":
        first = messages[0]
        return (replace(first, content=f"{first.content}\n\n{text}" if first.content
                        else text), *messages[1:])
    return (ChatMessage("system", text), *messages)


def _question(body: Mapping[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, Mapping) and message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else ""
        return ""
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) else ""


async def intercept(state: GatewayState, ex: Exchange, caller: str, target: TargetState,
                    family: str, body: Mapping[str, Any] | bytes, directive: Any = None
                    ) -> Interception:
    """Plan a text request to ``target`` (``body``: the JSON body, already validated by
    the route; ``family``: ``openai.chat``, ``profile.query``, ...; ``directive``: the
    body's ``cache_control``)."""
    plan = Interception(target)
    name = target.target.name
    extensions = state.config.extensions
    cache = state.caches.for_target(name)
    rag = extensions.target_rag.get(name)
    if cache is None and rag is None:
        return plan
    if isinstance(body, bytes):
        body = loads_untrusted(body)
        assert isinstance(body, Mapping)
    if cache is not None:
        await _cache(state, ex, caller, plan, cache, family, body, directive)
    rag = extensions.target_rag.get(plan.target.target.name) or rag
    if rag is not None and plan.replay is None:
        passages = await state.rag.retrieve(rag, _question(body), state.embed)
        plan.documents = [p.as_document() for p in passages]
        plan.inject = rag.inject
        ex.extra_headers.append((b"x-sipp-rag-sources",
                                 ",".join(p.id for p in passages).encode()))
    return plan


async def _cache(state: GatewayState, ex: Exchange, caller: str, plan: Interception,
                 cache: ResponseCache, family: str, body: Mapping[str, Any],
                 directive: Any) -> None:
    control: CacheControl = cache_control(ex.header(b"cache-control"), directive)
    key = request_key(family, plan.target.target.name, cache.scope(caller), body)
    config = cache.config
    status: CacheStatus
    reason = None
    if key.uncacheable or not (key.deterministic or config.cache_nondeterministic):
        status = "bypass"
        reason = key.uncacheable or "not deterministic (temperature 0 or a seed)"
        cache.bypasses += 1
    elif control.no_cache:  # answer fresh; the answer still refreshes the cache
        status = "bypass"
        reason = "cache-control"
        cache.bypasses += 1
        plan.key = key
        plan.fill = not control.no_store
    elif (found := await _lookup(ex, cache, key)) is None:
        status = "bypass"  # the store or the embedding target failed: answer uncached
        reason = "cache unavailable"
        cache.bypasses += 1
    else:
        plan.key = key
        plan.vector = found.vector
        if found.answer is not None:
            status = "hit"
            cache.hits += 1
            if config.on_hit is not None:
                plan.target = state.targets.states[config.on_hit.route_to]
                plan.context = found.answer if config.on_hit.with_context else None
                cache.routed[("hit", config.on_hit.route_to)] += 1
            else:
                plan.replay = found.answer
        else:
            status = "miss"
            cache.misses += 1
            plan.fill = not control.no_store
    if status != "hit" and config.on_miss is not None:
        plan.target = state.targets.states[config.on_miss.route_to]
        cache.routed[(status, config.on_miss.route_to)] += 1
    plan.status = status
    plan.cache = cache
    ex.extra_headers.append((b"x-sipp-cache", status.encode()))
    if config.on_hit is not None or config.on_miss is not None:
        ex.extra_headers.append((b"x-sipp-route", plan.target.target.name.encode()))
    logger.info("cache", extra={"request_id": ex.request_id, "cache": config.name,
                                "result": status, "reason": reason,
                                "route": plan.target.target.name})


async def _lookup(ex: Exchange, cache: ResponseCache, key: RequestKey) -> Lookup | None:
    """The lookup, or None when the store or the embedding target failed (logged)."""
    try:
        return await cache.lookup(key)
    except Exception:
        cache.errors += 1
        logger.warning("cache lookup failed", exc_info=True,
                       extra={"request_id": ex.request_id, "cache": cache.config.name})
        return None


async def replay_stream(ex: Exchange, answer: CachedAnswer, encode: StreamEncoder) -> None:
    """Send a cached answer as SSE, in the batches the original was streamed in."""
    ex.streaming = True
    await ex.start(200, b"text/event-stream", [
        (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")])
    for batch in answer.batches(ex.request_id):
        await ex.body(encode.token(batch), more=True)
    await ex.body(encode.end(answer.response()), more=False)
