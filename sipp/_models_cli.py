"""``sipp models pull|list|rm|show`` and ``sipp show``: the model cache from the shell.

Everything here reads GGUF headers only (never loads weights or the native backend), so
listing a cache of large models is instant and works on a machine without a backend.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from sipp.errors import SippError

__all__ = ["models_main", "show_main"]


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def _params(n: int) -> str:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)


def _facts_row(path: Any, files: Any = None) -> dict[str, Any]:
    from sipp.models import read_model_facts

    try:
        return read_model_facts(path, files).to_dict()
    except SippError as exc:
        return {"error": str(exc)}


def _print_facts(source: str, facts: dict[str, Any], out: TextIO, template: bool) -> None:
    if "error" in facts:
        print(f"source:        {source}\nerror:         {facts['error']}", file=out)
        return
    rows = [
        ("source", source),
        ("path", facts["path"]),
        ("name", facts["name"] or "-"),
        ("architecture", facts["architecture"] or "-"),
        ("quantization", facts["quantization"] or "-"),
        ("parameters", _params(facts["n_params"])),
        ("size", _size(facts["size"]) + (f" in {facts['shards']} shards"
                                         if facts["shards"] > 1 else "")),
        ("context length", facts["context_length"] or "-"),
        ("embedding size", facts["embedding_length"] or "-"),
        ("layers", facts["block_count"] or "-"),
        ("chat template", "yes" if facts["has_chat_template"] else "no"),
        ("projector", "yes (mmproj)" if facts["is_projector"] else "no"),
    ]
    for key, value in rows:
        print(f"{key + ':':<15}{value}", file=out)
    if template and facts["chat_template"]:
        print("\n" + facts["chat_template"], file=out)


def _resolve(source: str, *, refresh: bool, sha256: str | None) -> Any:
    from sipp.models import ResolveOptions, resolve_model

    return resolve_model(source, ResolveOptions(refresh=refresh), sha256=sha256)


def _pull(args: argparse.Namespace, out: TextIO) -> int:
    resolved = _resolve(args.source, refresh=True, sha256=args.sha256)
    for path in resolved.files:
        print(path, file=out)
    return 0


def _list(args: argparse.Namespace, out: TextIO) -> int:
    from sipp.models import hub_cache_dir, list_cached

    entries = list_cached()
    rows = []
    for entry in entries:
        facts = _facts_row(entry.path)
        rows.append({**entry.to_dict(), **{k: facts.get(k) for k in (
            "architecture", "quantization", "context_length", "has_chat_template", "n_params",
            "error")}})
    if args.json:
        print(json.dumps(rows, indent=2), file=out)
        return 0
    if not rows:
        print(f"no models in {hub_cache_dir()}", file=out)
        return 0
    header = ("SOURCE", "SIZE", "QUANT", "ARCH", "CTX", "TEMPLATE")
    table = [header] + [(
        r["source"], _size(r["size"]), r["quantization"] or "-", r["architecture"] or "-",
        str(r["context_length"] or "-"), "yes" if r["has_chat_template"] else "no",
    ) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(),
              file=out)
    print(f"\ncache: {hub_cache_dir()}", file=out)
    return 0


def _rm(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sipp.models import remove_cached

    status = 0
    for name in args.sources:
        removed = remove_cached(name)
        if not removed:
            print(f"sipp models rm: {name!r} is not in the cache (see `sipp models list`)",
                  file=err)
            status = 1
        for entry in removed:
            print(f"removed {entry.source} ({_size(entry.size)})", file=out)
    return status


def _show(args: argparse.Namespace, out: TextIO) -> int:
    resolved = _resolve(args.source, refresh=False, sha256=getattr(args, "sha256", None))
    facts = _facts_row(resolved.path, resolved.files)
    if args.json:
        print(json.dumps({"source": args.source, **facts}, indent=2), file=out)
    else:
        _print_facts(args.source, facts, out, args.template)
    return 0 if "error" not in facts else 1


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="GGUF path, packaged name, hf://... or https://... URL")
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")
    parser.add_argument("--template", action="store_true", help="also print the chat template")


def _models_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipp models",
        description="The model cache (the Hugging Face hub cache: HF_HUB_CACHE / HF_HOME), "
        "shared with every HF tool on this machine.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pull = sub.add_parser("pull", help="download a model (or check a cached one is current)")
    pull.add_argument("source", help="hf://org/repo/file.gguf, a glob, or an https:// URL")
    pull.add_argument("--sha256", default=None, metavar="HEX", help="pin a URL's content")
    listing = sub.add_parser("list", help="models in the cache")
    listing.add_argument("--json", action="store_true")
    rm = sub.add_parser("rm", help="remove cached models")
    rm.add_argument("sources", nargs="+", metavar="SOURCE",
                    help="a source as `sipp models list` shows it, or hf://org/repo")
    show = sub.add_parser("show", help="facts of a model (downloads it if needed)")
    _show_arguments(show)
    return parser


def _run(action: Any, err: TextIO, prog: str) -> int:
    try:
        result: int = action()
        return result
    except SippError as exc:
        print(f"{prog}: error: {exc}", file=err)
        return 1


def models_main(argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """``sipp models COMMAND``; returns the exit status."""
    args = _models_parser().parse_args(list(argv))
    actions = {
        "pull": lambda: _pull(args, out),
        "list": lambda: _list(args, out),
        "rm": lambda: _rm(args, out, err),
        "show": lambda: _show(args, out),
    }
    return _run(actions[args.command], err, f"sipp models {args.command}")


def show_main(argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """``sipp show MODEL``: a GGUF's metadata without loading its weights."""
    parser = argparse.ArgumentParser(
        prog="sipp show", description="Print a GGUF's metadata without loading its weights."
    )
    _show_arguments(parser)
    args = parser.parse_args(list(argv))
    return _run(lambda: _show(args, out), err, "sipp show")
