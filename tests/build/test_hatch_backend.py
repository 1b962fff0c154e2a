"""The backend packages' build hook settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from build_scripts import backend_options, hatch_backend

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_mode_defaults_to_native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIPP_BUILD_MODE", raising=False)
    assert hatch_backend.build_mode() == "native"
    monkeypatch.setenv("SIPP_BUILD_MODE", "release")
    assert hatch_backend.build_mode() == "release"


def test_bad_mode_or_jobs_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPP_BUILD_MODE", "debug")
    with pytest.raises(ValueError, match="SIPP_BUILD_MODE must be one of native, release"):
        hatch_backend.build_mode()
    monkeypatch.setenv("SIPP_BUILD_JOBS", "0")
    with pytest.raises(ValueError, match="SIPP_BUILD_JOBS must be a positive integer"):
        hatch_backend.build_jobs()


def test_wheels_are_platform_specific_but_python_independent() -> None:
    tag = hatch_backend.wheel_tag()
    assert re.fullmatch(r"py3-none-[a-z0-9_]+", tag)
    assert tag != "py3-none-any"


@pytest.mark.parametrize("backend", backend_options.BACKENDS)
def test_each_backend_package_registers_its_entry_point(backend: str) -> None:
    folder = REPO_ROOT / f"sipp_backend_{backend}"
    with (folder / "pyproject.toml").open("rb") as handle:
        project = backend_options.tomllib.load(handle)["project"]
    assert project["name"] == f"sipppy-backend-{backend}"
    from sipp._version import __version__

    assert project["version"] == __version__
    group = project["entry-points"]["sipp.backends"]
    assert group == {backend: f"sipp_backend_{backend}"}
    hook = (folder / "hatch_build.py").read_text()
    assert f'BACKEND = "{backend}"' in hook
    init = (folder / f"sipp_backend_{backend}" / "__init__.py").read_text()
    assert f'NAME = "{backend}"' in init
    assert "import sipp\n" not in init and "from sipp" not in init
