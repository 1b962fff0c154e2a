"""The ``sipp`` command (see ``_USAGE``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from sipp.errors import ConfigurationError, SippError

__all__ = ["main"]

_USAGE = """\
usage: sipp MODEL PROMPT [--chat] [--max-tokens N] [...]   generate text
       sipp serve MODEL [--port 8080] [--host 127.0.0.1] [...]  serve over HTTP
       sipp models pull|list|rm|show ...                     the model cache
       sipp show MODEL                                       a model's metadata
       sipp doctor [--json]                                  which native backend loads
       sipp rpc-server --port N [--host 127.0.0.1]           serve this host's devices to
                                                             a model split over hosts

MODEL is a GGUF path, a packaged name (gemma), hf://org/repo/file.gguf (globs such as
hf://org/repo/*Q4_K_M.gguf, @revision) or an https:// URL.
Run 'sipp COMMAND --help' (or 'sipp MODEL PROMPT --help') for the options."""


def _doctor_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipp doctor",
        description="Load the native backend and report what was selected and why.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _format_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"


def format_report(info: dict[str, Any]) -> str:
    """``backend_info()`` as readable text."""
    llama = info.get("llama_cpp") or {}
    cpu = info.get("cpu") or {}
    lines = [
        f"backend:        {info['backend']} (selected by {info['selected_by']})",
        f"library dir:    {info['library_dir']}",
        f"package:        {info.get('package_version') or 'unknown'}"
        f" (sipp {info['sipp_version']})",
        f"llama.cpp:      {llama.get('version', 'unknown')}"
        + (f" from {llama['distribution']}" if llama.get("distribution") else "")
        + (f" sha256 {llama['sha256'][:16]}..." if llama.get("sha256") else ""),
        f"dynamic ggml:   {'yes' if info.get('ggml_backend_dl') else 'no'}",
        f"cpu variant:    {cpu.get('variant') or 'unknown'}",
        f"cpu features:   {' '.join(cpu.get('features') or []) or 'none reported'}",
        f"gpu offload:    {'yes' if info.get('gpu_offload') else 'no'}",
        "devices:",
    ]
    for dev in info.get("devices") or []:
        lines.append(
            f"  - {dev['name']} [{dev['type']}, {dev['backend']}] {dev['description']}"
            f" ({_format_bytes(dev['memory_free'])} free of {_format_bytes(dev['memory_total'])})"
        )
    if not info.get("devices"):
        lines.append("  (none)")
    for title, key in (("skipped backends:", "skipped"), ("warnings:", "warnings")):
        items = info.get(key) or []
        if items:
            lines.append(title)
            lines.extend(f"  - {item}" for item in items)
    return "\n".join(lines)


def doctor(argv: Sequence[str]) -> int:
    """``sipp doctor``: print ``backend_info()``; exit 1 if no backend loads."""
    args = _doctor_parser().parse_args(list(argv))
    from sipp.native import backend_info  # deferred: cffi and the native declarations

    try:
        info = backend_info()
    except ConfigurationError as exc:  # a bad SIPP_PYTHON_BACKEND: a usage error
        if args.json:
            print(json.dumps(exc.to_dict(), indent=2))
        else:
            print(f"sipp doctor: error: {exc}", file=sys.stderr)
        return 2
    except SippError as exc:
        if args.json:
            print(json.dumps(exc.to_dict(), indent=2))
        else:
            print(f"sipp doctor: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2) if args.json else format_report(info))
    return 0


def generate(argv: Sequence[str]) -> int:
    """``sipp MODEL PROMPT [...]``: stream generated text to stdout (Ctrl-C cancels)."""
    from sipp._generate import add_generate_arguments, run_generate

    parser = argparse.ArgumentParser(
        prog="sipp",
        description="Generate text with a local GGUF model (or 'sipp doctor').",
    )
    add_generate_arguments(parser)
    return run_generate(parser.parse_args(list(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sipp`` command; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "doctor":
            return doctor(args[1:])
        if args and args[0] == "rpc-server":
            from sipp._rpc_server import rpc_server

            return rpc_server(args[1:])
        if args and args[0] in ("models", "show"):
            from sipp._models_cli import models_main, show_main

            return (models_main if args[0] == "models" else show_main)(args[1:])
        if args and args[0] == "serve":
            from sipp._serve import serve_main

            return serve_main(args[1:])
        if not args or args[0] in ("-h", "--help"):
            print(_USAGE, file=sys.stdout if args else sys.stderr)
            return 0 if args else 2
        return generate(args)
    except BrokenPipeError:
        # The reader went away (`sipp ... | head`): stop quietly, as Unix tools do.
        # Point stdout at devnull so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a killed pipe writer


if __name__ == "__main__":
    raise SystemExit(main())
