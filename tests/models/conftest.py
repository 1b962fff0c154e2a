"""Fixtures for tests that run the generated models through ``sipp.native``."""

from __future__ import annotations

from types import ModuleType

import pytest

_NEEDED = ("LlamaModel", "LlamaContext", "LlamaBatch", "get_native")


@pytest.fixture(scope="session")
def native() -> ModuleType:
    """``sipp.native`` with a loaded backend; skips (with the reason) when either is missing."""
    module: ModuleType = pytest.importorskip(
        "sipp.native", reason="sipp.native is not importable yet"
    )
    missing = [name for name in _NEEDED if not hasattr(module, name)]
    if missing:
        pytest.skip(f"sipp.native lacks {', '.join(missing)}")
    from sipp.errors import BackendError

    try:
        module.get_native()
    except BackendError as exc:
        pytest.skip(f"no native backend could be loaded: {exc}")
    return module
