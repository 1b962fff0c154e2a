"""Fixtures of the example smoke tests: a native backend (or a skip saying why)."""

from __future__ import annotations

import pytest

from sipp.errors import BackendError


@pytest.fixture(scope="session")
def native_backend() -> None:
    """Skip (with the reason) when no native backend can be opened in this environment."""
    from sipp.native._lib import get_native

    try:
        get_native()
    except BackendError as exc:
        pytest.skip(f"no native backend: {exc}")
