"""Resolve the CMake options of one (backend, mode) build from ``native/backends.toml``.

``resolve_options("cpu", "native")`` → ``{"BUILD_SHARED_LIBS": "ON", "GGML_NATIVE": "ON", ...}``
"""

from __future__ import annotations

import os
import platform as platform_module
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parent.parent
BACKENDS_FILE = REPO_ROOT / "native" / "backends.toml"

BACKENDS = ("cpu", "cuda", "vulkan", "metal")
MODES = ("native", "release")
CUDA_ARCH_ENV = "SIPP_CUDA_ARCHITECTURES"
# Vulkan-Headers newer than the system's (the pinned ggml-vulkan needs VK_EXT_layer_settings,
# Vulkan 1.3.261+; Debian bookworm ships 1.3.239): a folder holding vulkan/vulkan.hpp.
VULKAN_INCLUDE_ENV = "SIPP_VULKAN_INCLUDE_DIR"


def load_table(path: Path = BACKENDS_FILE) -> dict[str, Any]:
    """Parse ``backends.toml`` (a clear error if it is missing or malformed)."""
    try:
        with path.open("rb") as handle:
            table: dict[str, Any] = tomllib.load(handle)
            return table
    except FileNotFoundError:
        raise FileNotFoundError(f"backend option table not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML: {exc}") from exc


def _section(table: Mapping[str, Any], *keys: str) -> dict[str, str]:
    node: Any = table
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return {}
        node = node[key]
    if not isinstance(node, Mapping):
        raise ValueError(f"backends.toml: [{'.'.join(keys)}] must be a table")
    out: dict[str, str] = {}
    for name, value in node.items():
        if isinstance(value, bool):
            out[name] = "ON" if value else "OFF"
        elif isinstance(value, (str, int)):
            out[name] = str(value)
        else:
            raise ValueError(
                f"backends.toml: [{'.'.join(keys)}] {name} must be a string, int or bool, "
                f"got {type(value).__name__}"
            )
    return out


def host_machine() -> str:
    """The CPU architecture name used in ``[arch.<platform>-<machine>.<mode>]`` rows."""
    machine = platform_module.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def resolve_options(
    backend: str,
    mode: str,
    *,
    tools: bool = False,
    platform: str | None = None,
    machine: str | None = None,
    environ: Mapping[str, str] | None = None,
    table: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Return the ordered ``{CMAKE_OPTION: value}`` map for one build."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    table = load_table() if table is None else table
    platform = sys.platform if platform is None else platform
    machine = host_machine() if machine is None else machine
    environ = os.environ if environ is None else environ
    options: dict[str, str] = {}
    for keys in (
        ("common",),
        ("mode", mode),
        ("backend", backend, "options"),
        ("backend", backend, mode),
        *((("tools",),) if tools else ()),
        ("platform", platform),
        ("arch", f"{platform}-{machine}", mode),
    ):
        options.update(_section(table, *keys))
    arch = environ.get(CUDA_ARCH_ENV, "").strip()
    if backend == "cuda" and arch:
        options["CMAKE_CUDA_ARCHITECTURES"] = arch
    vulkan_include = environ.get(VULKAN_INCLUDE_ENV, "").strip()
    if backend == "vulkan" and vulkan_include:
        if not (Path(vulkan_include) / "vulkan" / "vulkan.hpp").is_file():
            raise ValueError(
                f"{VULKAN_INCLUDE_ENV} must be a folder holding vulkan/vulkan.hpp; "
                f"got {vulkan_include!r}"
            )
        options["Vulkan_INCLUDE_DIR"] = str(Path(vulkan_include).resolve())
    return dict(sorted(options.items()))


def cmake_args(options: Mapping[str, str]) -> list[str]:
    """``-DNAME=VALUE`` arguments in a stable order."""
    return [f"-D{name}={value}" for name, value in sorted(options.items())]
