"""The dashboard's static app ships inside the sipppy wheel."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def test_wheel_contains_the_dashboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build = pytest.importorskip("hatchling.build", reason="hatchling is not installed")
    monkeypatch.chdir(ROOT)
    name = build.build_wheel(str(tmp_path))
    with zipfile.ZipFile(tmp_path / name) as wheel:
        names = set(wheel.namelist())
    static = ROOT / "sipp/gateway/server/admin/static"
    expected = {p.relative_to(ROOT).as_posix() for p in static.rglob("*") if p.is_file()}
    assert {"sipp/gateway/server/admin/static/index.html",
            "sipp/gateway/server/admin/static/assets/app.js"} <= expected
    assert expected <= names, sorted(expected - names)
