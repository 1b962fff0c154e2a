"""A Flask app serving the Sipp gateway profile with the route helpers of
``sipp.gateway.profile``: any ``GatewayDescriptor`` client can call it.

    python flask_app.py [--host 127.0.0.1] [--port 8000]
    # or: flask --app flask_app run   (from this folder; create_app is the factory)

Routes: ``POST /v1/query``, ``/v1/chat``, ``/v1/embed`` with JSON replies, or server-sent
events when the body has ``"stream": true``. Targets and auth come from the environment
(see ``app_targets.py``). Prints ``listening on URL`` once bound and ``serving targets:
...`` once the models are loaded. Needs ``pip install flask``; use a production WSGI
server (gunicorn with threads, waitress) instead of the development server when deploying.
"""

from __future__ import annotations

import argparse
import atexit
import signal
import uuid
from collections.abc import Iterator
from typing import Any

from app_targets import build_client, check_bearer, find_target
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

from sipp import SippTextRun
from sipp.errors import SippError
from sipp.gateway import profile


def _sse(run: SippTextRun) -> Iterator[bytes]:
    try:
        yield from profile.text_stream(run)
    finally:  # the client went away (or the stream ended): stop generating
        run.cancel("client_disconnected")


def _text_reply(target: str, stream: bool, run: SippTextRun) -> Any:
    if stream:
        return Response(
            _sse(run), content_type=profile.SSE_CONTENT_TYPE, headers={"Cache-Control": "no-cache"}
        )
    return jsonify(profile.text_response_body(target, run.result(), id=f"resp-{uuid.uuid4().hex}"))


def create_app() -> Flask:
    """The Flask app; its SippClient (and any local model) is created here."""
    client, targets = build_client()
    atexit.register(client.close)  # close() is idempotent; main() closes it earlier
    app = Flask(__name__)
    app.extensions["sipp_client"] = client

    @app.errorhandler(SippError)
    def sipp_error(exc: SippError) -> Any:
        status, body = profile.error_response(exc)  # {"error": {"code", "message"}}
        return jsonify(body), status

    @app.before_request
    def authenticate() -> None:
        check_bearer(request.headers.get("Authorization"))

    @app.post("/v1/query")
    def query() -> Any:
        req = profile.decode_query_body(request.get_data())
        assert req.prompt is not None
        run = client.query(
            req.prompt,
            endpoint=find_target(targets, req.target),
            options=req.options,
            emit_tokens=req.stream,
        )
        return _text_reply(req.target, req.stream, run)

    @app.post("/v1/chat")
    def chat() -> Any:
        req = profile.decode_chat_body(request.get_data())
        assert req.messages is not None
        run = client.chat(
            req.messages,
            endpoint=find_target(targets, req.target),
            options=req.options,
            emit_tokens=req.stream,
        )
        return _text_reply(req.target, req.stream, run)

    @app.post("/v1/embed")
    def embed() -> Any:
        req = profile.decode_embed_body(request.get_data())
        response = client.embed(req.input, endpoint=find_target(targets, req.target)).result()
        return jsonify(
            profile.embedding_response_body(req.target, response, id=f"emb-{uuid.uuid4().hex}")
        )

    print(f"serving targets: {', '.join(targets)}", flush=True)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    args = parser.parse_args()
    app = create_app()
    server = make_server(args.host, args.port, app, threaded=True)
    print(f"listening on http://{args.host}:{server.port}", flush=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # serve_forever() returns and closes the socket

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()  # until Ctrl-C or SIGTERM
    app.extensions["sipp_client"].close()  # unloads local models, closes connections
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
