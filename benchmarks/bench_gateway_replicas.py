"""A front gateway over two replicas (``type = "gateway"`` deployments) versus one replica
alone, and versus LiteLLM's router with Redis, against the same mock upstream.

Processes, all on loopback: the mock OpenAI upstream (:mod:`benchmarks._mock_upstream`);
replicas A and B (``sipp-gateway serve``, one ``openai`` target each on the upstream); the
front gateway (one routed target, ``strategy = "least_busy"``, deployments A and B over the
Sipp profile); and, when ``--litellm-venv`` holds LiteLLM, its proxy with two deployments
of the model on the upstream, ``routing_strategy: least-busy`` and a ``redis-server``
(started here on a free port) as its router state. Every side is called the same way:
``POST /v1/chat/completions`` with a bearer token.

- added latency at concurrency 1 (finite and 8-chunk stream): p50/p99 of each side minus
  p50/p99 of the direct round trip to the upstream; ``front`` minus ``replica`` is what
  the extra hop costs;
- requests/s at a saturating concurrency (``wrk -t1`` when installed, else the Python load
  generator of :mod:`benchmarks.bench_gateway_provider`), one side at a time.

The CPU is shared (each gateway is one process, one worker); defaults are short.

    python benchmarks/bench_gateway_replicas.py [--json] [--skip-litellm]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Report, Row, fmt, free_port, log, machine_state, percentile
from benchmarks.bench_gateway_provider import (
    MODEL,
    TOKEN,
    UPSTREAM_KEY,
    UPSTREAM_MODEL,
    Target,
    _body,
    _wait_http,
    gateway_toml,
    group_cpu_seconds,
    process,
    run_client,
    run_wrk,
)

HERE = Path(__file__).resolve().parent


def front_toml(port: int, mport: int, replicas: Sequence[tuple[int, int]]) -> str:
    """The front gateway: one routed target over the replicas' ``mock`` targets."""
    head = gateway_toml(port, mport, 0).split("[[targets]]")[0]
    deployments = "".join(f"""
[[targets.deployments]]
name = "replica-{chr(ord('a') + i)}"
type = "gateway"
base_url = "http://127.0.0.1:{public}"
target = "{MODEL}"
token_env = "BENCH_TOKEN"
readiness_url = "http://127.0.0.1:{management}/readyz"
""" for i, (public, management) in enumerate(replicas))
    return head + f"""
[[targets]]
name = "{MODEL}"
strategy = "least_busy"
retries = 1
{deployments}"""


def litellm_yaml(upstream_port: int, redis_port: int) -> str:
    deployment = f"""  - model_name: {MODEL}
    litellm_params:
      model: openai/{UPSTREAM_MODEL}
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: {UPSTREAM_KEY}
"""
    return f"""
model_list:
{deployment}{deployment}
router_settings:
  routing_strategy: least-busy
  redis_host: 127.0.0.1
  redis_port: {redis_port}
litellm_settings:
  telemetry: false
  drop_params: true
  set_verbose: false
  json_logs: false
general_settings:
  master_key: {TOKEN}
"""


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--litellm-venv", default=os.environ.get("SIPP_BENCH_LITELLM_VENV",
                                                             "/tmp/litellm-venv"))
    p.add_argument("--rounds", type=int, default=3, help="latency rounds (default 3)")
    p.add_argument("--per-round", type=int, default=100,
                   help="requests per side per round (default 100)")
    p.add_argument("--concurrency", type=int, default=32,
                   help="throughput concurrency (default 32)")
    p.add_argument("--duration", type=float, default=4.0, help="seconds per throughput run")
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--skip-litellm", action="store_true")
    p.add_argument("--json", action="store_true", help="print only the JSON report")
    p.add_argument("--out", type=Path, help="also write the JSON report to this file")
    args = p.parse_args(argv)

    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk"))
    litellm_bin = Path(args.litellm_venv) / "bin" / "litellm"
    report = Report("front gateway + two replicas vs one replica vs LiteLLM router + Redis",
                    {"rounds": args.rounds, "per_round": args.per_round,
                     "concurrency": args.concurrency, "duration_s": args.duration,
                     "loadgen": "wrk -t1" if use_wrk else "python (uvloop, keep-alive)",
                     "strategy": "least_busy (ours), least-busy (LiteLLM)"})
    tmp = Path(tempfile.mkdtemp(prefix="sipp-bench-replicas-"))
    up_port = free_port()
    replicas = [(free_port(), free_port()) for _ in range(2)]
    front_port, front_mport = free_port(), free_port()
    env = dict(os.environ, BENCH_ADMIN_PW="pw", BENCH_TOKEN=TOKEN,
               BENCH_UPSTREAM_KEY=UPSTREAM_KEY, SIPP_GATEWAY_LOG="warn",
               PYTHONPATH=str(HERE.parent))
    auth = (("Authorization", f"Bearer {TOKEN}"),)
    pids: dict[str, list[int]] = {}
    with contextlib.ExitStack() as stack:
        log(f"mock upstream on :{up_port}")
        up = stack.enter_context(process(
            [sys.executable, str(HERE / "_mock_upstream.py"), "--port", str(up_port)], env,
            tmp / "upstream.log"))
        _wait_http(up_port, "/v1/models", up, 30)
        replica_pids = []
        for index, (port, mport) in enumerate(replicas):
            config = tmp / f"replica-{index}.toml"
            config.write_text(gateway_toml(port, mport, up_port))
            log(f"replica {index} on :{port}")
            proc = stack.enter_context(process(
                [sys.executable, "-m", "sipp.gateway.server.cli", "serve", "--config",
                 str(config)], env, tmp / f"replica-{index}.log"))
            _wait_http(mport, "/readyz", proc, 60)
            replica_pids.append(proc.pid)
        (tmp / "front.toml").write_text(front_toml(front_port, front_mport, replicas))
        log(f"front gateway on :{front_port}")
        front = stack.enter_context(process(
            [sys.executable, "-m", "sipp.gateway.server.cli", "serve", "--config",
             str(tmp / "front.toml")], env, tmp / "front.log"))
        _wait_http(front_mport, "/readyz", front, 60)
        sides = {"direct": (up_port, ()), "replica": (replicas[0][0], auth),
                 "front": (front_port, auth)}
        pids = {"direct": [up.pid], "replica": [replica_pids[0]],
                "front": [front.pid, *replica_pids]}
        if args.skip_litellm:
            report.skipped["litellm"] = "--skip-litellm"
        elif not litellm_bin.is_file():
            report.skipped["litellm"] = f"{litellm_bin} not found (see --litellm-venv)"
        elif not shutil.which("redis-server"):
            report.skipped["litellm"] = "redis-server not installed"
        else:
            redis_port, ll_port = free_port(), free_port()
            log(f"redis-server on :{redis_port}")
            redis = stack.enter_context(process(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no"], env, tmp / "redis.log"))
            (tmp / "litellm.yaml").write_text(litellm_yaml(up_port, redis_port))
            log(f"LiteLLM proxy on :{ll_port} (one worker, two deployments, Redis router)")
            ll_env = {k: v for k, v in env.items() if k != "DATABASE_URL"}
            ll_env.update(LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR",
                          DISABLE_SCHEMA_UPDATE="true", LITELLM_LOCAL_MODEL_COST_MAP="True")
            ll = stack.enter_context(process(
                [str(litellm_bin), "--config", str(tmp / "litellm.yaml"), "--host",
                 "127.0.0.1", "--port", str(ll_port), "--num_workers", "1"], ll_env,
                tmp / "litellm.log"))
            _wait_http(ll_port, "/health/liveliness", ll, 240)
            sides["litellm"] = (ll_port, auth)
            pids["litellm"] = [ll.pid, redis.pid]

        # ---- added latency at concurrency 1
        for stream in (False, True):
            label = "stream8" if stream else "finite"
            targets = [Target(name, port, "/v1/chat/completions", headers,
                              _body(stream, UPSTREAM_MODEL if name == "direct" else MODEL))
                       for name, (port, headers) in sides.items()]
            log(f"latency, {label}: {args.rounds} rounds x {args.per_round} per side")
            samples = run_client({"mode": "latency", "stream": stream, "warmup": 30,
                                  "rounds": args.rounds, "per_round": args.per_round,
                                  "targets": [t.as_dict() for t in targets]})
            figures: dict[str, Any] = {}
            for name, values in samples.items():
                figures[name] = {"p50_ms": percentile(values, 0.5) * 1e3,
                                 "p99_ms": percentile(values, 0.99) * 1e3, "n": len(values)}
            for name in sides:
                if name != "direct":
                    for q in ("p50", "p99"):
                        figures[name][f"added_{q}_ms"] = (figures[name][f"{q}_ms"]
                                                          - figures["direct"][f"{q}_ms"])
            report.figures[f"latency_{label}"] = figures
            peer = figures.get("litellm", {})
            for q in ("p50", "p99"):
                report.rows.append(Row(
                    f"front+2 replicas added {label} {q}", "ms",
                    figures["front"][f"added_{q}_ms"], peer.get(f"added_{q}_ms"),
                    "LiteLLM router+Redis",
                    note=(f"one replica alone {fmt(figures['replica'][f'added_{q}_ms'])} ms; "
                          f"direct {fmt(figures['direct'][f'{q}_ms'])} ms")))

        # ---- throughput, one side at a time
        rps: dict[str, dict[str, Any]] = {}
        for name in [n for n in sides if n != "direct"]:
            port, headers = sides[name]
            target = Target(name, port, "/v1/chat/completions", headers, _body(False, MODEL))
            log(f"throughput {name}, concurrency {args.concurrency}, {args.duration:g} s")
            cpu0 = sum(group_cpu_seconds(pid) for pid in pids[name])
            if use_wrk:
                result = run_wrk(target, args.concurrency, args.duration, tmp)
            else:
                result = run_client({"mode": "throughput", "stream": False,
                                     "concurrency": args.concurrency,
                                     "duration": args.duration,
                                     "targets": [target.as_dict()]})
            cpu = sum(group_cpu_seconds(pid) for pid in pids[name]) - cpu0
            served = result.get("requests") or 0
            result["proxy_cpu_s"] = cpu
            result["requests_per_proxy_cpu_second"] = served / cpu if cpu else None
            result["loadavg"] = os.getloadavg()[0]
            rps[name] = result
        report.figures["throughput"] = rps
        served_by = _served_by(front_mport)
        report.figures["front_deployment_split"] = served_by
        report.rows.append(Row("requests/s, front+2 replicas", "req/s", rps["front"]["rps"],
                               rps.get("litellm", {}).get("rps"), "LiteLLM router+Redis",
                               note=f"one replica alone {fmt(rps['replica']['rps'])} req/s"))
        report.rows.append(Row(
            "requests per CPU-second (all proxy processes)", "req/cpu-s",
            rps["front"]["requests_per_proxy_cpu_second"],
            rps.get("litellm", {}).get("requests_per_proxy_cpu_second"),
            "LiteLLM router+Redis",
            note=("one replica alone "
                  f"{fmt(rps['replica']['requests_per_proxy_cpu_second'])}; independent "
                  "of CPU contention")))

    report.machine_after = machine_state()
    if not args.json:
        print(report.table())
    print(json.dumps(report.as_dict(), indent=None if args.json else 2, default=str))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
    return 0


def _served_by(management_port: int) -> dict[str, int]:
    """How many runs each deployment of the front served (its Prometheus series)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{management_port}/metrics",
                                timeout=10) as response:
        text = response.read().decode()
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("sipp_gateway_deployment_served_total{"):
            name = line.split('deployment="', 1)[1].split('"', 1)[0]
            out[name] = int(float(line.rsplit(" ", 1)[1]))
    return out


if __name__ == "__main__":
    sys.exit(main())
