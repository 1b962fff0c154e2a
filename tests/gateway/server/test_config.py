"""`check` validation: a table of bad configs → field path and message."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from sipp.errors import ConfigurationError
from sipp.gateway.server.cli import main
from sipp.gateway.server.config import GatewayConfigError, LocalTarget, parse_config
from sipp.gateway.server.secrets import read_secrets
from tests.gateway.server.conftest import BASE_CONFIG, ENV

GOOD_TOML = """
public_bind = "127.0.0.1:8080"
management_bind = "127.0.0.1:9090"
max_request_bytes = 1048576
max_concurrent_requests = 4
allowed_origins = []
admin_password_env = "SIPP_GATEWAY_ADMIN_PASSWORD"

[security.client_ip]
source = "peer"
trusted_proxy_cidrs = []

[security.rate_limit]
enabled = false
requests_per_minute = 60
burst = 60

[routes]
query = "/v1/query"
chat = "/v1/chat"
embed = "/v1/embed"
index = "/"
health = "/healthz"
readiness = "/readyz"
metrics = "/metrics"
admin = "/admin"

[[tokens]]
env = "SIPP_GATEWAY_TOKEN"
caller = "production-client"
targets = ["local"]

[[targets]]
name = "local"
type = "local"
model = "models/model.gguf"
backend = "auto"
stats = "basic"
runtime = { context = { n_ctx = 2048 } }
"""


def _set(cfg: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node: Any = cfg
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is _DEL:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


_DEL = object()

BAD = [
    ("public_bind", "nohost", "public_bind", "must be 'host:port'"),
    ("public_bind", "127.0.0.1:70000", "public_bind", "must be 'host:port'"),
    ("management_bind", "127.0.0.1:0", None, None),  # both port 0 are fine (ephemeral)
    ("max_request_bytes", 0, "max_request_bytes", "must be greater than zero"),
    ("max_request_bytes", "1MB", "max_request_bytes", "must be an integer"),
    ("max_concurrent_requests", 0, "max_concurrent_requests", "must be greater than zero"),
    ("allowed_origins", ["https://a.example/path"], "allowed_origins[0]", "must be an origin"),
    ("admin_password_env", _DEL, "admin_password_env", "is required"),
    ("admin_password_env", "", "admin_password_env", "non-empty trimmed string"),
    ("admin_password_env", "BAD-NAME", "admin_password_env", "environment variable name"),
    ("security", _DEL, "security", "is required"),
    ("security.client_ip", _DEL, "security.client_ip", "is required"),
    ("security.client_ip.source", "forwarded", "security.client_ip.source", "must be one of"),
    ("security.client_ip.trusted_proxy_cidrs", _DEL, "security.client_ip.trusted_proxy_cidrs",
     "is required"),
    ("security.client_ip.trusted_proxy_cidrs", ["10.0.0.1"],
     "security.client_ip.trusted_proxy_cidrs[0]", "must include a prefix"),
    ("security.client_ip.trusted_proxy_cidrs", ["10.0.0.0/33"],
     "security.client_ip.trusted_proxy_cidrs[0]", "invalid trusted proxy CIDR"),
    ("security.rate_limit.requests_per_minute", 0, "security.rate_limit.requests_per_minute",
     "greater than zero"),
    ("security.rate_limit.burst", 0, "security.rate_limit.burst", "greater than zero"),
    ("security.rate_limit.enabled", "yes", "security.rate_limit.enabled", "true or false"),
    ("security.extra", 1, "security.extra", "unknown field"),
    ("surprise", 1, "surprise", "unknown field"),
    ("routes", {"query": "v1/query"}, "routes.query", "absolute path"),
    ("routes", {"chat": "/v1/chat?x=1"}, "routes.chat", "absolute path"),
    ("routes", {"chat": "/v1/query"}, "routes.chat", "chat route duplicates query route"),
    ("routes", {"metrics": "/healthz"}, "routes.metrics", "duplicates health route"),
    ("routes", {"query": False}, "routes.query", "absolute path"),
    ("routes", {"openai": "/v1", "chat": "/v1/chat/completions"}, "routes.chat", "collides"),
    ("tokens", [], "tokens", "at least one bearer token"),
    ("tokens.0.env", "1BAD", "tokens[0].env", "environment variable name"),
    ("tokens.1.caller", "all", "tokens[1].caller", "duplicate token caller: all"),
    ("tokens.1.targets", ["zeta"], "tokens[1].targets[0]", "unknown target: zeta"),
    ("tokens.0.secret", "x", "tokens[0].secret", "unknown field"),
    ("targets", [], "targets", "at least one target"),
    ("targets.1.name", "alpha", "targets[1].name", "duplicate target: alpha"),
    ("targets.0.type", "ollama", "targets[0].type", "one of: local, openai"),
    ("targets.0.model", " m ", "targets[0].model", "non-empty trimmed string"),
    ("targets.0.base_url", "ftp://x", "targets[0].base_url", "absolute HTTP(S) URL"),
    # serve refuses plain http to a non-loopback host; check must say so too
    ("targets.0.base_url", "http://api.example.com/v1", "targets[0].base_url",
     "must use https unless the host is loopback"),
    ("targets.1.base_url", "http://localhost:8000/v1", None, None),
    ("targets.0.base_url", "https://u:p@api.example.com/v1", "targets[0].base_url",
     "must not contain user credentials"),
    ("targets.0.base_url", "https://api.example.com:99999/v1", "targets[0].base_url",
     "invalid port"),
    ("targets.0.timeout_seconds", 0, "targets[0].timeout_seconds", "greater than zero"),
    ("targets.0.version", "2023-06-01", "targets[0].version", "unknown field"),
    ("targets.1.api_key_env", _DEL, "targets[1].api_key_env", "is required"),
    ("targets.0", {"name": "l", "type": "local", "model": ""}, "targets[0].model",
     "non-empty trimmed string"),
    ("targets.0", {"name": "l", "type": "local", "model": "m.gguf", "backend": "rocm"},
     "targets[0].backend", "must be one of: auto, cpu, cuda, metal, vulkan"),
    ("targets.0", {"name": "l", "type": "local", "model": "m.gguf", "stats": "all"},
     "targets[0].stats", "must be one of: off, basic, profile"),
    ("targets.0", {"name": "l", "type": "local", "model": "m.gguf",
                   "runtime": {"context": {"n_ctxx": 1}}}, "targets[0].runtime", "n_ctxx"),
    ("targets.0", {"name": "l", "type": "local", "model": "m.gguf",
                   "runtime": {"scheduler": {"deterministic": "yes"}}}, "targets[0].runtime",
     "deterministic"),
    ("targets.0", {"name": "c", "type": "openai_compatible", "model": "m",
                   "token_env": "KEY_A"}, "targets[0].base_url", "is required"),
    ("targets.0", {"name": "c", "type": "openai_compatible", "model": "m", "token_env": "KEY_A",
                   "base_url": "https://x.example/v1", "correlation_header": "bad header"},
     "targets[0].correlation_header", "HTTP header name"),
    ("targets.0", {"name": "c", "type": "openai_compatible", "model": "m", "token_env": "KEY_A",
                   "base_url": "http://10.0.0.5:8000/v1"},
     "targets[0].base_url", "must use https unless the host is loopback"),
    ("targets.0", {"name": "c", "type": "openai_compatible", "model": "m", "token_env": "KEY_A",
                   "base_url": "https://x.example/v1", "correlation_header": "Authorization"},
     "targets[0].correlation_header", "must not replace the authorization header"),
]


@pytest.mark.parametrize(("path", "value", "field", "message"), BAD,
                         ids=[f"{row[0]}={row[1]!r}"[:60] for row in BAD])
def test_bad_configs_name_the_field(path: str, value: Any, field: str | None,
                                    message: str | None) -> None:
    cfg = copy.deepcopy(BASE_CONFIG)
    _set(cfg, path, value)
    if field is None:
        parse_config(cfg)
        return
    with pytest.raises(GatewayConfigError) as info:
        parse_config(cfg)
    found = {issue.path: issue.message for issue in info.value.issues}
    assert field in found, found
    assert message is not None and message in found[field], found


@pytest.mark.parametrize("url", ["http://api.example.com/v1", "http://10.1.2.3/v1",
                                 "https://u:p@api.example.com", "https://x.example/v1?a=1"])
def test_check_refuses_what_serve_refuses(url: str) -> None:
    """``check`` and ``serve`` (which builds the target's ProviderDescriptor) agree."""
    from sipp.gateway.server.config import OpenAITarget
    from sipp.gateway.server.targets import descriptor_for

    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["targets"][0]["base_url"] = url
    with pytest.raises(GatewayConfigError) as info:
        parse_config(cfg)
    issue = {i.path: i.message for i in info.value.issues}["targets[0].base_url"]
    target = OpenAITarget("alpha", "m-a", "KEY_A", url, None)
    with pytest.raises(ConfigurationError) as served:
        descriptor_for(target, "sk-a")
    assert served.value.message == f"base_url {issue}"


def test_all_problems_are_reported_at_once() -> None:
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["max_request_bytes"] = 0
    cfg["tokens"][0]["env"] = "bad-name"
    cfg["targets"][1]["name"] = "alpha"
    with pytest.raises(GatewayConfigError) as info:
        parse_config(cfg)
    assert [i.path for i in info.value.issues] == [
        "max_request_bytes", "tokens[0].env", "targets[1].name"]


def test_same_binds_are_refused() -> None:
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["public_bind"] = cfg["management_bind"] = "127.0.0.1:8080"
    with pytest.raises(GatewayConfigError, match="must be different"):
        parse_config(cfg)


def test_spec_example_parses_with_defaults(tmp_path: Path) -> None:
    file = tmp_path / "gw.toml"
    file.write_text(GOOD_TOML)
    assert main(["check", "--config", str(file)]) == 0
    from sipp.gateway.server.config import load_config

    config = load_config(file)
    target = config.targets[0]
    assert isinstance(target, LocalTarget)
    assert (target.backend, target.stats, target.model) == ("auto", "basic", "models/model.gguf")
    assert config.routes.openai == "/v1" and config.max_concurrent_requests == 4


def test_check_cli_reports_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "gw.toml"
    file.write_text(GOOD_TOML.replace("burst = 60", "burst = 0"))
    assert main(["check", "--config", str(file)]) == 2
    assert "security.rate_limit.burst: must be greater than zero" in capsys.readouterr().err
    file.write_text("public_bind = ")
    assert main(["check", "--config", str(file)]) == 2
    assert "invalid TOML" in capsys.readouterr().err
    assert main(["check", "--config", str(tmp_path / "missing.toml")]) == 2


def test_check_reads_no_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIPP_GATEWAY_TOKEN", raising=False)
    file = tmp_path / "gw.toml"
    file.write_text(GOOD_TOML)
    assert main(["check", "--config", str(file)]) == 0


@pytest.mark.parametrize(("env", "message"), [
    ({k: v for k, v in ENV.items() if k != "TOKEN_ALL"}, "TOKEN_ALL is required"),
    ({**ENV, "ADMIN_PW": "  "}, "ADMIN_PW must not be empty"),
    ({**ENV, "TOKEN_LIMITED": "a b"}, "TOKEN_LIMITED must not contain whitespace"),
    ({**ENV, "KEY_B": ""}, "KEY_B must not be empty"),
])
def test_serve_secrets_are_checked(env: dict[str, str], message: str) -> None:
    config = parse_config(BASE_CONFIG)
    with pytest.raises(ConfigurationError, match=message) as info:
        read_secrets(config, env)
    for value in ENV.values():
        assert value not in info.value.message


def test_serve_cli_refuses_missing_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    file = tmp_path / "gw.toml"
    file.write_text(GOOD_TOML)
    monkeypatch.delenv("SIPP_GATEWAY_ADMIN_PASSWORD", raising=False)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        assert main(["serve", "--config", str(file)]) == 2
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    assert "SIPP_GATEWAY_ADMIN_PASSWORD is required" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["provider-only.toml.example", "local.toml.example"])
def test_shipped_examples_pass_check(name: str) -> None:
    path = Path(__file__).resolve().parents[3] / "config" / name
    assert main(["check", "--config", str(path)]) == 0


@pytest.mark.parametrize(("field", "value"), [("n_threads", 65536), ("n_threads_batch", 100000)])
def test_check_refuses_thread_counts_that_crash_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: int
) -> None:
    # 65536 threads passed `check` and segfaulted the gateway at its first decode (red-team)
    file = tmp_path / "gw.toml"
    file.write_text(GOOD_TOML.replace("{ n_ctx = 2048 }", f"{{ n_ctx = 2048, {field} = {value} }}"))
    assert main(["check", "--config", str(file)]) == 2
    assert f"must be at most 512, got {value}" in capsys.readouterr().err
