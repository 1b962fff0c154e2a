"""Hatch build hook: build llama.cpp for the CUDA backend and ship it in this wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BACKEND = "cuda"


def _shared_hook(root: Path) -> ModuleType:
    """Load build_scripts/hatch_backend.py by path (repository checkout or sdist copy)."""
    for folder in (root.parent / "build_scripts", root / "build_scripts"):
        path = folder / "hatch_backend.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location("_sipp_hatch_backend", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError(f"build_scripts/hatch_backend.py not found next to {root}")


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        _shared_hook(root).initialize(BACKEND, root, version, build_data)
