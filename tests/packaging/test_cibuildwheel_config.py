"""The cibuildwheel configuration and the wheels workflow cover every backend and platform."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def _cibw(backend: str) -> dict[str, Any]:
    with (ROOT / f"sipp_backend_{backend}" / "pyproject.toml").open("rb") as handle:
        table: dict[str, Any] = tomllib.load(handle)["tool"]["cibuildwheel"]
    return table


def _workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / ".github/workflows/wheels.yml").read_text())
    return data


def test_every_backend_builds_release_wheels_and_checks_them() -> None:
    for backend in ("cpu", "cuda", "vulkan", "metal"):
        cibw = _cibw(backend)
        assert cibw["environment"]["SIPP_BUILD_MODE"] == "release", backend
        assert f"check_backend_install.py {backend}" in cibw["test-command"]
        for platform in ("linux", "macos", "windows"):
            section = cibw.get(platform, {})
            if "environment" in section:  # a platform table replaces the whole environment
                assert section["environment"]["SIPP_BUILD_MODE"] == "release", platform


def test_platforms_per_backend() -> None:
    cpu = _cibw("cpu")
    assert cpu["linux"]["archs"] == ["x86_64", "aarch64"]
    assert cpu["windows"]["archs"] == ["AMD64"] and "macos" in cpu
    assert "--load" in cpu["linux"]["test-command"]
    for gpu in ("cuda", "vulkan"):
        assert _cibw(gpu)["build"] == ["cp311-manylinux_x86_64", "cp311-win_amd64"]
    assert _cibw("metal")["build"] == "cp311-macosx_arm64"


def test_gpu_wheels_never_graft_driver_libraries() -> None:
    cuda = _cibw("cuda")
    for lib in ("libcuda.so.1", "libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13"):
        assert f"--exclude {lib}" in cuda["linux"]["repair-wheel-command"]
    assert "SIPP_CUDA_ARCHITECTURES" in cuda["environment-pass"]
    assert "--exclude libvulkan.so.1" in _cibw("vulkan")["linux"]["repair-wheel-command"]


def test_workflow_runs_cibuildwheel_for_every_backend_and_builds_sipppy() -> None:
    jobs = _workflow()["jobs"]
    package_dirs = {
        step["with"]["package-dir"]
        for job in jobs.values()
        for step in job["steps"]
        if str(step.get("uses", "")).startswith("pypa/cibuildwheel@")
    }
    assert package_dirs == {f"sipp_backend_{b}" for b in ("cpu", "cuda", "vulkan", "metal")}
    assert any("python -m build" in str(s.get("run", "")) for s in jobs["sipppy"]["steps"])
    assert set(jobs["publish"]["needs"]) >= {"sipppy", "cpu", "cuda", "vulkan", "metal"}
    assert jobs["cpu"]["strategy"]["matrix"]["os"] == [
        "ubuntu-latest",
        "ubuntu-24.04-arm",
        "macos-13",
        "macos-14",
        "windows-latest",
    ]
