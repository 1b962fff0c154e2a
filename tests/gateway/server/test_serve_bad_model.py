"""``sipp-gateway serve`` with a GGUF libllama would abort on exits 1 with the reason (it
exited 134, SIGABRT, after a gdb backtrace fork)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from tests.native.gguf_mutate import U32, Kv, parse, serialize

REPO = Path(__file__).resolve().parents[3]
TOML = """public_bind = "127.0.0.1:0"
management_bind = "127.0.0.1:0"
admin_password_env = "PW"
[security.client_ip]
source = "peer"
trusted_proxy_cidrs = []
[security.rate_limit]
enabled = false
requests_per_minute = 60
burst = 60
[[tokens]]
env = "TOK"
caller = "c"
targets = []
[[targets]]
name = "bad"
type = "local"
model = "bad.gguf"
backend = "cpu"
stats = "off"
"""


def test_serve_refuses_an_aborting_gguf_with_exit_1(tmp_path: Path, tiny_llama_path: Path) -> None:
    g = parse(tiny_llama_path.read_bytes())
    kvs = [kv for kv in g.kvs if kv.key != "llama.block_count"]
    (tmp_path / "bad.gguf").write_bytes(
        serialize(replace(g, kvs=[*kvs, Kv("llama.block_count", U32, 0)]))
    )
    (tmp_path / "gw.toml").write_text(TOML)
    env = dict(os.environ, PW="pw", TOK="tok")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "sipp.gateway.server.cli", "serve", "--config", "gw.toml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "llama.block_count is 0, expected 1 to 512 layers" in proc.stdout + proc.stderr
