"""sipppy and its backend packages carry one version, and sipppy pins its backends to it."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("cpu", "cuda", "vulkan", "metal")


def _pyproject(path: Path) -> dict:  # type: ignore[type-arg]
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _assigned_string(path: Path, name: str) -> str:
    """The string literal assigned to ``name`` at module level (read without importing)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            assert isinstance(node.value, ast.Constant), f"{path}: {name} is not a literal"
            return str(node.value.value)
    raise AssertionError(f"{path} assigns no {name}")


def _version() -> str:
    return str(_pyproject(ROOT / "pyproject.toml")["project"]["version"])


def test_every_version_string_is_the_sipppy_version() -> None:
    version = _version()
    found = {
        "sipp/_version.py": _assigned_string(ROOT / "sipp" / "_version.py", "__version__"),
        "build_scripts/build_native.py PACKAGE_VERSION": _assigned_string(
            ROOT / "build_scripts" / "build_native.py", "PACKAGE_VERSION"
        ),
    }
    for backend in BACKENDS:
        folder = ROOT / f"sipp_backend_{backend}"
        found[f"{folder.name}/pyproject.toml"] = _pyproject(folder / "pyproject.toml")["project"][
            "version"
        ]
        found[f"{folder.name}/__init__.py"] = _assigned_string(
            folder / folder.name / "__init__.py", "__version__"
        )
    wrong = {where: v for where, v in found.items() if v != version}
    assert not wrong, f"sipppy is {version}; these disagree: {wrong}"


def test_sipppy_pins_every_backend_to_its_own_version() -> None:
    project = _pyproject(ROOT / "pyproject.toml")["project"]
    version = project["version"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    pins = {
        m.group(1): m.group(2)
        for req in requirements
        if (m := re.fullmatch(r"sipppy-backend-(\w+)==(\S+)", req.strip()))
    }
    assert pins.get("cpu") == version, "sipppy must depend on sipppy-backend-cpu==<its version>"
    for extra in ("cuda", "vulkan", "metal"):
        assert f"sipppy-backend-{extra}=={version}" in project["optional-dependencies"][extra]
    assert set(pins) == set(BACKENDS)


def test_each_backend_registers_its_entry_point() -> None:
    for backend in BACKENDS:
        project = _pyproject(ROOT / f"sipp_backend_{backend}" / "pyproject.toml")["project"]
        assert project["name"] == f"sipppy-backend-{backend}"
        assert project["entry-points"]["sipp.backends"] == {backend: f"sipp_backend_{backend}"}


def test_set_version_moves_every_version_string_together(tmp_path: Path) -> None:
    import shutil
    import subprocess

    files = ["pyproject.toml", "sipp/_version.py", "build_scripts/build_native.py"]
    files += [f"sipp_backend_{b}/pyproject.toml" for b in BACKENDS]
    files += [f"sipp_backend_{b}/sipp_backend_{b}/__init__.py" for b in BACKENDS]
    for rel in [*files, "scripts/set_version.py"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tmp_path / rel)
    script = tmp_path / "scripts" / "set_version.py"
    done = subprocess.run([sys.executable, str(script), "7.8.9"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    changed = {rel: (tmp_path / rel).read_text() for rel in files}
    for rel, text in changed.items():
        assert "7.8.9" in text, rel
        assert _version() not in re.findall(r'"(\d+\.\d+\.\d+)"', text), rel
    pins = re.findall(r'"sipppy-backend-\w+==([^"]+)"', changed["pyproject.toml"])
    assert pins == ["7.8.9"] * len(BACKENDS)
    bad = subprocess.run([sys.executable, str(script), "next"], capture_output=True, text=True)
    assert bad.returncode != 0 and "version must look like 1.2.3" in bad.stderr
