"""The hatch build hook of the four backend packages (each ``sipp_backend_*/hatch_build.py``
names its backend and returns :func:`build_hook`).

The hook builds (or takes from the cache) the native libraries of its backend, installs them
into the import package folder and makes the wheel platform-specific. Environment:

- ``SIPP_BUILD_MODE``: ``native`` (default) or ``release``
- ``SIPP_BUILD_JOBS``: parallel compile jobs (default: the CPU count)
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

if not __package__:  # loaded by path from a hatch_build.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

from build_scripts import backend_options, build_native

MODE_ENV = "SIPP_BUILD_MODE"
JOBS_ENV = "SIPP_BUILD_JOBS"
PAYLOAD = ("lib", "include", "licenses", "_manifest.json")


def build_mode() -> str:
    mode = os.environ.get(MODE_ENV, "native").strip() or "native"
    if mode not in backend_options.MODES:
        raise ValueError(
            f"{MODE_ENV} must be one of {', '.join(backend_options.MODES)}; got {mode!r}"
        )
    return mode


def build_jobs() -> int | None:
    raw = os.environ.get(JOBS_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{JOBS_ENV} must be a positive integer; got {raw!r}")
    return int(raw)


def wheel_tag() -> str:
    """``py3-none-<platform>``: the libraries do not depend on the Python ABI."""
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"py3-none-{plat}"


def initialize(backend: str, root: Path, version: str, build_data: dict[str, Any]) -> None:
    """Build + install ``backend`` into ``root/sipp_backend_<backend>`` and tag the wheel."""
    package = f"sipp_backend_{backend}"
    package_dir = root / package
    build_native.build_native(backend, build_mode(), jobs=build_jobs(), install_into=package_dir)
    build_data["pure_python"] = False
    build_data["tag"] = wheel_tag()
    if version == "editable":
        return  # the editable install points at package_dir, which now holds the payload
    for name in PAYLOAD:
        path = package_dir / name
        if path.exists():
            build_data["force_include"][str(path)] = f"{package}/{name}"


def build_hook(backend: str) -> type[BuildHookInterface]:  # type: ignore[type-arg]
    """The hook class of ``sipppy-backend-<backend>``."""

    class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
        PLUGIN_NAME = "custom"

        def initialize(self, version: str, build_data: dict[str, Any]) -> None:
            initialize(backend, Path(self.root), version, build_data)

    return CustomBuildHook
