"""``sipp-gateway`` command-line errors: one line, exit 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sipp import __version__
from sipp.gateway.server.cli import main

REPO = Path(__file__).resolve().parents[3]


def test_check_refuses_a_bad_backend_name(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text((REPO / "config" / "local.toml.example").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "sipp.gateway.server.cli", "check", "--config", str(config)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "SIPP_PYTHON_BACKEND": "rocm"},
    )
    assert proc.returncode == 2
    assert proc.stderr == ("sipp-gateway check: error: Invalid SIPP_PYTHON_BACKEND=rocm. "
                           "Expected one of: auto, cpu, cuda, metal, vulkan\n")


def test_serve_without_the_gateway_extra_names_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the extra were not installed
    assert main(["serve", "--config", str(tmp_path / "gateway.toml")]) == 2
    err = capsys.readouterr().err
    assert err == ("sipp-gateway serve: error: the gateway server needs the gateway extra: "
                   f'pip install "sipppy[gateway]=={__version__}"\n')
