"""``sipp serve MODEL``: one local model behind the gateway, no TOML.

Builds the same validated ``GatewayConfig`` a TOML file would give (one local target named
after the model, the Sipp routes and the OpenAI-compatible ``/v1`` routes, the admin
dashboard off) and runs ``GatewayServer``. On a loopback address no key is needed; binding
any other address requires ``--api-key-env`` so a model is never served open to a network.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import secrets
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from sipp._validate import is_loopback_host
from sipp._version import __version__
from sipp.errors import ConfigurationError, SippError

__all__ = ["GATEWAY_EXTRA_HINT", "build_serve_config", "serve_main", "target_name"]

GATEWAY_EXTRA_HINT = f'pip install "sipppy[gateway]=={__version__}"'


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipp serve",
        description="Serve one local model over HTTP: Sipp routes (/v1/query, /v1/chat, "
        "/v1/embed) and OpenAI-compatible routes (/v1/chat/completions, /v1/completions, "
        "/v1/embeddings, /v1/models). Needs the gateway extra.",
    )
    parser.add_argument("model", help="GGUF path, packaged name, hf://... or https://... URL")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; others need --api-key-env)")
    parser.add_argument("--port", type=int, default=8080, help="public port (default 8080)")
    parser.add_argument("--management-port", type=int, default=0, metavar="PORT",
                        help="loopback port of healthz/readyz/metrics (default: any free one)")
    parser.add_argument("--api-key-env", default=None, metavar="NAME",
                        help="environment variable holding the bearer token clients must send")
    parser.add_argument("--name", default=None,
                        help="target (model) name clients send (default: from the model)")
    parser.add_argument("--ctx-size", type=int, default=None, metavar="N",
                        help="context size in tokens (shared by all parallel slots)")
    parser.add_argument("--parallel", type=int, default=None, metavar="N",
                        help="requests decoded together (sequence slots)")
    parser.add_argument("--chat-template", default=None, metavar="FILE",
                        help="Jinja chat template file (or inline text) replacing the GGUF's")
    parser.add_argument("--embeddings", action="store_true",
                        help="load the model for embeddings (/v1/embed, /v1/embeddings)")
    parser.add_argument("--projector", default=None, metavar="SOURCE",
                        help="vision projector (mmproj) source, or 'auto'")
    parser.add_argument("--backend", default="auto",
                        choices=["auto", "cpu", "cuda", "metal", "vulkan"])
    return parser


def target_name(model: str) -> str:
    """A target name from a model source: the file stem, repo name or packaged name."""
    from sipp.models.source import parse_source

    src = parse_source(model)
    if src.kind == "packaged":
        raw = src.name or model
    elif src.kind == "hf":
        pattern = src.pattern or ""
        raw = (pattern.rsplit("/", 1)[-1] if pattern and not any(c in pattern for c in "*?[")
               else (src.repo_id or model).rsplit("/", 1)[-1])
    else:
        raw = (src.url or src.path or model).rstrip("/").rsplit("/", 1)[-1]
    raw = re.sub(r"\.gguf$", "", raw, flags=re.I)
    raw = re.sub(r"-\d{5}-of-\d{5}$", "", raw)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.") or "model"


def build_serve_config(args: argparse.Namespace) -> tuple[Any, Any]:
    """The ``GatewayConfig`` and ``GatewaySecrets`` for ``args`` (raises
    ``ConfigurationError`` with a one-line reason)."""
    from sipp.gateway.server.config import parse_config
    from sipp.gateway.server.secrets import GatewaySecrets

    if not is_loopback_host(args.host) and args.api_key_env is None:
        raise ConfigurationError(
            f"--host {args.host} is not a loopback address: pass --api-key-env NAME (the "
            "variable holding the bearer token clients must send) to serve beyond this machine"
        )
    key: str | None = None
    if args.api_key_env is not None:
        key = os.environ.get(args.api_key_env)
        if not key or any(ch.isspace() for ch in key):
            raise ConfigurationError(
                f"--api-key-env {args.api_key_env}: the variable is unset, empty or holds "
                "whitespace"
            )
    name = args.name or target_name(args.model)
    runtime: dict[str, Any] = {}
    context: dict[str, Any] = {}
    if args.ctx_size is not None:
        context["n_ctx"] = args.ctx_size
    if args.parallel is not None:
        context["n_parallel"] = args.parallel
    if args.embeddings:
        context["embeddings"] = True
    if context:
        runtime["context"] = context
    if args.projector is not None:
        runtime["multimodal"] = {"projector_path": args.projector}
    target: dict[str, Any] = {"name": name, "type": "local", "model": args.model,
                              "backend": args.backend, "stats": "basic"}
    if runtime:
        target["runtime"] = runtime
    if args.chat_template is not None:
        from sipp._template_source import read_chat_template

        target["chat_template"] = read_chat_template(args.chat_template, "--chat-template")
    data = {
        "public_bind": _bind(args.host, args.port),
        "management_bind": _bind("127.0.0.1", args.management_port),
        "admin_password_env": "SIPP_SERVE_UNUSED",  # the dashboard is off (routes.admin)
        "routes": {"admin": False, "index": False},
        "security": {
            "client_ip": {"source": "peer", "trusted_proxy_cidrs": []},
            "rate_limit": {"enabled": False, "requests_per_minute": 60, "burst": 60},
        },
        "tokens": [{"env": args.api_key_env or "SIPP_SERVE_UNUSED", "caller": "client"}],
        "targets": [target],
    }
    config = parse_config(data, "sipp serve")
    if key is None:
        config = dataclasses.replace(config, tokens=())  # loopback only: no bearer token
    tokens = (("client", key),) if key is not None else ()
    return config, GatewaySecrets(secrets.token_urlsafe(32), tokens, {})


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _run(config: Any, gateway_secrets: Any) -> int:
    from sipp.gateway.server.serve import GatewayServer

    async def run() -> int:
        return await GatewayServer(config, gateway_secrets).run()

    try:
        import uvloop
    except ImportError:
        return asyncio.run(run())
    result: int = uvloop.run(run())
    return result


def serve_main(argv: Sequence[str], err: TextIO = sys.stderr) -> int:
    """``sipp serve``; returns the exit status (2: bad arguments or missing extra)."""
    args = _parser().parse_args(list(argv))
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        print(f"sipp serve: error: serving needs the gateway extra: {GATEWAY_EXTRA_HINT}",
              file=err)
        return 2
    from sipp.gateway.server.logging import LOG_ENV, configure_logging

    try:
        configure_logging(os.environ.get(LOG_ENV))
        config, gateway_secrets = build_serve_config(args)
    except (SippError, ValueError) as exc:
        issues = getattr(exc, "issues", None)
        message = ("; ".join(str(issue) for issue in issues) if issues
                   else exc.message if isinstance(exc, SippError) else str(exc))
        print(f"sipp serve: error: {message}", file=err)
        return 2
    public = config.public_bind
    host = f"[{public[0]}]" if ":" in public[0] else public[0]
    print(f"sipp serve: {config.targets[0].name} at http://{host}:{public[1]} "
          f"(OpenAI base URL http://{host}:{public[1]}/v1)"
          + ("" if config.tokens else "; no API key (loopback only)"), file=err)
    try:
        return _run(config, gateway_secrets)
    except OSError as exc:
        print(f"sipp serve: error: cannot bind {host}:{public[1]}: {exc.strerror or exc}",
              file=err)
        return 2


