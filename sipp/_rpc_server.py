"""``sipp rpc-server``: serve this host's devices to a model split over several hosts.

Started from the installed backend package (no separate binary): the process calls ggml's
RPC server loop and serves until it is stopped (Ctrl-C or SIGTERM). A model elsewhere lists
this worker as ``placement.devices = ["rpc://host:port", ...]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from sipp.errors import SippError

__all__ = ["rpc_server"]

_NO_AUTH = (
    "ggml's RPC protocol has no authentication and no encryption: anyone who can reach the "
    "port can run computations and read the weights sent to it"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipp rpc-server",
        description="Serve this host's devices (the GPUs, else the CPU) to models whose "
        "placement.devices lists rpc://HOST:PORT. " + _NO_AUTH + ".",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1,
        help="CPU threads for the computations (default: all cores)",
    )
    parser.add_argument(
        "--device", action="append", dest="devices", metavar="NAME",
        help="serve this local device (ggml name, see `sipp doctor`); repeatable",
    )
    parser.add_argument("--cache-dir", help="cache tensors received from clients here")
    parser.add_argument(
        "--allow-remote", action="store_true",
        help="allow binding a non-loopback address (read the warning above first)",
    )
    return parser


def rpc_server(argv: Sequence[str]) -> int:
    """Run the worker; returns an exit status when it cannot start."""
    from sipp.native.rpc import is_loopback_host, serve_rpc

    args = _parser().parse_args(list(argv))
    if not 1 <= args.port <= 65535:
        print(f"error: --port must be from 1 to 65535, got {args.port}", file=sys.stderr)
        return 2
    if args.threads < 1:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    if not is_loopback_host(args.host) and not args.allow_remote:
        print(
            f"error: refusing to bind {args.host}: {_NO_AUTH}. Bind a private interface "
            "you control and pass --allow-remote to do it anyway.",
            file=sys.stderr,
        )
        return 2
    # ggml's accept loop runs in C and never returns to the interpreter, so Python-level
    # signal handlers would never run: let SIGINT and SIGTERM end the process directly.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        serve_rpc(args.host, args.port, n_threads=args.threads, devices=args.devices,
                  cache_dir=args.cache_dir)
    except (ValueError, RuntimeError, SippError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
