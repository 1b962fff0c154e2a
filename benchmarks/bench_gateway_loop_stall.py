"""Inter-token gaps of streams on the gateway while another request's run is starting.

``--streams`` streaming queries (``ignore_eos``) run on one local target of an in-process
gateway; then ``--heavy-requests`` chat requests, one after the other, each with a
``--heavy-bytes`` message, whose start (chat template, tokenizing 300 KB by default) is the CPU work
in question. The figure is the p99 gap between token events of the streams while a heavy
request is in flight, with runs started on submission threads (the gateway's default)
against runs started on the event loop (``submit_workers=0``: the gateway before the
change), in the order ABAB... over ``--repeats``. Lower is better; the target is the
threaded p99 at or below the inline one.

    python benchmarks/bench_gateway_loop_stall.py [--model GGUF] [--streams 8] [--json]

Without ``--model`` it runs on the tiny generated test model (seconds); ``--gemma`` uses
Gemma 3 270M from PyPI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Report, Row, emit, gemma_path, log, median, percentile, word_text
from sipp.gateway.server.submission import DEFAULT_SUBMIT_WORKERS

TOKEN = "sk-bench-stall"
TARGET = "model"


# --- the gateway, in this process ----------------------------------------------------------


def _config(model: Path, streams: int, threads: int, heavy_bytes: int) -> dict[str, Any]:
    context: dict[str, Any] = {"n_ctx": (streams + 1) * 2048, "n_parallel": streams + 1}
    if threads:
        context.update(n_threads=threads, n_threads_batch=threads)
    return {
        "public_bind": "127.0.0.1:0", "management_bind": "127.0.0.1:0",
        "max_request_bytes": heavy_bytes + 65536, "admin_password_env": "BENCH_ADMIN_PW",
        "security": {"client_ip": {"source": "peer", "trusted_proxy_cidrs": []},
                     "rate_limit": {"enabled": False, "requests_per_minute": 60,
                                    "burst": 60}},
        "tokens": [{"env": "BENCH_TOKEN", "caller": "bench", "targets": []}],
        "targets": [{"name": TARGET, "type": "local", "model": str(model), "backend": "cpu",
                     "stats": "off",
                     "runtime": {"context": context, "sampling": {"ignore_eos": True}}}],
    }


@contextlib.contextmanager
def gateway(config: dict[str, Any], submit_workers: int) -> Iterator[int]:
    """A GatewayServer on its own event-loop thread; yields the public port once ready."""
    from sipp.gateway.server.config import parse_config
    from sipp.gateway.server.secrets import read_secrets
    from sipp.gateway.server.serve import GatewayServer

    parsed = parse_config(config)
    secrets = read_secrets(parsed, {"BENCH_ADMIN_PW": "pw", "BENCH_TOKEN": TOKEN})
    loop = asyncio.new_event_loop()
    server = GatewayServer(parsed, secrets, drain_timeout=5, submit_workers=submit_workers)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_until_complete(server.wait())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not started.wait(60):
        raise RuntimeError("gateway did not start")
    try:
        deadline = time.monotonic() + 300
        while not server.state.targets.ready:
            if server.state.targets.failed or time.monotonic() > deadline:
                raise RuntimeError("target did not load")
            time.sleep(0.05)
        yield server.public_port
    finally:
        loop.call_soon_threadsafe(server.shutdown)
        thread.join(30)
        loop.close()


# --- the clients ---------------------------------------------------------------------------


async def _post(port: int, path: str, body: bytes) -> tuple[asyncio.StreamReader,
                                                            asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                 f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    return reader, writer


async def _stream(port: int, seed: int, arrivals: list[float], stop: asyncio.Event) -> None:
    body = json.dumps({"model": TARGET, "prompt": word_text(12, seed), "max_tokens": 1000000,
                       "stream": True}).encode()
    reader, writer = await _post(port, "/v1/query", body)
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"stream refused: {head[:200]!r}")
    halt = asyncio.ensure_future(stop.wait())
    try:
        while True:
            read = asyncio.ensure_future(reader.read(65536))
            await asyncio.wait((read, halt), return_when=asyncio.FIRST_COMPLETED)
            if not read.done():
                read.cancel()
                return
            chunk = read.result()
            if not chunk:
                raise RuntimeError("a stream ended before the benchmark hung up")
            if b"event: token" in chunk:
                arrivals.append(time.perf_counter())
    finally:
        halt.cancel()
        writer.close()


async def _heavy(port: int, text: str) -> tuple[float, float, int]:
    body = json.dumps({"model": TARGET, "max_tokens": 1,
                       "messages": [{"role": "user", "content": text}]}).encode()
    t0 = time.perf_counter()
    reader, writer = await _post(port, "/v1/chat", body)
    head = await reader.readuntil(b"\r\n\r\n")
    await reader.read()
    writer.close()
    return t0, time.perf_counter(), int(head.split(b" ", 2)[1])


async def scenario(port: int, streams: int, heavy: int, text: str, baseline_s: float
                   ) -> dict[str, Any]:
    arrivals: list[list[float]] = [[] for _ in range(streams)]
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(_stream(port, 100 + i, arrivals[i], stop))
             for i in range(streams)]
    deadline = time.perf_counter() + 120
    while not all(len(a) >= 3 for a in arrivals):
        if time.perf_counter() > deadline or any(t.done() for t in tasks):
            raise RuntimeError("streams did not start")
        await asyncio.sleep(0.01)
    t_base = time.perf_counter()
    await asyncio.sleep(baseline_s)
    windows = [await _heavy(port, text) for _ in range(heavy)]
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*tasks)
    base = [b - a for times in arrivals for a, b in itertools.pairwise(times)
            if a >= t_base and b <= windows[0][0]]
    during = [b - a for times in arrivals for a, b in itertools.pairwise(times)
              if any(b > w0 and a < w1 for w0, w1, _ in windows)]
    return {"baseline_gaps": base, "heavy_gaps": during,
            "heavy_latency_s": [w1 - w0 for w0, w1, _ in windows],
            "heavy_status": sorted({status for _, _, status in windows})}


# --- the benchmark -------------------------------------------------------------------------


def _tiny_model() -> Path:
    from build_scripts.make_test_models import ensure_test_models

    return ensure_test_models()["tiny-llama"]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--model", type=Path, help="GGUF (default: the tiny generated test model)")
    p.add_argument("--gemma", action="store_true", help="Gemma 3 270M Q4_K_M from PyPI")
    p.add_argument("--streams", type=int, default=8, help="concurrent streams (default 8)")
    p.add_argument("--heavy-requests", type=int, default=3,
                   help="heavy requests per run, one after the other (default 3)")
    p.add_argument("--heavy-bytes", type=int, default=300_000,
                   help="size of each heavy request's message (default 300000)")
    p.add_argument("--baseline", type=float, default=1.0,
                   help="seconds of streaming before the first heavy request (default 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="engine CPU threads (default: the runtime's default)")
    p.add_argument("--repeats", type=int, default=1, help="AB repeats (default 1)")
    p.add_argument("--json", action="store_true", help="print the JSON report instead")
    p.add_argument("--out", type=Path, help="also write the JSON report to this file")
    args = p.parse_args(argv)
    model = args.model or (gemma_path() if args.gemma else _tiny_model())
    config = _config(model, args.streams, args.threads, args.heavy_bytes)
    text = word_text(args.heavy_bytes // 7, 3)[: args.heavy_bytes]
    report = Report("gateway: stream inter-token gaps while a heavy request starts", {
        "model": str(model), "streams": args.streams, "heavy_requests": args.heavy_requests,
        "heavy_bytes": len(text), "baseline_s": args.baseline, "threads": args.threads,
        "repeats": args.repeats})
    modes = {"threads": DEFAULT_SUBMIT_WORKERS, "inline": 0}
    runs: dict[str, list[dict[str, Any]]] = {"threads": [], "inline": []}
    order = (["threads", "inline"] * args.repeats)
    for mode in order:
        log(f"{mode}: {args.streams} streams, {args.heavy_requests} heavy requests")
        with gateway(config, modes[mode]) as port:
            result = asyncio.run(scenario(port, args.streams, args.heavy_requests, text,
                                          args.baseline))
        run = {"p50_gap_ms": percentile(result["heavy_gaps"], 0.5) * 1e3,
               "p99_gap_ms": percentile(result["heavy_gaps"], 0.99) * 1e3,
               "max_gap_ms": max(result["heavy_gaps"], default=0.0) * 1e3,
               "baseline_p50_gap_ms": percentile(result["baseline_gaps"], 0.5) * 1e3,
               "baseline_p99_gap_ms": percentile(result["baseline_gaps"], 0.99) * 1e3,
               "heavy_latency_s": result["heavy_latency_s"],
               "heavy_status": result["heavy_status"], "gaps": len(result["heavy_gaps"])}
        log(f"{mode}: p99 gap {run['p99_gap_ms']:.1f} ms during heavy requests "
            f"(without: {run['baseline_p99_gap_ms']:.1f} ms); heavy request "
            f"{median(run['heavy_latency_s']):.2f} s, HTTP {run['heavy_status']}")
        runs[mode].append(run)

    def mid(mode: str, key: str) -> float:
        return median([r[key] for r in runs[mode]])

    peer = "runs started on the loop (before)"
    report.figures["runs"] = runs
    report.rows += [
        Row("p99 inter-token gap during heavy requests", "ms", mid("threads", "p99_gap_ms"),
            mid("inline", "p99_gap_ms"), peer, target=("<=", 1.0)),
        Row("max inter-token gap during heavy requests", "ms", mid("threads", "max_gap_ms"),
            mid("inline", "max_gap_ms"), peer),
        Row("p50 inter-token gap during heavy requests", "ms", mid("threads", "p50_gap_ms"),
            mid("inline", "p50_gap_ms"), peer),
        Row("p99 inter-token gap without heavy requests", "ms",
            mid("threads", "baseline_p99_gap_ms"), mid("inline", "baseline_p99_gap_ms"), peer),
    ]
    emit(report, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
