"""Soak: many requests through ``sipp-gateway`` to a local tiny model, with random client
disconnects mid-stream, random cancels (a client giving up before the answer) and random
stop strings; then the gateway must be back to rest.

Checks after the run: no 5xx, the in-flight / running / queued gauges back to 0, no file
descriptor or thread leak (against the counts after warm-up), and RSS after warm-up grown
by less than 5 %. The RSS curve (one sample per second) is part of the JSON report.

    python benchmarks/bench_soak.py [--requests 1000] [--concurrency 64] [--duration 1800]
                                    [--model PATH] [--json]

``--duration`` (seconds) keeps sending until it has passed (``--requests`` then only sizes
the warm-up share); without it the run ends after ``--requests`` requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "sk-soak"
TARGET = "tiny"
STOPS = ["\n", ".", " the", "a", "zz", "!"]
GAUGES = ("sipp_gateway_in_flight_requests", "sipp_local_requests_running",
          "sipp_local_requests_queued")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml(port: int, mport: int, model: Path, concurrency: int) -> str:
    return "\n".join([
        f'public_bind = "127.0.0.1:{port}"', f'management_bind = "127.0.0.1:{mport}"',
        "max_request_bytes = 1048576", f"max_concurrent_requests = {concurrency * 2}",
        "allowed_origins = []", 'admin_password_env = "SOAK_ADMIN_PW"', "",
        "[security.client_ip]", 'source = "peer"', "trusted_proxy_cidrs = []", "",
        "[security.rate_limit]", "enabled = false", "requests_per_minute = 60", "burst = 60",
        "", "[[tokens]]", 'env = "SOAK_TOKEN"', 'caller = "soak"', "targets = []", "",
        "[[targets]]", f'name = "{TARGET}"', 'type = "local"', f"model = {json.dumps(str(model))}",
        'backend = "cpu"', 'stats = "basic"', "",
        "[targets.runtime.context]", "n_parallel = 8", "n_ctx = 4096", "n_threads = 2",
        "n_threads_batch = 2", "",
        "[targets.runtime.scheduler]", f"max_queued_requests = {concurrency * 4}", "",
    ]) + "\n"  # fmt: skip


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


def _gauges(mport: int) -> dict[str, float | None]:
    """Each gauge summed over its label sets (None when the gateway does not export it)."""
    text = _get(f"http://127.0.0.1:{mport}/metrics")
    out: dict[str, float | None] = dict.fromkeys(GAUGES)
    for line in text.splitlines():
        for name in GAUGES:
            if line.startswith((name + " ", name + "{")):
                out[name] = (out[name] or 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def _proc_state(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) * 1024  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return {"rss": rss, "threads": threads, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


@contextlib.contextmanager
def gateway(model: Path, concurrency: int, workdir: Path) -> Iterator[tuple[int, int, int]]:
    """A ``sipp-gateway serve`` subprocess; yields (public port, management port, pid)."""
    port, mport = _free_port(), _free_port()
    config = workdir / "gateway.toml"
    config.write_text(_toml(port, mport, model, concurrency))
    env = dict(os.environ, SOAK_ADMIN_PW="pw", SOAK_TOKEN=TOKEN, SIPP_GATEWAY_LOG="warn")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    log = (workdir / "gateway.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "sipp.gateway.server.cli", "serve",
                             "--config", str(config)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=workdir)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                _get(f"http://127.0.0.1:{mport}/readyz", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((workdir / "gateway.log").read_text()[-3000:]) from None
                time.sleep(0.2)
        yield port, mport, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def _request(port: int, rng: random.Random) -> str:
    """One request with a random shape; returns its outcome label."""
    stream = rng.random() < 0.6
    chat = rng.random() < 0.5
    body: dict[str, Any] = {"model": TARGET, "max_tokens": rng.randint(1, 48),
                            "temperature": 0.8, "stream": stream}  # fmt: skip
    if chat:
        body["messages"] = [{"role": "user", "content": f"Tell me about item {rng.random()}"}]
    else:
        body["prompt"] = f"Once upon a time {rng.random()}"
    if rng.random() < 0.3:
        body["stop"] = rng.sample(STOPS, rng.randint(1, 3))
    path = "/v1/chat/completions" if chat else "/v1/completions"
    payload = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    disconnect_after = rng.randint(1, 6) if stream and rng.random() < 0.25 else None
    cancel_after = rng.uniform(0.0, 0.3) if not stream and rng.random() < 0.15 else None
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                     "Connection: close\r\n\r\n".encode() + payload)
        await writer.drain()
        if cancel_after is not None:
            await asyncio.sleep(cancel_after)
            return "cancelled"
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if disconnect_after is not None and status == 200:
            events = 0
            while events < disconnect_after:
                line = await reader.readline()
                if not line:
                    break
                events += line.startswith(b"data:")
            return "disconnected"
        while await reader.read(65536):
            pass
        return f"http_{status}"
    except (ConnectionError, asyncio.IncompleteReadError):
        return "connection_error"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _drive(port: int, pid: int, requests: int, concurrency: int, duration: float | None,
                 seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    curve: list[tuple[float, int]] = []
    started = time.monotonic()
    warmup = max(1, requests // 5)
    after_warmup: dict[str, int] = {}
    done = 0
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        nonlocal done
        async with gate:
            outcomes[await _request(port, random.Random(rng.random()))] += 1
            done += 1
            if done == warmup:
                after_warmup.update(_proc_state(pid))

    async def sample() -> None:
        while True:
            curve.append((round(time.monotonic() - started, 1), _proc_state(pid)["rss"]))
            await asyncio.sleep(1.0)

    sampler = asyncio.ensure_future(sample())
    tasks: set[asyncio.Task[None]] = set()
    sent = 0
    while (duration is None and sent < requests) or (
        duration is not None and time.monotonic() - started < duration
    ):
        while len(tasks) >= concurrency * 2:
            finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            tasks -= finished
        tasks.add(asyncio.ensure_future(one()))
        sent += 1
    if tasks:
        await asyncio.wait(tasks)
    sampler.cancel()
    return {"outcomes": dict(outcomes), "sent": sent, "curve": curve,
            "after_warmup": after_warmup, "seconds": round(time.monotonic() - started, 1)}


def run_soak(*, requests: int = 1000, concurrency: int = 64, duration: float | None = None,
             model: Path | None = None, seed: int = 1) -> dict[str, Any]:
    """Run the soak and return the report (``ok`` tells whether every check passed)."""
    if model is None:
        from build_scripts.make_test_models import ensure_test_models

        model = ensure_test_models()["tiny-llama"]
    with tempfile.TemporaryDirectory() as tmp, gateway(model, concurrency, Path(tmp)) as (
        port, mport, pid
    ):
        report = asyncio.run(_drive(port, pid, requests, concurrency, duration, seed))
        deadline = time.monotonic() + 60
        gauges = _gauges(mport)
        while any(gauges.values()) and time.monotonic() < deadline:
            time.sleep(0.5)
            gauges = _gauges(mport)
        time.sleep(1.0)  # let closed sockets and finished threads go
        end = _proc_state(pid)
    base = report["after_warmup"] or end
    growth = (end["rss"] - base["rss"]) / base["rss"] * 100 if base else 0.0
    server_errors = sum(n for k, n in report["outcomes"].items() if k.startswith("http_5"))
    checks = {
        "no_5xx": server_errors == 0,
        "gauges_exported": all(v is not None for v in gauges.values()),
        "gauges_zero": not any(gauges.values()),
        "no_fd_leak": end["fds"] <= base["fds"] + 4,
        "no_thread_leak": end["threads"] <= base["threads"] + 2,
        "rss_growth_below_5_percent": growth < 5.0,
    }
    report.update(gauges=gauges, end=end, rss_growth_percent=round(growth, 2), checks=checks,
                  ok=all(checks.values()))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=None, help="seconds (overrides)")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run_soak(requests=args.requests, concurrency=args.concurrency,
                      duration=args.duration, model=args.model, seed=args.seed)
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps({k: v for k, v in report.items() if k != "curve"}, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
