"""``sipp-gateway check --config F`` and ``sipp-gateway serve --config F``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from sipp._version import __version__
from sipp.errors import ConfigurationError, SippError
from sipp.gateway.server.config import (
    GatewayConfig,
    GatewayConfigError,
    LocalTarget,
    RoutedTarget,
    leaf_targets,
    load_config,
)
from sipp.gateway.server.logging import LOG_ENV, configure_logging, logger
from sipp.gateway.server.secrets import read_secrets

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipp-gateway",
        description="The Sipp gateway server: one HTTP boundary for local GGUF and provider "
                    f"targets. Log verbosity: {LOG_ENV}=info|debug|warn,<logger>=<level>.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate the TOML only (no secrets, models, "
                                              "providers or ports)")
    check.add_argument("--config", required=True, help="path of the gateway TOML file")
    index = commands.add_parser("index", help="build a [[collections]] entry's vector index "
                                              "(a serving gateway picks the file up)")
    index.add_argument("--config", required=True, help="path of the gateway TOML file")
    index.add_argument("--collection", required=True, help="the collection's name")
    serve = commands.add_parser("serve", help="read secrets, load targets, serve both listeners")
    serve.add_argument("--config", required=True, help="path of the gateway TOML file")
    serve.add_argument("--drain-timeout", type=float, default=30.0,
                       help="seconds to let in-flight requests finish on shutdown (default 30)")
    return parser


def _serve(path: str, drain_timeout: float) -> int:
    # Imported here, not for a cycle: serving needs uvicorn (the gateway extra), and
    # `check` must work without it.
    from sipp.gateway.server.serve import GatewayServer

    config = load_config(path)
    _check_backend_env(config)
    secrets = read_secrets(config, os.environ)

    async def run() -> int:
        return await GatewayServer(config, secrets, drain_timeout=drain_timeout).run()

    try:
        import uvloop

        return uvloop.run(run())
    except ImportError:
        return asyncio.run(run())


def _index(path: str, name: str) -> int:
    """Embed the collection's chunks through its embedding target and save the index."""
    from sipp.client import SippClient
    from sipp.gateway.server.rag import build_index
    from sipp.gateway.server.targets import descriptor_for

    config = load_config(path)
    collection = config.extensions.collections.get(name)
    if collection is None:
        known = ", ".join(sorted(config.extensions.collections)) or "none"
        print(f"sipp-gateway index: error: no collection named {name!r} in {path} "
              f"(collections: {known})", file=sys.stderr)
        return 2
    target = next(t for t in config.targets if t.name == collection.embedding_target)
    if isinstance(target, RoutedTarget):
        print(f"sipp-gateway index: error: embedding target {target.name} has deployments; "
              "index through one of them", file=sys.stderr)
        return 2
    env = getattr(target, "api_key_env", None) or getattr(target, "token_env", None)
    key = os.environ.get(env) if env else None
    if env and not key:
        print(f"sipp-gateway index: error: {env} is required (the key of embedding target "
              f"{target.name})", file=sys.stderr)
        return 2
    if isinstance(target, LocalTarget):
        _check_backend_env(config)
    with SippClient() as client:
        ref = client.add(target.name, descriptor_for(target, key))
        index = build_index(collection, client, ref)
    print(f"indexed collection {name}: {len(index)} chunks -> {collection.index_path}")
    return 0


def _check_backend_env(config: GatewayConfig) -> None:
    """Local targets load through ``SIPP_PYTHON_BACKEND``: a bad value is a config error."""
    if any(isinstance(target, LocalTarget) for target in leaf_targets(config.targets)):
        from sipp.native import check_backend_env

        check_backend_env()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sipp-gateway`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "check":
        try:
            _check_backend_env(load_config(args.config))
        except GatewayConfigError as exc:
            print(exc.message, file=sys.stderr)
            return 2
        except ConfigurationError as exc:
            print(f"sipp-gateway check: error: {exc.message}", file=sys.stderr)
            return 2
        print(f"configuration is valid: {args.config}")
        return 0
    if args.command == "index":
        try:
            return _index(args.config, args.collection)
        except GatewayConfigError as exc:
            print(exc.message, file=sys.stderr)
            return 2
        except SippError as exc:
            print(f"sipp-gateway index: error: {exc.message}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"sipp-gateway index: error: {exc}", file=sys.stderr)
            return 2
    try:
        import uvicorn  # noqa: F401  (the gateway extra)
    except ImportError:
        print('sipp-gateway serve: error: the gateway server needs the gateway extra: '
              f'pip install "sipppy[gateway]=={__version__}"', file=sys.stderr)
        return 2
    try:
        configure_logging(os.environ.get(LOG_ENV))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        return _serve(args.config, args.drain_timeout)
    except ConfigurationError as exc:
        logger.error("gateway cannot start: %s", exc.message)
        return 2
    except OSError as exc:
        logger.error("gateway cannot bind: %s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
