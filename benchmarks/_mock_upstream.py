"""A fast mock OpenAI upstream for the gateway benchmarks: raw ASGI on uvicorn + uvloop.

``POST .../chat/completions`` answers at once: one JSON completion, or with
``"stream": true`` eight ``chat.completion.chunk`` SSE events, a final chunk with
``finish_reason`` and usage, then ``data: [DONE]``. ``GET .../models`` lists the model.
No artificial delay. Run it in its own process::

    python benchmarks/_mock_upstream.py --port 18080
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHUNKS = 8
PIECES = tuple(f"tok{i} " for i in range(CHUNKS))
_USAGE = {"prompt_tokens": 5, "completion_tokens": CHUNKS, "total_tokens": 5 + CHUNKS}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _completion(model: str) -> bytes:
    return _dumps({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 1700000000,
        "model": model, "usage": _USAGE,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": "".join(PIECES)}}],
    })


def _stream_events(model: str) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None, usage: Any = None) -> bytes:
        obj: dict[str, Any] = {
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                         "logprobs": None}],
        }
        if usage is not None:
            obj["usage"] = usage
        return b"data: " + _dumps(obj) + b"\n\n"

    events = [chunk({"role": "assistant", "content": PIECES[0]}, None)]
    events += [chunk({"content": piece}, None) for piece in PIECES[1:]]
    events.append(chunk({}, "stop", _USAGE))
    events.append(b"data: [DONE]\n\n")
    return events


class MockOpenAI:
    """The ASGI app; caches encoded answers per model name."""

    def __init__(self) -> None:
        self._finite: dict[str, bytes] = {}
        self._stream: dict[str, list[bytes]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if scope["method"] == "GET" and path.endswith("/models"):
            await _respond(send, 200, _dumps({"object": "list", "data": [
                {"id": "mock-model", "object": "model", "owned_by": "mock"}]}))
            return
        if scope["method"] != "POST" or not path.endswith("/chat/completions"):
            await _respond(send, 404, _dumps({"error": {"message": f"no route {path}",
                                                        "type": "not_found"}}))
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        try:
            body = json.loads(b"".join(chunks))
            model = str(body["model"])
        except (ValueError, KeyError, TypeError):
            await _respond(send, 400, _dumps({"error": {"message": "bad request body",
                                                        "type": "invalid_request_error"}}))
            return
        if not body.get("stream"):
            data = self._finite.get(model) or self._finite.setdefault(model, _completion(model))
            await _respond(send, 200, data)
            return
        events = self._stream.get(model) or self._stream.setdefault(model, _stream_events(model))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"),
                                (b"cache-control", b"no-cache")]})
        for event in events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _respond(send: Send, status: int, data: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(MockOpenAI(), host=args.host, port=args.port, loop="uvloop", http="httptools",
                lifespan="off", log_level="warning", access_log=False, server_header=False,
                date_header=False, backlog=4096, timeout_keep_alive=60)


if __name__ == "__main__":
    main()
