"""Engine fixtures: a native backend (or a skip saying why) and engines closed after use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sipp.config import NativeRuntimeConfig
from sipp.engine.core import Engine
from sipp.errors import BackendError


@pytest.fixture(scope="session")
def native_backend() -> None:
    """Skip (with the reason) when no native backend can be opened."""
    from sipp.native._lib import get_native

    try:
        get_native()
    except BackendError as exc:
        pytest.skip(f"no native backend: {exc}")


def load(path: Path, **config: Any) -> Engine:
    return Engine.load(str(path), NativeRuntimeConfig(**config) if config else None)


@pytest.fixture
def engine_factory(native_backend: None) -> Iterator[Any]:
    engines: list[Engine] = []

    def make(path: Path, **config: Any) -> Engine:
        engine = load(path, **config)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
