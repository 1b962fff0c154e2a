"""Hatch build hook of sipppy-backend-vulkan: build llama.cpp for the Vulkan backend and ship it in
this wheel. The hook is ``build_scripts/hatch_backend.py``, shared by the four backend packages;
this file only names the backend and finds that module (checkout or sdist copy)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

BACKEND = "vulkan"


def get_build_hook() -> Any:
    """The shared hook class, bound to ``BACKEND`` (hatchling calls this by name)."""
    root = Path(__file__).resolve().parent
    for path in (root.parent / "build_scripts" / "hatch_backend.py",
                 root / "build_scripts" / "hatch_backend.py"):
        if path.is_file():
            spec = importlib.util.spec_from_file_location("_sipp_hatch_backend", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.build_hook(BACKEND)
    raise FileNotFoundError(f"build_scripts/hatch_backend.py not found next to {root}")
