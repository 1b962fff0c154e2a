"""The ``sipp MODEL PROMPT`` command: stream generated text to stdout."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

__all__ = ["add_generate_arguments", "run_generate"]

_STATS_KEYS = (
    "input_tokens", "output_tokens", "prefill_tokens", "cached_tokens", "ttft_ms",
    "inter_token_ms", "e2e_ms", "prefill_ms", "decode_ms", "prefill_tokens_per_second",
    "decode_tokens_per_second", "e2e_tokens_per_second",
)


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="GGUF path, packaged name ('gemma'), "
                        "hf://org/repo/file.gguf or https://... URL")
    parser.add_argument("prompt", help="prompt text (with --chat: the user message)")
    parser.add_argument("--chat", action="store_true",
                        help="render the prompt as a user message with the model's chat template")
    parser.add_argument("--system", default=None, help="system message (with --chat)")
    parser.add_argument("--chat-template", default=None, metavar="FILE",
                        help="Jinja chat template file (or inline text) for --chat, replacing "
                             "the GGUF's tokenizer.chat_template")
    parser.add_argument("--max-tokens", type=int, default=128, metavar="N")
    parser.add_argument("--ctx-size", type=int, default=None, metavar="N")
    parser.add_argument("--backend", default="auto",
                        choices=["auto", "cpu", "cuda", "metal", "vulkan"],
                        help="native backend for this process (same rules as "
                             "SIPP_PYTHON_BACKEND)")
    parser.add_argument("--temperature", type=float, default=None, metavar="T")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--stats", default="off", choices=["off", "basic", "profile"],
                        help="print request statistics to stderr")


def _print_stats(stats: dict[str, Any] | None, level: str, err: TextIO) -> None:
    if not stats or level == "off":
        return
    print("stats:", file=err)
    keys = list(_STATS_KEYS)
    if level == "profile":
        keys += [k for k in stats if k not in keys]
    for key in keys:
        value = stats.get(key)
        if value is None:
            continue
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"  {key}: {shown}", file=err)


def run_generate(args: argparse.Namespace, out: TextIO = sys.stdout,
                 err: TextIO = sys.stderr) -> int:
    """Load the model, stream the completion, return the exit code."""
    import sipp
    from sipp._template_source import read_chat_template
    from sipp.models import parse_source, resolve_model
    from sipp.models.progress import load_bar
    from sipp.native import check_backend_env, select_backend

    try:
        if args.backend != "auto":
            select_backend(args.backend)  # before SIPP_PYTHON_BACKEND, for this process
        else:
            check_backend_env()  # a bad SIPP_PYTHON_BACKEND is a usage error (exit 2)
        source = parse_source(args.model)
        if source.kind == "path":  # a missing file or a folder is a usage error (exit 2)
            resolve_model(source)
        template = (read_chat_template(args.chat_template, "--chat-template")
                    if args.chat_template is not None else None)
        context: dict[str, Any] = {}
        if args.ctx_size is not None:
            context["n_ctx"] = args.ctx_size
        sampling: dict[str, Any] = {}
        if args.seed is not None:
            sampling["seed"] = args.seed
        config = sipp.NativeRuntimeConfig(
            context=sipp.ContextRuntimeConfig(**context),
            sampling=sipp.SamplingRuntimeConfig(**sampling),
            observability=sipp.ObservabilityRuntimeConfig(
                runtime_metrics=args.stats != "off", backend_profiling=args.stats == "profile"
            ),
        )
        options = sipp.SippTextOptions(max_tokens=args.max_tokens, temperature=args.temperature)
        descriptor = sipp.LocalModelDescriptor(
            args.model, config, chat_template=template, progress=load_bar("loading")
        )
    except sipp.SippError as exc:
        print(f"sipp: error: {exc}", file=err)
        return 2

    with sipp.SippClient() as client:
        run: sipp.SippTextRun | None = None
        try:
            ref = client.add("cli", descriptor)
            if args.chat:
                messages = []
                if args.system:
                    messages.append(sipp.ChatMessage("system", args.system))
                messages.append(sipp.ChatMessage("user", args.prompt))
                run = client.chat(messages, endpoint=ref, options=options, emit_tokens=True)
            else:
                run = client.query(args.prompt, endpoint=ref, options=options, emit_tokens=True)
            for batch in run.tokens():
                out.write(batch.text)
                out.flush()
            response = run.result()
        except KeyboardInterrupt:
            # Ctrl-C: stop the run at the engine's next step (or the load), keep the text.
            out.write("\n")
            out.flush()
            print("sipp: cancelled", file=err)
            if run is not None:
                run.cancel("caller_cancelled")
                _print_stats(run.result().get("local_stats"), args.stats, err)
            return 130
        except sipp.SippError as exc:
            newline = "\n" if run is not None else ""  # end the partial output first
            print(f"{newline}sipp: error: {exc}", file=err)
            return 1
    out.write("\n")
    out.flush()
    _print_stats(response.get("local_stats"), args.stats, err)
    return 0
