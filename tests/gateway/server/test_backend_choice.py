"""A local target's GPU ``backend`` is passed to the native layer as an argument; the
gateway never writes ``SIPP_PYTHON_BACKEND``."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator

import pytest

from sipp.errors import ConfigurationError
from sipp.gateway.server import targets as targets_module
from sipp.gateway.server.config import parse_config
from sipp.gateway.server.targets import TargetRegistry
from tests.gateway.server.conftest import BASE_CONFIG, Script, fake_client

_open: list[TargetRegistry] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open:
        _open.pop().client.close()


def _registry(*backends: str) -> TargetRegistry:
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["targets"] = [{"name": f"t{i}", "type": "local", "model": "m.gguf", "backend": b}
                      for i, b in enumerate(backends)]
    cfg["tokens"] = [{"env": "TOKEN_ALL", "caller": "all", "targets": []}]
    registry = TargetRegistry(parse_config(cfg), fake_client(Script()), {})
    _open.append(registry)
    return registry


@pytest.fixture
def chosen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(targets_module, "select_backend", calls.append)
    monkeypatch.delenv("SIPP_PYTHON_BACKEND", raising=False)
    return calls


def test_gpu_backend_is_selected_by_argument(chosen: list[str]) -> None:
    registry = _registry("cuda", "cuda", "auto")
    registry.load_all_sync()
    assert chosen == ["cuda"]
    assert "SIPP_PYTHON_BACKEND" not in os.environ
    assert registry.ready


def test_cpu_and_auto_select_nothing(chosen: list[str]) -> None:
    _registry("cpu", "auto").load_all_sync()
    assert chosen == []


def test_different_gpu_backends_are_refused(chosen: list[str]) -> None:
    with pytest.raises(ConfigurationError, match="different GPU backends"):
        _registry("cuda", "vulkan").load_all_sync()
    assert chosen == []


def test_conflicting_environment_is_refused(chosen: list[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPP_PYTHON_BACKEND", "vulkan")
    with pytest.raises(ConfigurationError, match="SIPP_PYTHON_BACKEND=vulkan"):
        _registry("cuda").load_all_sync()
    assert chosen == []
    monkeypatch.setenv("SIPP_PYTHON_BACKEND", "cuda")
    _registry("cuda").load_all_sync()
    assert chosen == ["cuda"]
