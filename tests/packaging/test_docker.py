"""Dockerfile and Compose files: profiles, healthchecks on readyz, mounts and build args."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROFILES = {"cpu": "gateway-cpu", "cuda": "gateway-cuda", "vulkan-linux": "gateway-vulkan-linux"}
CONFIG_IN_CONTAINER = "/etc/sipp/gateway.toml"


def _compose(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return data


def _probes_readyz(healthcheck: dict[str, Any]) -> bool:
    return "http://127.0.0.1:9090/readyz" in " ".join(healthcheck["test"])


def test_compose_has_one_service_per_profile_with_a_readyz_healthcheck() -> None:
    services = _compose("compose.yaml")["services"]
    assert {s["profiles"][0]: name for name, s in services.items()} == PROFILES
    for name, service in services.items():
        assert _probes_readyz(service["healthcheck"]), name
        assert service["healthcheck"]["test"][0] == "CMD"
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert mounts[CONFIG_IN_CONTAINER] == "./config/docker.toml"
        assert mounts["/models"] == "./models"
        assert service["build"]["dockerfile"] == "Dockerfile"
        # Local templates publish on loopback only.
        assert all(p.startswith("127.0.0.1:") for p in service["ports"]), service["ports"]


def test_gpu_profiles_reach_their_devices() -> None:
    services = _compose("compose.yaml")["services"]
    cuda = services["gateway-cuda"]
    assert cuda["build"]["args"]["SIPP_GATEWAY_BACKEND"] == "cuda"
    assert cuda["build"]["args"]["SIPP_CUDA_ARCHITECTURES"] == "${SIPP_CUDA_ARCHITECTURES:-}"
    devices = cuda["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    vulkan = services["gateway-vulkan-linux"]
    assert vulkan["build"]["args"]["SIPP_GATEWAY_BACKEND"] == "vulkan"
    assert "/dev/dri:/dev/dri" in vulkan["devices"]
    assert services["gateway-cpu"]["build"]["args"]["SIPP_GATEWAY_BACKEND"] == "cpu"


@pytest.mark.parametrize(("file", "config"), [
    ("production.yml.example", "./config/production.toml"),
    ("production-provider-only.yml.example", "./config/docker-provider-only.toml"),
])
def test_production_templates_run_a_prebuilt_image(file: str, config: str) -> None:
    (service,) = _compose(file)["services"].values()
    assert "build" not in service and service["image"].startswith("${SIPP_GATEWAY_IMAGE:-")
    assert _probes_readyz(service["healthcheck"])
    assert service["restart"] == "unless-stopped"
    assert sorted(service["ports"]) == ["127.0.0.1:9090:9090", "8080:8080"]  # public exposed,
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}  # management not
    assert mounts[CONFIG_IN_CONTAINER] == config
    assert ("/models" in mounts) == (file == "production.yml.example")
    assert (ROOT / config.removeprefix("./")).with_suffix(".toml.example").is_file()


def test_provider_only_compose_mounts_no_models() -> None:
    (service,) = _compose("compose.provider-only.yaml")["services"].values()
    assert _probes_readyz(service["healthcheck"])
    targets = [v.split(":")[1] for v in service["volumes"]]
    assert targets == [CONFIG_IN_CONTAINER]
    assert service["volumes"][0].startswith("./config/docker-provider-only.toml:")


def test_dockerfile_is_multi_stage_and_serves_the_mounted_config() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.MULTILINE)
    assert stages == ["builder", "runtime"]
    assert re.search(r'^ENTRYPOINT \["sipp-gateway"\]', text, re.MULTILINE)
    assert f'CMD ["serve", "--config", "{CONFIG_IN_CONTAINER}"]' in text
    healthcheck = text[text.index("HEALTHCHECK") :]
    assert "http://127.0.0.1:9090/readyz" in healthcheck.split("\n\n")[0]
    assert "SIPP_BUILD_MODE=release" in text
    for arg in ("SIPP_GATEWAY_BACKEND", "SIPP_CUDA_ARCHITECTURES", "SIPP_GATEWAY_BUILDER_IMAGE"):
        assert f"ARG {arg}" in text


def test_docker_context_leaves_out_secrets_and_local_builds() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".git", "models"} <= ignored
    assert "sipp_backend_*/sipp_backend_*/lib" in ignored


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the docker compose client is not installed",
)
@pytest.mark.parametrize(
    ("file", "profile"),
    [("compose.yaml", p) for p in PROFILES] + [("compose.provider-only.yaml", None)],
)
def test_docker_compose_config_accepts_the_file(file: str, profile: str | None) -> None:
    cmd = ["docker", "compose", "-f", str(ROOT / file)]
    cmd += ["--profile", profile] if profile else []
    out = subprocess.run([*cmd, "config", "--services"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    expected = PROFILES[profile] if profile else "gateway"
    assert out.stdout.split() == [expected]
