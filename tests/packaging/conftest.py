"""Packaging tests: wheels, cibuildwheel configuration, Docker and gateway config examples."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sipp.errors import BackendError

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session")
def native() -> object:
    """The process-wide opened backend (skips with the loader's reason when none loads)."""
    from sipp.native import get_native

    try:
        return get_native()
    except BackendError as exc:
        pytest.skip(f"no native backend ({exc}); install sipppy-backend-cpu")
