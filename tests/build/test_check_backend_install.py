"""build_scripts/check_backend_install.py takes the installed wheel's own build mode."""

from __future__ import annotations

import pytest

from build_scripts.check_backend_install import main


def test_default_mode_is_the_one_the_wheel_was_built_in(
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend = pytest.importorskip("sipp_backend_cpu", reason="needs sipppy-backend-cpu")
    built = backend.manifest()["build"]["mode"]
    assert main(["cpu"]) == 0
    assert "sipppy-backend-cpu: ok" in capsys.readouterr().out
    other = "native" if built == "release" else "release"
    assert main(["cpu", "--mode", other]) == 1
    assert f"built in mode {built!r}, expected {other!r}" in capsys.readouterr().err
