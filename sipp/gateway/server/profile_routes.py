"""The first-party profile routes on the public listener (``query``, ``chat``, ``embed``):
bodies and SSE events from :mod:`sipp.gateway.profile`, errors as
``{"error": {"code", "message"}}``."""

from __future__ import annotations

from functools import partial
from typing import Any

from sipp.errors import SippError
from sipp.gateway import profile
from sipp.gateway.server.cache import ZERO_USAGE
from sipp.gateway.server.config import RoutesConfig, TokenConfig
from sipp.gateway.server.execution import Execution, Route
from sipp.gateway.server.http import Exchange
from sipp.gateway.server.interception import Recorder, intercept, replay_stream
from sipp.runs import SippEmbeddingRun, SippTextRun
from sipp.types import TokenBatch

__all__ = ["profile_error", "profile_routes"]


def profile_error(exc: SippError) -> tuple[int, Any]:
    return profile.error_response(exc)


def profile_routes(execution: Execution, routes: RoutesConfig) -> dict[str, Route]:
    """The three profile routes at their configured paths."""
    return {
        routes.query: Route("query", partial(_query, execution), profile_error),
        routes.chat: Route("chat", partial(_chat, execution), profile_error),
        routes.embed: Route("embed", partial(_embed, execution), profile_error),
    }


async def _query(execution: Execution, ex: Exchange, token: TokenConfig, body: bytes) -> str:
    return await _text(execution, ex, token, profile.decode_query_body(body), body)


async def _chat(execution: Execution, ex: Exchange, token: TokenConfig, body: bytes) -> str:
    return await _text(execution, ex, token, profile.decode_chat_body(body), body)


async def _text(execution: Execution, ex: Exchange, token: TokenConfig,
                request: profile.GatewayTextRequest, body: bytes) -> str:
    state = execution.state
    target = await state.resolve_target(token, request.target, ex)
    client = state.client
    # cache, route-on-hit and RAG (see .interception)
    plan = await intercept(state, ex, token.caller, target, f"profile.{request.operation}",
                           body)
    if plan.replay is not None:
        if request.stream:
            await replay_stream(ex, plan.replay, _ProfileStream())
        else:
            await ex.json(200, profile.text_response_body(request.target, plan.replay.response(),
                                                          id=ex.request_id))
        state.record_usage(ex, request.target, dict(ZERO_USAGE))
        return request.target
    ref = plan.target.ref

    def start() -> SippTextRun:
        if request.operation == "query":
            assert request.prompt is not None
            return client.query(plan.prompt(request.prompt), endpoint=ref,
                                options=request.options, emit_tokens=request.stream,
                                request_id=ex.request_id)
        assert request.messages is not None
        tools = request.tools
        return client.chat(plan.messages(request.messages), endpoint=ref,
                           options=request.options,
                           emit_tokens=request.stream, request_id=ex.request_id,
                           tools=list(tools.tools) if tools else None,
                           tool_choice=tools.choice if tools else None,
                           parallel_tool_calls=tools.parallel if tools else True,
                           documents=plan.chat_documents())

    async def serve(run: SippTextRun) -> None:
        # the streamed batches, kept only when the answer may fill the cache
        recorder = Recorder(_ProfileStream()) if plan.fill else None
        if request.stream:
            response = await execution.stream(ex, run, request.operation,
                                              recorder or _ProfileStream())
        else:
            response = await execution.await_run(ex, run)
            await ex.json(200, profile.text_response_body(request.target, response,
                                                          id=ex.request_id))
        if response is not None:
            state.record_usage(ex, request.target, response.get("usage"))
        await plan.answered(response, recorder.batches if recorder else None)

    await execution.admitted(plan.target, start, serve)
    return request.target


async def _embed(execution: Execution, ex: Exchange, token: TokenConfig, body: bytes) -> str:
    request = profile.decode_embed_body(body)
    state = execution.state
    target = await state.resolve_target(token, request.target, ex)

    def start() -> SippEmbeddingRun:
        return state.client.embed(request.input, endpoint=target.ref, request_id=ex.request_id)

    async def serve(run: SippEmbeddingRun) -> None:
        response = await execution.await_run(ex, run)
        state.record_usage(ex, request.target, response.get("usage"))
        await ex.json(200, profile.embedding_response_body(request.target, response,
                                                           id=ex.request_id))

    await execution.admitted(target, start, serve)
    return request.target


class _ProfileStream:
    def token(self, batch: TokenBatch) -> bytes:
        return profile.token_event(batch.text, batch.sequence_start, batch.tool_calls)

    def end(self, response: Any) -> bytes:
        usage = response.get("usage")
        done = profile.done_event(response["finish_reason"])
        return profile.usage_event(usage) + done if usage is not None else done

    def error(self, exc: SippError) -> bytes:
        return profile.error_event(exc)
