"""``sipp-gateway check --config F`` and ``sipp-gateway serve --config F``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from sipp._version import __version__
from sipp.errors import ConfigurationError
from sipp.gateway.server.config import (
    GatewayConfig,
    GatewayConfigError,
    LocalTarget,
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
