"""llama.cpp CUDA libraries for Sipp for Python: reports paths and the build manifest only.

Nothing is loaded at import; ``sipp.native`` opens the libraries under ``library_dir()``
after checking ``manifest()`` against its own declarations.
"""

from __future__ import annotations

import json
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

__all__ = [
    "NAME",
    "__version__",
    "include_dir",
    "library_dir",
    "manifest",
    "runtime_libraries",
]

NAME = "cuda"
__version__ = "0.2.0"

_HERE = Path(__file__).resolve().parent
# The CUDA runtime libraries libggml-cuda needs, in load order (cuBLAS needs cuBLASLt).
_RUNTIME_STEMS = {
    "linux": ("libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13"),
    "win32": ("cudart64_13.dll", "cublasLt64_13.dll", "cublas64_13.dll"),
}


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


def _nvidia_dirs() -> list[Path]:
    """Library folders of the installed ``nvidia-*`` wheels (namespace package ``nvidia``)."""
    spec = find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    dirs: list[Path] = []
    for root in spec.submodule_search_locations:
        for sub in ("cu13/lib", "cu13/bin", "cu13/bin/x86_64"):
            folder = Path(root) / sub
            if folder.is_dir():
                dirs.append(folder)
    return dirs


def runtime_libraries(platform: str | None = None) -> list[Path]:
    """The CUDA runtime and cuBLAS files from the ``nvidia-*`` wheels, in load order.

    ``sipp.native`` opens them before libggml-cuda so it never depends on a system CUDA
    install; a name not found here (a system toolkit provides it) is simply left out.
    """
    names = _RUNTIME_STEMS.get(sys.platform if platform is None else platform, ())
    found: list[Path] = []
    dirs = _nvidia_dirs()
    for name in names:
        path = next((d / name for d in dirs if (d / name).is_file()), None)
        if path is not None:
            found.append(path)
    return found
