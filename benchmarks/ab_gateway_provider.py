"""Interleaved A/B of the gateway's added latency for a provider target, between source trees.

Each tree (``NAME=PATH``, e.g. a ``git worktree`` of another commit) gets its own mock
upstream (:mod:`benchmarks._mock_upstream`) and its own ``sipp-gateway`` process, run with
``PYTHONPATH=PATH``; one load generator process then alternates between them:

- latency at concurrency 1: each round sends ``--per-round`` requests to every tree's
  upstream directly and through its gateway, the trees' order rotating from round to round
  (so neither side always goes first); the added p50 is the gateway's p50 minus its
  upstream's, over all rounds and as the median of the per-round figures (steadier when
  another process comes and goes);
- with ``--cpu-requests N``: the gateway process's CPU time per request (user + system,
  all threads) over N sequential requests per tree and round, and the upstream
  connections it opened per request (the machine-wide TCP ``ActiveOpens`` counter: run it
  on an otherwise idle machine).

    git worktree add /tmp/before <commit>
    python benchmarks/ab_gateway_provider.py --trees before=/tmp/before,after=. --rounds 20
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import free_port, percentile
from benchmarks.bench_gateway_provider import (
    MODEL,
    TOKEN,
    UPSTREAM_KEY,
    UPSTREAM_MODEL,
    Target,
    _body,
    _wait_http,
    gateway_toml,
    process,
    run_client,
)

HERE = Path(__file__).resolve().parent


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _active_opens() -> int:
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
            if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("ActiveOpens")])


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def latency(sides: dict[str, tuple[int, int, int]], stream: bool, rounds: int,
            per_round: int) -> dict[str, Any]:
    """Added p50 per tree (ms): over all rounds and the median of the per-round figures."""
    auth = (("Authorization", f"Bearer {TOKEN}"),)
    names = list(sides)
    samples: dict[str, list[float]] = {}
    per_round_added: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        targets = []
        for name in order:
            upstream, gateway, _ = sides[name]
            targets.append(Target(f"direct-{name}", upstream, "/v1/chat/completions", (),
                                  _body(stream, UPSTREAM_MODEL)))
            targets.append(Target(name, gateway, "/v1/chat/completions", auth,
                                  _body(stream, MODEL)))
        got = run_client({"mode": "latency", "stream": stream, "warmup": 30, "rounds": 1,
                          "per_round": per_round, "targets": [t.as_dict() for t in targets]})
        for key, values in got.items():
            samples.setdefault(key, []).extend(values)
        for name in names:
            per_round_added[name].append(
                (percentile(got[name], 0.5) - percentile(got[f"direct-{name}"], 0.5)) * 1e3)
    out: dict[str, Any] = {}
    for name in names:
        direct = percentile(samples[f"direct-{name}"], 0.5) * 1e3
        via = percentile(samples[name], 0.5) * 1e3
        out[name] = {"direct_p50_ms": round(direct, 3), "gateway_p50_ms": round(via, 3),
                     "added_p50_ms": round(via - direct, 3),
                     "median_round_added_p50_ms": round(_median(per_round_added[name]), 3),
                     "added_p50_ms_rounds": [round(v, 3) for v in per_round_added[name]]}
    return out


def cpu(sides: dict[str, tuple[int, int, int]], stream: bool, rounds: int,
        requests: int) -> dict[str, Any]:
    """Gateway CPU ms per request and upstream connections opened per request."""
    body = _body(stream, MODEL)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    conns = {n: http.client.HTTPConnection("127.0.0.1", port) for n, (_, port, _) in
             sides.items()}

    def send(name: str, count: int) -> None:
        conn = conns[name]
        for _ in range(count):
            conn.request("POST", "/v1/chat/completions", body, headers)
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                raise RuntimeError(f"{name}: HTTP {response.status}: {data[:300]!r}")

    ms: dict[str, list[float]] = {n: [] for n in sides}
    opens: dict[str, list[float]] = {n: [] for n in sides}
    for name in sides:
        send(name, 100)
    for _ in range(rounds):
        for name, (_, _, pid) in sides.items():
            cpu0, open0 = _cpu_seconds(pid), _active_opens()
            send(name, requests)
            ms[name].append((_cpu_seconds(pid) - cpu0) * 1e3 / requests)
            opens[name].append((_active_opens() - open0) / requests)
    for conn in conns.values():
        conn.close()
    return {n: {"cpu_ms_per_request": round(_median(ms[n]), 3),
                "cpu_ms_per_request_rounds": [round(v, 3) for v in ms[n]],
                "upstream_connects_per_request": round(_median(opens[n]), 4)} for n in sides}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--trees", required=True,
                   help="NAME=PATH,NAME=PATH,...: source trees to compare")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--per-round", type=int, default=100)
    p.add_argument("--modes", default="finite,stream")
    p.add_argument("--cpu-requests", type=int, default=0,
                   help="also measure CPU per request over this many requests a round")
    p.add_argument("--cpu-rounds", type=int, default=4)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sipp-ab-gw-"))
    env0 = dict(os.environ, BENCH_ADMIN_PW="pw", BENCH_TOKEN=TOKEN,
                BENCH_UPSTREAM_KEY=UPSTREAM_KEY, SIPP_GATEWAY_LOG="warn")
    report: dict[str, Any] = {"trees": args.trees, "rounds": args.rounds,
                              "per_round": args.per_round, "load_before": os.getloadavg()}
    with contextlib.ExitStack() as stack:
        sides: dict[str, tuple[int, int, int]] = {}
        for spec in args.trees.split(","):
            name, tree = spec.split("=", 1)
            env = dict(env0, PYTHONPATH=str(Path(tree).resolve()))
            up_port, gw_port, gw_mport = free_port(), free_port(), free_port()
            up = stack.enter_context(process(
                [sys.executable, str(HERE / "_mock_upstream.py"), "--port", str(up_port)],
                env, tmp / f"upstream-{name}.log"))
            _wait_http(up_port, "/v1/models", up, 30)
            (tmp / f"{name}.toml").write_text(gateway_toml(gw_port, gw_mport, up_port))
            gw = stack.enter_context(process(
                [sys.executable, "-m", "sipp.gateway.server.cli", "serve", "--config",
                 str(tmp / f"{name}.toml")], env, tmp / f"gateway-{name}.log"))
            _wait_http(gw_mport, "/readyz", gw, 60)
            sides[name] = (up_port, gw_port, gw.pid)
        for mode in args.modes.split(","):
            stream = mode == "stream"
            report[f"latency_{mode}"] = latency(sides, stream, args.rounds, args.per_round)
            if args.cpu_requests:
                report[f"cpu_{mode}"] = cpu(sides, stream, args.cpu_rounds, args.cpu_requests)
    report["load_after"] = os.getloadavg()
    for key, value in report.items():
        if key.startswith(("latency_", "cpu_")):
            brief = {n: {k: v for k, v in f.items() if not k.endswith("_rounds")}
                     for n, f in value.items()}
            print(key, json.dumps(brief), file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
