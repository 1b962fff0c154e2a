"""OpenAI-compatible routes on the public listener (``{prefix}/chat/completions``,
``/completions``, ``/embeddings``, ``/models``, ``/models/{id}``) so the official ``openai``
package, LangChain, LlamaIndex, litellm and instructor work unchanged; ``model`` is the
gateway target name and the same bearer tokens and allowlists apply. Tools,
``response_format`` and the sampling fields reach local targets as the engine's own
settings and provider targets unchanged (:mod:`.openai_request`). Errors use OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` (``param`` names the offending field)
with the gateway's status codes.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from sipp._json import UntrustedJsonError, loads_untrusted
from sipp.errors import InvalidRequestError, JsonSchemaError, SippError, TargetNotFoundError
from sipp.gateway.server.cache import ZERO_USAGE, CachedAnswer
from sipp.gateway.server.config import TokenConfig
from sipp.gateway.server.execution import (
    ClientGone,
    Execution,
    Route,
    StreamEncoder,
    caller_error,
)
from sipp.gateway.server.http import Exchange
from sipp.gateway.server.interception import Recorder, intercept, replay_stream
from sipp.gateway.server.openai_request import TextCall, bad_field, decode_text
from sipp.gateway.server.openai_response import ChunkStream, choice, openai_error, usage
from sipp.gateway.server.targets import TargetState
from sipp.runs import SippEmbeddingRun, SippTextRun
from sipp.types import TokenBatch

__all__ = ["MODELS_PREFIX", "openai_error", "openai_routes"]

MODELS_PREFIX = "/models/"


def openai_routes(execution: Execution, prefix: str) -> dict[str, Route]:
    """The OpenAI-compatible routes under ``prefix``; ``{prefix}/models/`` is the prefix
    route of ``GET /models/{id}``."""
    base = prefix.rstrip("/")
    return {
        f"{base}/chat/completions": Route("chat_completions", partial(_text, execution, chat=True),
                                          openai_error),
        f"{base}/completions": Route("completions", partial(_text, execution, chat=False),
                                     openai_error),
        f"{base}/embeddings": Route("embeddings", partial(_embeddings, execution), openai_error),
        f"{base}/models": Route("models", partial(_models, execution), openai_error, method="GET"),
        f"{base}{MODELS_PREFIX}": Route("models", partial(_model, execution, base),
                                        openai_error, method="GET"),
    }


# --------------------------------------------------------------------------- decoding
def _object(body: bytes) -> dict[str, Any]:
    try:
        obj = loads_untrusted(body)
    except UntrustedJsonError as exc:
        raise InvalidRequestError(f"request body: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRequestError("request body must be a JSON object")
    model = obj.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_field("model", "field 'model' must be a non-empty string (the target name)")
    return obj


def _check_target(call: TextCall, kind: str) -> None:
    """Gateway targets (another Sipp gateway) take only the common options."""
    if kind != "gateway":
        return
    for name, used in (("response_format", call.json_schema is not None),
                       ("logprobs", call.logprobs), ("n", call.n > 1),
                       *((k, True) for k in call.sampling)):
        if used:
            raise bad_field(name, f"field {name!r} is not supported on a gateway target")


def _start(execution: Execution, ex: Exchange, call: TextCall, ref: Any, index: int,
           stream: bool, documents: list[dict[str, Any]] | None = None) -> SippTextRun:
    """Start choice ``index`` of ``call`` (on a submission thread)."""
    client = execution.state.client
    local = provider = None
    if ref.kind == "local":
        local = call.local_options()
        if index and local.sampling is not None and local.sampling.seed is not None:
            local = call.local_options(seed_offset=index)  # n choices, n different seeds
    elif ref.kind == "provider":
        provider = call.provider_options(index) or None
    rid = ex.request_id if not index else f"{ex.request_id}-{index}"
    if call.messages is not None:
        tools = call.tools
        return client.chat(call.messages, endpoint=ref, options=call.options, local=local,
                           provider_options=provider, emit_tokens=stream, request_id=rid,
                           tools=list(tools.tools) if tools else None,
                           tool_choice=tools.choice if tools else None,
                           parallel_tool_calls=tools.parallel if tools else True,
                           documents=documents)
    assert call.prompt is not None
    return client.query(call.prompt, endpoint=ref, options=call.options, local=local,
                        provider_options=provider, emit_tokens=stream, request_id=rid)


def _with_param(exc: SippError, call: TextCall) -> SippError:
    """Name the request field behind an error raised while the run started."""
    if isinstance(exc, JsonSchemaError) and getattr(exc, "param", None) is None:
        exc.param = ("response_format.json_schema.schema"  # type: ignore[attr-defined]
                     if call.json_schema is not None else "tools")
    return exc


# --------------------------------------------------------------------------- handlers
async def _text(execution: Execution, ex: Exchange, token: TokenConfig, body: bytes, *,
                chat: bool) -> str:
    obj = _object(body)
    directive = obj.pop("cache_control", None)  # the extra_body twin of Cache-Control
    if directive is not None and not isinstance(directive, str):
        raise bad_field("cache_control", "field 'cache_control' must be a string like "
                                         "'no-cache' or 'no-store'")
    call = decode_text(obj, chat=chat)
    name = call.name
    target = await execution.state.resolve_target(token, name, ex)
    _check_target(call, target.ref.kind)
    rid = ("chatcmpl-" if chat else "cmpl-") + ex.request_id
    operation = "chat_completions" if chat else "completions"
    # cache, route-on-hit and RAG (see .interception)
    plan = await intercept(execution.state, ex, token.caller, target,
                           "openai.chat" if chat else "openai.completions", obj, directive)
    if plan.replay is not None:
        await _replay(ex, call, rid, plan.replay)
        execution.state.record_usage(ex, name, dict(ZERO_USAGE))
        return name
    ref = plan.target.ref
    if call.messages is not None:
        call.messages = plan.messages(call.messages)
    elif call.prompt is not None:
        call.prompt = plan.prompt(call.prompt)
    documents = plan.chat_documents()
    # n > 1: choice 0 prefills the prompt; the others start once it has its first token,
    # so the scheduler copies the prompt's KV instead of computing it again
    shared = call.n > 1 and ref.kind == "local"

    async def serve(first: SippTextRun) -> None:
        try:
            if call.n == 1:
                response = await _serve_one(execution, ex, call, first, rid, operation,
                                            batches)
            else:
                response = await _serve_many(execution, ex, call, plan.target, first, rid,
                                             operation, shared)
        except JsonSchemaError as exc:
            raise _with_param(exc, call) from None
        if response is not None:
            execution.state.record_usage(ex, name, response.get("usage"))
        await plan.answered(response if call.n == 1 else None, batches)

    # the streamed batches, kept only when the answer may fill the cache
    batches: list[TokenBatch] | None = [] if plan.fill else None
    await execution.admitted(
        plan.target,
        lambda: _start(execution, ex, call, ref, 0, call.stream or shared, documents), serve)
    return name


async def _replay(ex: Exchange, call: TextCall, rid: str, answer: CachedAnswer) -> None:
    """A cached answer as this route's JSON or SSE (0 upstream tokens in its usage)."""
    if call.stream:
        await replay_stream(ex, answer, ChunkStream(rid, call.name, call.chat,
                                                    call.include_usage))
    else:
        await ex.json(200, _completion(call, rid, [answer.response()]))


def _completion(call: TextCall, rid: str, responses: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rid, "object": "chat.completion" if call.chat else "text_completion",
        "created": int(time.time()), "model": call.name,
        "choices": [choice(r, i, chat=call.chat, logprobs=call.logprobs, top=call.top_logprobs)
                    for i, r in enumerate(responses)]}
    total = _sum_usage(responses)
    if total is not None:
        out["usage"] = usage(total)
    return out


def _sum_usage(responses: list[Any]) -> dict[str, int] | None:
    usages = [r.get("usage") for r in responses]
    if None in usages:
        return None
    inputs = usages[0]["input_tokens"]  # the prompt is counted once (OpenAI does the same)
    outputs = usages[0]["output_tokens"] if len(usages) == 1 else \
        sum(u["output_tokens"] for u in usages)
    return {"input_tokens": inputs, "output_tokens": outputs, "total_tokens": inputs + outputs}


async def _serve_one(execution: Execution, ex: Exchange, call: TextCall, run: SippTextRun,
                     rid: str, operation: str, batches: list[TokenBatch] | None) -> Any:
    if call.stream:
        encoder: StreamEncoder = ChunkStream(rid, call.name, call.chat, call.include_usage,
                                             logprobs=call.logprobs, top=call.top_logprobs)
        if batches is not None:
            encoder = Recorder(encoder, batches)
        return await execution.stream(ex, run, operation, encoder)
    response = await execution.await_run(ex, run)
    await ex.json(200, _completion(call, rid, [response]))
    return response


async def _serve_many(execution: Execution, ex: Exchange, call: TextCall, target: TargetState,
                      first: SippTextRun, rid: str, operation: str, shared: bool) -> Any:
    """n choices: started together (or after choice 0's prefill when ``shared``)."""
    ref = target.ref
    head: list[TokenBatch] = []
    tokens0 = first.atokens() if (call.stream or shared) else None
    runs = [first]
    try:
        if shared and tokens0 is not None:
            batch = await _next(tokens0)
            if batch is not None:
                head.append(batch)
        for index in range(1, call.n):
            runs.append(await execution.state.submitter.start(
                partial(_start, execution, ex, call, ref, index, call.stream),
                off_loop=target.off_loop))
    except BaseException:
        for run in runs:
            run.cancel("sibling_failed")
        raise
    if not call.stream:
        try:
            responses = [await execution.await_run(ex, run) for run in runs]
        except BaseException:
            for run in runs:
                run.cancel("sibling_failed")
            raise
        await ex.json(200, _completion(call, rid, responses))
        return {"usage": _sum_usage(responses)}
    return await _stream_many(execution, ex, call, runs, head, tokens0, rid, operation)


async def _next(tokens: AsyncIterator[TokenBatch]) -> TokenBatch | None:
    try:
        return await tokens.__anext__()
    except StopAsyncIteration:
        return None


async def _stream_many(execution: Execution, ex: Exchange, call: TextCall,
                       runs: list[SippTextRun], head: list[TokenBatch],
                       tokens0: AsyncIterator[TokenBatch] | None, rid: str,
                       operation: str) -> Any:
    """Each choice's chunks in turn (clients join chunks by ``index``)."""
    encoders = [ChunkStream(rid, call.name, call.chat, call.include_usage, index=i,
                            logprobs=call.logprobs, top=call.top_logprobs)
                for i in range(len(runs))]
    watcher = asyncio.ensure_future(ex.wait_disconnect())

    def cancel_all(task: asyncio.Future[Any]) -> None:
        if not task.cancelled():
            for run in runs:
                run.cancel("client_disconnected")

    watcher.add_done_callback(cancel_all)
    ex.streaming = True
    responses: list[Any] = []
    try:
        await ex.start(200, b"text/event-stream", [
            (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")])
        execution.state.metrics.ttft[operation].observe(time.perf_counter() - ex.started)
        for index, run in enumerate(runs):
            encoder = encoders[index]
            batches = tokens0 if index == 0 and tokens0 is not None else run.atokens()
            for batch in head if index == 0 else ():
                await ex.body(encoder.frame(batch.text, batch.tool_calls), more=True)
            async for batch in batches:
                if frame := encoder.token(batch):
                    await ex.body(frame, more=True)
            response = await run
            if watcher.done():
                raise ClientGone
            responses.append(response)
            await ex.body(encoder.last(response), more=True)
        total = _sum_usage(responses)
        await ex.body(encoders[0].tail(total), more=False)
        return {"usage": total}
    except ClientGone:
        execution.state.metrics.disconnects += 1
        await ex.body(b"", more=False)
        raise
    except SippError as exc:
        for run in runs:
            run.cancel("sibling_failed")
        await ex.body(encoders[0].error(caller_error(_with_param(exc, call))), more=False)
        return None
    finally:
        watcher.cancel()


async def _embeddings(execution: Execution, ex: Exchange, token: TokenConfig, body: bytes) -> str:
    obj = _object(body)
    for key in obj:
        if key not in ("model", "input", "encoding_format", "dimensions", "user"):
            raise bad_field(key, f"unsupported field {key!r}")
    fmt = obj.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise bad_field("encoding_format", "field 'encoding_format' must be float or base64")
    if obj.get("dimensions") is not None:
        raise bad_field("dimensions", "field 'dimensions' is not supported")
    raw = obj.get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs or \
            not all(isinstance(item, str) for item in inputs):
        raise bad_field("input", "field 'input' must be a string or a non-empty array of "
                                 "strings (token arrays are not supported)")
    name: str = obj["model"]
    target = await execution.state.resolve_target(token, name, ex)

    def start() -> SippEmbeddingRun:
        return execution.state.client.embed(raw if isinstance(raw, str) else inputs,
                                      endpoint=target.ref, request_id=ex.request_id)

    async def serve(run: SippEmbeddingRun) -> None:
        response = await execution.await_run(ex, run)
        vectors: list[list[float]] = response["values"] if not isinstance(raw, str) else [
            response["values"]]
        data = [{"object": "embedding", "index": i,
                 "embedding": _vector(v, fmt)} for i, v in enumerate(vectors)]
        usage = response.get("usage")
        execution.state.record_usage(ex, name, usage)
        tokens = usage["input_tokens"] if usage else 0
        await ex.json(200, {"object": "list", "data": data, "model": name,
                            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    await execution.admitted(target, start, serve)
    return name


def _vector(values: list[float], fmt: str) -> Any:
    if fmt == "float":
        return [float(v) for v in values]
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


async def _models(execution: Execution, ex: Exchange, token: TokenConfig, body: bytes) -> None:
    created = int(execution.state.started)
    data = [{"id": name, "object": "model", "created": created, "owned_by": "sipp-gateway"}
            for name in execution.state.targets.states if token.allows(name)]
    await ex.json(200, {"object": "list", "data": data})


async def _model(execution: Execution, base: str, ex: Exchange, token: TokenConfig,
                 body: bytes) -> None:
    """``GET {prefix}/models/{id}``: one target the token may use (404 otherwise)."""
    name = ex.path[len(base) + len(MODELS_PREFIX):].rstrip("/")
    if not name or name not in execution.state.targets.states or not token.allows(name):
        error = TargetNotFoundError(f"model not found: {name}", code="model_not_found")
        error.param = "model"  # type: ignore[attr-defined]
        raise error
    await ex.json(200, {"id": name, "object": "model", "created": int(execution.state.started),
                        "owned_by": "sipp-gateway"})
