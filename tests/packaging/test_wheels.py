"""Built wheels (``scripts/build_wheels.sh`` → ``dist/``, or ``SIPP_WHEEL_DIR``): tags,
payload, manifest, and one version across sipppy and its backends.

Building takes minutes, so every test skips when its wheel is not there.
"""

from __future__ import annotations

import json
import os
import re
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
WHEEL_DIR = Path(os.environ.get("SIPP_WHEEL_DIR") or ROOT / "dist")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
LIB_SUFFIX = {"linux": ".so", "macosx": ".dylib", "win": ".dll"}


def _wheel(distribution: str) -> Path:
    found = sorted(WHEEL_DIR.glob(f"{distribution.replace('-', '_')}-{VERSION}-*.whl"))
    if not found:
        pytest.skip(f"no {distribution} {VERSION} wheel in {WHEEL_DIR} (scripts/build_wheels.sh)")
    return max(found, key=lambda p: p.stat().st_mtime)


def _metadata(wheel: zipfile.ZipFile) -> tuple[str, list[str]]:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    message = Parser().parsestr(wheel.read(name).decode())
    return message["Version"], message.get_all("Requires-Dist") or []


def test_sipppy_wheel_is_pure_and_pins_its_backends() -> None:
    path = _wheel("sipppy")
    assert path.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        version, requires = _metadata(wheel)
    assert version == VERSION
    assert "sipp/__init__.py" in names
    assert not [n for n in names if n.startswith("sipp_backend_")]
    assert f"sipppy-backend-cpu=={VERSION}" in requires
    for extra in ("cuda", "vulkan", "metal"):
        assert f"sipppy-backend-{extra}=={VERSION}; extra == '{extra}'" in requires


@pytest.mark.parametrize("backend", ["cpu", "cuda", "vulkan", "metal"])
def test_backend_wheel_payload(backend: str) -> None:
    path = _wheel(f"sipppy-backend-{backend}")
    tag = re.fullmatch(rf"sipppy_backend_{backend}-[^-]+-py3-none-(\w+)\.whl", path.name)
    assert tag, f"{path.name}: expected a py3-none-<platform> tag"
    platform = tag.group(1)
    assert platform != "any"
    suffix = next(s for p, s in LIB_SUFFIX.items() if platform.startswith(p))
    package = f"sipp_backend_{backend}"
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        version, requires = _metadata(wheel)
        manifest = json.loads(wheel.read(f"{package}/_manifest.json"))
        entry_points = next(
            wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")
        )
    assert version == VERSION == manifest["package_version"]
    assert manifest["backend"] == backend
    assert f"[sipp.backends]\n{backend} = {package}" in entry_points
    lib = f"{package}/lib/"
    shipped = {n[len(lib) :] for n in names if n.startswith(lib)}
    assert set(manifest["libraries"]) <= shipped
    assert f"{'' if platform.startswith('win') else 'lib'}llama{suffix}" in shipped
    assert {f"{package}/include/llama.h", f"{package}/licenses/LICENSE-llama.cpp"} <= names
    if manifest["build"]["mode"] == "release":
        assert manifest["build"]["ggml_backend_dl"] is True
        variants = [n for n in shipped if re.match(r"(lib)?ggml-cpu-\w+", n)]
        assert len(variants) > 1, f"release build ships one CPU variant only: {variants}"
    if backend == "cuda":
        assert any(n.startswith(("libggml-cuda", "ggml-cuda")) for n in shipped)
        assert any(r.startswith("nvidia-cuda-runtime") for r in requires)
        assert any(r.startswith("nvidia-cublas") for r in requires)
