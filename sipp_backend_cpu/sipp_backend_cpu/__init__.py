"""llama.cpp CPU libraries for Sipp for Python: reports paths and the build manifest only.

Nothing is loaded at import; ``sipp.native`` opens the libraries under ``library_dir()``
after checking ``manifest()`` against its own declarations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["NAME", "__version__", "include_dir", "library_dir", "manifest"]

NAME = "cpu"
__version__ = "0.2.0"

_HERE = Path(__file__).resolve().parent


def library_dir() -> Path:
    """Folder holding the shared libraries (``libllama``, ``libmtmd``, ggml and its backends)."""
    return _HERE / "lib"


def include_dir() -> Path:
    """Folder holding ``llama.h``, ``mtmd.h`` and the ggml headers they include."""
    return _HERE / "include"


def manifest() -> dict[str, Any]:
    """The build manifest (a fresh dict): versions, cdef hash, struct layouts, libraries."""
    path = _HERE / "_manifest.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} is missing: sipppy-backend-{NAME} was installed without its native "
            f"build; reinstall it with: pip install ./sipp_backend_{NAME}"
        ) from None
    data: dict[str, Any] = json.loads(text)
    return data
