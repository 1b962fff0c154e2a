"""Fixtures for the native layer: the opened backend, or a skip that says why not."""

from __future__ import annotations

from typing import Any

import pytest

from sipp.errors import BackendError


@pytest.fixture(scope="session")
def native() -> Any:
    """The process-wide opened backend (skips with the loader's reason when none loads)."""
    from sipp.native import get_native

    try:
        return get_native()
    except BackendError as exc:
        pytest.skip(
            f"no native backend ({exc}); install sipppy-backend-cpu or set "
            "SIPP_PYTHON_NATIVE_LIBRARY_PATH to a folder with libllama"
        )
