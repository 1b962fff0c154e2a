"""Every shipped gateway TOML example passes ``sipp-gateway check`` and fits where it is used."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from sipp.gateway.server.cli import main as gateway_main

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "config").glob("*.toml.example"))
SHAPES = {"local", "provider-only", "hybrid", "docker", "docker-provider-only",
          "docker-scale-out", "development", "production"}


def _load(path: Path) -> dict:  # type: ignore[type-arg]
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _target_types(path: Path) -> set[str]:
    return {t["type"] for t in _load(path)["targets"]}


def test_every_shape_is_shipped() -> None:
    assert {p.name.removesuffix(".toml.example") for p in EXAMPLES} == SHAPES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_gateway_check(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gateway_main(["check", "--config", str(path)]) == 0
    assert "configuration is valid" in capsys.readouterr().out


def test_shapes_hold_the_targets_their_names_promise() -> None:
    config = ROOT / "config"
    assert _target_types(config / "local.toml.example") == {"local"}
    assert "local" not in _target_types(config / "provider-only.toml.example")
    assert "local" not in _target_types(config / "docker-provider-only.toml.example")
    hybrid = _target_types(config / "hybrid.toml.example")
    assert "local" in hybrid and len(hybrid) > 1


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_binds_and_model_paths_fit_host_or_container(path: Path) -> None:
    data = _load(path)
    container = path.name.startswith(("docker", "production"))
    host = "0.0.0.0" if container else "127.0.0.1"
    assert data["public_bind"] == f"{host}:8080"
    assert data["management_bind"] == f"{host}:9090"
    assert data["routes"]["readiness"] == "/readyz"  # what the Docker healthchecks probe
    for target in data["targets"]:
        if target["type"] == "local":
            assert target["model"].startswith("/models/") == container, target["model"]


def test_env_example_holds_exactly_the_secrets_the_examples_name() -> None:
    names: set[str] = set()
    for path in EXAMPLES:
        text = path.read_text()
        names |= set(re.findall(r'^\s*\w*env\s*=\s*"(\w+)"', text, re.MULTILINE))
    env = (ROOT / ".env.example").read_text()
    keys = {
        line.split("=", 1)[0]
        for line in env.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert keys == names
    assert all(re.search(r"(TOKEN|PASSWORD|KEY|URL)$", k) for k in keys), keys


def test_development_and_production_fit_their_jobs() -> None:
    dev = _load(ROOT / "config" / "development.toml.example")
    (local,) = dev["targets"]
    assert (ROOT / local["chat_template"]).is_file()  # run from the repository root
    prod = _load(ROOT / "config" / "production.toml.example")
    assert prod["security"]["rate_limit"]["enabled"] is True
    assert prod["max_concurrent_requests"] > 0 and prod["routes"]["index"] is False
