"""Run every side-by-side benchmark (each in its own process) and print one summary table.

    python benchmarks/run_all.py [--only single_stream,batched] [--out results.json]
        [--native-dir DIR] [--threads N] [--lcp-venv DIR] [--setup-peers] [--skip SIDE]

Options after the ones above are passed to every benchmark unchanged. A benchmark that
crashes is reported with its error; nothing here fails on a timing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("single_stream", "batched", "prefix_reuse", "embeddings")


def run_one(name: str, passthrough: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / f"bench_{name}.py"), "--json", *passthrough]
    c.log(f"=== {name}: {' '.join(cmd)}")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        return {"benchmark": name, "error": f"exited with {proc.returncode} (see stderr)"}
    try:
        data: dict[str, Any] = json.loads(proc.stdout)
    except ValueError as exc:
        return {"benchmark": name, "error": f"no JSON report: {exc}"}
    return data


def summary(results: list[dict[str, Any]]) -> str:
    head = ("benchmark", "metric", "Sipp", "peer", "peer value", "ratio", "target", "met")
    lines: list[tuple[str, ...]] = [head]
    notes = []
    for res in results:
        if "error" in res:
            notes.append(f"{res['benchmark']}: {res['error']}")
            continue
        for row in res["rows"]:
            lines.append((
                res["benchmark"], f"{row['metric']} [{row['unit']}]", c.fmt(row["ours"]),
                row["peer_name"], c.fmt(row["peer"]), c.fmt(row["ratio"], 3),
                row["target"] or "", {True: "yes", False: "NO", None: "-"}[row["met"]],
            ))  # fmt: skip
        for side, why in res.get("skipped", {}).items():
            notes.append(f"{res['benchmark']}: skipped {side}: {why}")
        load = res["machine_before"].get("loadavg")
        notes.append(f"{res['benchmark']}: load average at start {c.fmt_load(load)}")
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["== summary =="]
    for i, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out + notes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    p.add_argument("--out", type=Path, help="write every report and the machine state here")
    p.add_argument("--setup-peers", action="store_true", help="build missing peers first")
    args, passthrough = p.parse_known_args(argv)
    names = BENCHMARKS if not args.only else tuple(args.only.split(","))
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"--only: unknown {', '.join(unknown)}; expected some of {', '.join(BENCHMARKS)}")
    if args.setup_peers:  # once, before the benchmarks, so each does not repeat it
        ns = c.base_parser("").parse_args([*passthrough, "--setup-peers"])
        c.prepare(ns)
    results = [run_one(name, passthrough) for name in names]
    text = summary(results)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"results": results}, indent=2) + "\n")
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
