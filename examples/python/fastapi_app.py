"""A FastAPI app serving the Sipp gateway profile with the route helpers of
``sipp.gateway.profile``: any ``GatewayDescriptor`` client can call it.

    python fastapi_app.py [--host 127.0.0.1] [--port 8000]
    # or: uvicorn fastapi_app:app   (from this folder)

Routes: ``POST /v1/query``, ``/v1/chat``, ``/v1/embed`` with JSON replies, or server-sent
events when the body has ``"stream": true``. Targets and auth come from the environment
(see ``app_targets.py``). Prints ``listening on URL`` once bound and ``serving targets:
...`` once the models are loaded. Needs ``pip install fastapi uvicorn``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator

import uvicorn
from app_targets import build_client, check_bearer, find_target
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sipp import SippClient, SippTextRun
from sipp.errors import SippError
from sipp.gateway import profile


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    client, targets = await asyncio.to_thread(build_client)  # loading models blocks
    app.state.client, app.state.targets = client, targets
    print(f"serving targets: {', '.join(targets)}", flush=True)
    try:
        yield
    finally:
        await client.aclose()  # unloads local models, closes connections
        print("stopped", flush=True)


app = FastAPI(title="Sipp gateway profile example", lifespan=lifespan)


@app.exception_handler(SippError)
async def sipp_error(request: Request, exc: SippError) -> JSONResponse:
    status, body = profile.error_response(exc)  # {"error": {"code", "message"}}
    return JSONResponse(body, status_code=status)


def _client(request: Request) -> SippClient:
    check_bearer(request.headers.get("authorization"))
    client: SippClient = request.app.state.client
    return client


async def _sse(run: SippTextRun) -> AsyncIterator[bytes]:
    try:
        async for frame in profile.atext_stream(run):
            yield frame
    finally:  # the client went away (or the stream ended): stop generating
        run.cancel("client_disconnected")


async def _text_reply(target: str, stream: bool, run: SippTextRun) -> Response:
    if stream:
        return StreamingResponse(
            _sse(run), media_type=profile.SSE_CONTENT_TYPE, headers={"Cache-Control": "no-cache"}
        )
    body = profile.text_response_body(target, await run, id=f"resp-{uuid.uuid4().hex}")
    return JSONResponse(body)


@app.post("/v1/query")
async def query(request: Request) -> Response:
    client = _client(request)
    req = profile.decode_query_body(await request.body())
    assert req.prompt is not None
    run = client.query(
        req.prompt,
        endpoint=find_target(request.app.state.targets, req.target),
        options=req.options,
        emit_tokens=req.stream,
    )
    return await _text_reply(req.target, req.stream, run)


@app.post("/v1/chat")
async def chat(request: Request) -> Response:
    client = _client(request)
    req = profile.decode_chat_body(await request.body())
    assert req.messages is not None
    run = client.chat(
        req.messages,
        endpoint=find_target(request.app.state.targets, req.target),
        options=req.options,
        emit_tokens=req.stream,
    )
    return await _text_reply(req.target, req.stream, run)


@app.post("/v1/embed")
async def embed(request: Request) -> Response:
    client = _client(request)
    req = profile.decode_embed_body(await request.body())
    run = client.embed(req.input, endpoint=find_target(request.app.state.targets, req.target))
    body = profile.embedding_response_body(req.target, await run, id=f"emb-{uuid.uuid4().hex}")
    return JSONResponse(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    args = parser.parse_args()
    sock = socket.create_server((args.host, args.port))
    print(f"listening on http://{args.host}:{sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
