"""Local target through our gateway vs ``llama-server -np N``: aggregate streaming tokens/s.

Same GGUF (Gemma 3 270M Q4_K_M from PyPI), same pinned llama.cpp build (the gateway loads
the libraries beside ``llama-server``), same threads, context, batch, flash attention and
repacking. ``--clients`` concurrent streaming clients (a separate process) each send
``--requests`` greedy completions (``/v1/completions``, ``ignore_eos``, ``max_tokens``) with
distinct prompts; aggregate tokens/s = generated tokens / wall time. Sides run one after the
other, in the order ABBA over two repeats, so drift on a shared machine hits both alike.
Target: ours >= 1.0x llama-server.

    python benchmarks/bench_gateway_local.py [--clients 8] [--native-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    NativeBuild,
    Report,
    Row,
    base_parser,
    free_port,
    gemma_path,
    llama_server,
    log,
    machine_state,
    median,
    repack_enabled,
    resolve_native,
    word_text,
)
from benchmarks.bench_gateway_provider import _pct, _wait_http, process

TOKEN = "sk-bench-local"
TARGET = "gemma"


# --- the client process -------------------------------------------------------------------


async def _one(port: int, path: str, headers: str, body: bytes) -> dict[str, Any]:
    """One streamed completion: time to first byte of body, total time, tokens."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.perf_counter()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                 f"{headers}\r\n".encode() + body)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    first: float | None = None
    data = bytearray()
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        if first is None:
            first = time.perf_counter()
        data += chunk
    total = time.perf_counter() - t0
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {bytes(data[:300])!r}")
    pieces = 0
    usage: int | None = None
    text = []
    for match in re.finditer(rb"data: (\{.*?\})\r?\n", bytes(data)):
        obj = json.loads(match.group(1))
        if obj.get("usage"):
            usage = obj["usage"].get("completion_tokens")
        for choice in obj.get("choices") or ():
            piece = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
            if piece:
                pieces += 1
                text.append(piece)
    return {"ttfb": (first or t0) - t0, "total": total, "usage_tokens": usage,
            "chunks": pieces, "text": "".join(text)}


async def _clients(spec: dict[str, Any]) -> dict[str, Any]:
    port, path, headers = spec["port"], spec["path"], spec["headers"]
    bodies: list[list[bytes]] = [[json.dumps(b).encode() for b in client]
                                 for client in spec["bodies"]]
    await _one(port, path, headers, json.dumps(spec["warmup"]).encode())

    async def client(mine: list[bytes]) -> list[dict[str, Any]]:
        return [await _one(port, path, headers, body) for body in mine]

    t0 = time.perf_counter()
    results = await asyncio.gather(*(client(mine) for mine in bodies))
    wall = time.perf_counter() - t0
    flat = [r for per in results for r in per]
    return {"wall": wall, "requests": flat}


def client_main(spec_json: str) -> None:
    try:
        import uvloop

        result = uvloop.run(_clients(json.loads(spec_json)))
    except ImportError:
        result = asyncio.run(_clients(json.loads(spec_json)))
    print(json.dumps(result))


def run_clients(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--client", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"clients failed: {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


# --- servers ------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def gateway_toml(port: int, mport: int, model: Path, runtime: dict[str, dict[str, Any]],
                 n_clients: int) -> str:
    lines = [
        f'public_bind = "127.0.0.1:{port}"', f'management_bind = "127.0.0.1:{mport}"',
        "max_request_bytes = 1048576", f"max_concurrent_requests = {max(64, n_clients * 4)}",
        "allowed_origins = []", 'admin_password_env = "BENCH_ADMIN_PW"', "",
        "[security.client_ip]", 'source = "peer"', "trusted_proxy_cidrs = []", "",
        "[security.rate_limit]", "enabled = false", "requests_per_minute = 60", "burst = 60",
        "", "[[tokens]]", 'env = "BENCH_TOKEN"', 'caller = "bench"', "targets = []", "",
        "[[targets]]", f'name = "{TARGET}"', 'type = "local"', f"model = {json.dumps(str(model))}",
        'backend = "cpu"', 'stats = "off"',
    ]
    for group, fields in runtime.items():
        lines += ["", f"[targets.runtime.{group}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def our_gateway(build: NativeBuild, model: Path, runtime: dict[str, dict[str, Any]],
                n_clients: int, workdir: Path) -> Iterator[int]:
    port, mport = free_port(), free_port()
    config = workdir / "gateway.toml"
    config.write_text(gateway_toml(port, mport, model, runtime, n_clients))
    env = dict(os.environ, BENCH_ADMIN_PW="pw", BENCH_TOKEN=TOKEN, SIPP_GATEWAY_LOG="warn",
               SIPP_PYTHON_NATIVE_LIBRARY_PATH=str(build.directory))
    with process([sys.executable, "-m", "sipp.gateway.server.cli", "serve", "--config",
                  str(config)], env, workdir / "gateway.log") as proc:
        try:
            _wait_http(mport, "/readyz", proc, 300)
        except RuntimeError as exc:
            tail = (workdir / "gateway.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{exc}\n{tail}") from exc
        yield port


# --- the benchmark ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--clients", type=int, default=8, help="concurrent streams (default 8)")
    p.add_argument("--requests", type=int, default=2, help="requests per client (default 2)")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--prompt-words", type=int, default=24)
    p.add_argument("--repeats", type=int, default=2, help="ABBA repeats (default 2)")
    args = p.parse_args(argv)
    if args.client:
        client_main(args.client)
        return 0
    build = resolve_native(args.native_dir, build=args.setup_peers)
    repack = repack_enabled(args.repack)
    model = gemma_path()
    n = args.clients
    n_ctx = n * (args.prompt_words * 3 + args.max_tokens + 64)
    threads = args.threads
    runtime: dict[str, dict[str, Any]] = {
        "placement": {"no_extra_bufts": not repack},
        "context": {"n_ctx": n_ctx, "n_batch": 2048, "n_ubatch": 512, "n_parallel": n,
                    "n_threads": threads, "n_threads_batch": threads,
                    "flash_attention": "enabled" if args.flash_attn == "on" else "disabled"},
        "sampling": {"ignore_eos": True},
    }
    server_args = ["-m", str(model), "-np", str(n), "-c", str(n_ctx), "-b", "2048",
                   "-ub", "512", "-t", str(threads), "-tb", str(threads), "-fa",
                   args.flash_attn, "--no-webui"]
    if not repack:
        server_args.append("--no-repack")
    report = Report("local Gemma 3 270M: our gateway vs llama-server, concurrent streams", {
        "clients": n, "requests_per_client": args.requests, "max_tokens": args.max_tokens,
        "n_ctx": n_ctx, "threads": threads, "repack": repack, "flash_attn": args.flash_attn,
        "build": str(build.directory), "model": str(model), "llama_server_args": server_args})

    def bodies(model_name: str | None, extra: dict[str, Any]) -> dict[str, Any]:
        def body(seed: int) -> dict[str, Any]:
            b: dict[str, Any] = {"prompt": word_text(args.prompt_words, seed),
                                 "max_tokens": args.max_tokens, "temperature": 0,
                                 "stream": True, "stream_options": {"include_usage": True},
                                 **extra}
            if model_name:
                b["model"] = model_name
            return b

        return {"bodies": [[body(1000 + c * 100 + r) for r in range(args.requests)]
                           for c in range(n)], "warmup": body(7)}

    sides: dict[str, list[dict[str, Any]]] = {"sipp": [], "llama-server": []}
    order = (["sipp", "llama-server", "llama-server", "sipp"] * args.repeats)[: 2 * args.repeats]
    with tempfile.TemporaryDirectory(prefix="sipp-bench-gwlocal-") as tmp:
        for side in order:
            log(f"{side}: {n} clients x {args.requests} requests x {args.max_tokens} tokens")
            load = os.getloadavg()[0]
            if side == "sipp":
                with our_gateway(build, model, runtime, n, Path(tmp)) as port:
                    spec = {"port": port, "path": "/v1/completions",
                            "headers": f"Authorization: Bearer {TOKEN}\r\n",
                            **bodies(TARGET, {})}
                    result = run_clients(spec, 3600)
            else:
                with llama_server(build, server_args) as url:
                    port = int(url.rsplit(":", 1)[1])
                    spec = {"port": port, "path": "/v1/completions", "headers": "",
                            **bodies(None, {"ignore_eos": True})}
                    result = run_clients(spec, 3600)
            reqs = result["requests"]
            tokens = sum(r["usage_tokens"] or r["chunks"] for r in reqs)
            run = {"wall_s": result["wall"], "tokens": tokens,
                   "tokens_per_s": tokens / result["wall"],
                   "ttfb_p50_ms": _pct([r["ttfb"] for r in reqs], 0.5) * 1e3,
                   "per_stream_tokens_per_s_p50": median(
                       [(r["usage_tokens"] or r["chunks"]) / r["total"] for r in reqs]),
                   "requests": len(reqs), "loadavg_at_start": load,
                   "tokens_counted_by": "usage" if all(r["usage_tokens"] for r in reqs)
                   else "chunks",
                   "sample_text": reqs[0]["text"][:80]}
            log(f"{side}: {run['tokens_per_s']:.1f} tokens/s aggregate ({tokens} tokens "
                f"in {result['wall']:.1f} s)")
            sides[side].append(run)

    best = {side: max(r["tokens_per_s"] for r in runs) for side, runs in sides.items()}
    mid = {side: median([r["tokens_per_s"] for r in runs]) for side, runs in sides.items()}
    report.figures["runs"] = sides
    report.rows.append(Row(f"aggregate tokens/s, {n} streams (best)", "tok/s", best["sipp"],
                           best["llama-server"], "llama-server", target=(">=", 1.0)))
    report.rows.append(Row(f"aggregate tokens/s, {n} streams (median)", "tok/s", mid["sipp"],
                           mid["llama-server"], "llama-server"))
    report.rows.append(Row("time to first byte p50 (median of runs)", "ms",
                           median([r["ttfb_p50_ms"] for r in sides["sipp"]]),
                           median([r["ttfb_p50_ms"] for r in sides["llama-server"]]),
                           "llama-server"))
    report.machine_after = machine_state()
    data = json.dumps(report.as_dict(), indent=2, default=str)
    if args.out is not None:
        args.out.write_text(data + "\n")
    print(data if args.json else report.table() + "\n" + data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
