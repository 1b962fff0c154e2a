"""Backend names and how a request for one is read (stdlib only; reading never opens a
library). An explicit choice (:func:`sipp.native.select_backend`) comes before the
``SIPP_PYTHON_BACKEND`` environment variable, which is read only when the backend opens."""

from __future__ import annotations

import os
import sys

from sipp._version import __version__
from sipp.errors import ConfigurationError

__all__ = [
    "BACKEND_ENV",
    "LIBRARY_PATH_ENV",
    "VALID_BACKENDS",
    "auto_order",
    "install_hint",
    "parse_backend",
    "requested_backend",
]

BACKEND_ENV = "SIPP_PYTHON_BACKEND"
LIBRARY_PATH_ENV = "SIPP_PYTHON_NATIVE_LIBRARY_PATH"
VALID_BACKENDS: tuple[str, ...] = ("auto", "cpu", "cuda", "metal", "vulkan")


def parse_backend(name: object) -> str:
    """The validated, lower-cased backend ``name`` passed as an argument."""
    value = name.strip().lower() if isinstance(name, str) else ""
    if value not in VALID_BACKENDS:
        raise ConfigurationError(
            f"Invalid backend {name!r}. Expected one of: {', '.join(VALID_BACKENDS)}"
        )
    return value


def requested_backend(environ: dict[str, str] | None = None) -> str:
    """The validated, lower-cased value of ``SIPP_PYTHON_BACKEND`` (``"auto"`` when unset)."""
    env = os.environ if environ is None else environ
    raw = env.get(BACKEND_ENV, "")
    value = raw.strip().lower() or "auto"
    if value not in VALID_BACKENDS:
        raise ConfigurationError(
            f"Invalid {BACKEND_ENV}={raw}. Expected one of: {', '.join(VALID_BACKENDS)}"
        )
    return value


def auto_order(platform: str | None = None) -> tuple[str, ...]:
    """Backends tried, best first, when none is requested explicitly."""
    plat = sys.platform if platform is None else platform
    if plat == "darwin":
        return ("metal", "cpu")
    return ("cuda", "vulkan", "cpu")


def install_hint(backend: str) -> str:
    """A command that installs ``backend`` for *this* sipp. PyPI's ``sipppy`` 0.1.x is
    another project, so a bare ``pip install "sipppy[vulkan]"`` would fetch it: the hint
    builds the matching wheel into ``dist/`` and pins this version."""
    target = "sipppy-backend-cpu" if backend == "cpu" else f"sipppy[{backend}]"
    command = (f"scripts/build_wheels.sh {backend} && "
               f'pip install --find-links dist "{target}=={__version__}"')
    return command + (" (or: bash scripts/setup.sh)" if backend == "cpu" else "")
